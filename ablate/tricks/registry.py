"""The catalogue's building block: a named trick with validated parameters.

Every trick kind (schedules, losses, augmentations, necks, ...) keeps a plain
``dict[str, Trick]`` literal in its own module or package ``__init__``; nothing
registers itself by import side effect.  The study schema turns each dict into a
tagged union on ``name``, so a study is validated against exactly these entries.
An entry whose builder needs torch holds it as ``Lazy(lambda: _box().GIoULoss)``, where
``_box`` imports the module when a trial first builds it: reading the catalogue (loading a
study, ``ablate plan``) imports no torch, and no module is ever imported from a string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from ablate.errors import did_you_mean


class Params(BaseModel):
    """Base class of every trick's parameters: typed, documented, closed.

    Subclasses declare one field per parameter with a default and a
    ``Field(description=...)`` that says the unit and the valid range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """For tricks that take no parameter."""


@dataclass(frozen=True)
class Lazy:
    """A builder that is imported on first use: ``load()`` returns it."""

    load: Callable[[], Callable[..., Any]]


@dataclass(frozen=True)
class Trick:
    """One catalogue entry.

    Args:
        target: the factory, or a ``Lazy`` that loads it; it is called as
            ``build(**params, **context)`` and what it returns depends on the kind
            (a loss module, a transform, a neck, ...).
        params: the pydantic model of its user-facing parameters.
        doc: one line shown by ``ablate catalogue``.
    """

    target: Callable[..., Any] | Lazy
    params: type[Params]
    doc: str

    @property
    def build(self) -> Callable[..., Any]:
        """The factory, its module imported on first use."""
        return self.target.load() if isinstance(self.target, Lazy) else self.target


class UnknownTrick(KeyError):
    """A name that is not in a catalogue table; the message lists what is."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def lookup(table: dict[str, Trick], name: str, kind: str) -> Trick:
    """Return ``table[name]`` or fail with the valid names and a suggestion."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(table)
        raise UnknownTrick(
            f"unknown {kind} '{name}'{did_you_mean(name, table)}; valid: {valid}"
        ) from None


def build(
    table: dict[str, Trick], name: str, kind: str, params: dict[str, Any] | None = None, /, **context: Any
) -> Any:
    """Build a trick by name.

    ``params`` (the user-facing parameters, e.g. ``{"gamma": 2.0}``) are checked
    and defaulted by the trick's ``Params`` model; ``context`` is what the caller
    knows and the user does not set (channel counts, image size, base lr, ...).

    Example:
        >>> loss = build(BOX_LOSSES, "smooth_l1", "box loss", {"beta": 0.1})
    """
    trick = lookup(table, name, kind)
    checked = trick.params.model_validate(params or {}).model_dump()
    return trick.build(**checked, **context)


def build_selected(table: dict[str, Trick], selected: BaseModel, kind: str, /, **context: Any) -> Any:
    """Build the entry a study section selects: its ``name`` and, as parameters, every other field.

    Example:
        >>> loss = build_selected(BOX_LOSSES, config.loss.box, "box loss")
    """
    return build(table, selected.name, kind, selected.model_dump(exclude={"name"}), **context)
