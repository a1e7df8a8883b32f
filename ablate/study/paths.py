"""Dotted config paths and the one merge rule used everywhere.

The same ``merge`` applies ``_base_`` files, ``-o`` overrides and factor
levels: mappings merge key by key, anything else is replaced, and a mapping
that names a different trick (``name:``) replaces the section instead of
merging into it, so ``{name: giou}`` over ``{name: smooth_l1, beta: 0.1}`` does
not inherit a ``beta`` that giou does not take.
"""

from __future__ import annotations

import copy
from typing import Any

# Keys whose children are themselves dotted paths (one key each, not nested).
DOTTED_CHILDREN = ("factors", "search.space")


def split(path: str) -> tuple[str, ...]:
    """``"factors.loss.box"`` -> ``("factors", "loss.box")``; other paths split on dots."""
    for prefix in DOTTED_CHILDREN:
        if path.startswith(prefix + ".") and len(path) > len(prefix) + 1:
            return (*prefix.split("."), path[len(prefix) + 1 :])
    return tuple(path.split("."))


def join(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def get(data: Any, parts: tuple[str, ...]) -> Any:
    for p in parts:
        data = data[p]
    return data


def has(data: Any, parts: tuple[str, ...]) -> bool:
    for p in parts:
        if not isinstance(data, dict) or p not in data:
            return False
        data = data[p]
    return True


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``, without changing either (see the module doc)."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return copy.deepcopy(over)
    if "name" in base and "name" in over and base["name"] != over["name"]:
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


def nested(parts: tuple[str, ...], value: Any) -> dict:
    """``("a", "b"), 1`` -> ``{"a": {"b": 1}}``."""
    for p in reversed(parts):
        value = {p: value}
    return value


def leaves(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path that leads to a non-mapping value (and to each mapping, too)."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += leaves(v, (*prefix, k))
    return out
