"""Study errors that name the file, the key path and what would be valid."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ablate.errors import AblateError, did_you_mean
from ablate.study import paths


@dataclass(frozen=True)
class Problem:
    file: str
    key: str  # dotted path, "" for the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


class StudyError(AblateError):
    """One or more problems in a study; nothing has been started."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _unwrap(ann: Any) -> Any:
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    return ann


def _model_for(ann: Any, value: Any) -> type[BaseModel] | None:
    """The pydantic model that validates ``value`` under annotation ``ann``, if any."""
    ann = _unwrap(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if get_origin(ann) in (Union, types.UnionType):
        value = {"name": value} if isinstance(value, str) else value
        models = [m for m in (_model_for(a, value) for a in get_args(ann)) if m is not None]
        for m in models:
            for tag in ("name", "type"):
                field = m.model_fields.get(tag)
                if field is not None and isinstance(value, dict) and value.get(tag) in get_args(field.annotation):
                    return m
        return models[0] if len(models) == 1 else None
    return None


def _annotation_at(root: type[BaseModel], parts: tuple, data: Any) -> tuple[Any, Any]:
    ann, value = root, data
    for part in parts:
        model = _model_for(ann, value)
        default = None
        if model is not None:
            if part not in model.model_fields:
                return None, None
            ann, default = model.model_fields[part].annotation, model.model_fields[part].default
        else:
            container = _unwrap(ann)
            args = get_args(container)
            if get_origin(container) is list and args:
                ann = args[0]
            elif get_origin(container) is dict and len(args) == 2:
                ann = args[1]
            else:
                return None, None
        if isinstance(value, str) and part == "name":
            value = None
        try:
            value = value[part] if isinstance(value, (dict, list)) else None
        except (KeyError, IndexError, TypeError):
            value = None
        if isinstance(value, dict) and "name" not in value and isinstance(default, str):
            value = {"name": default, **value}  # the schema's shorthand for the default trick
    return ann, value


def valid_keys(root: type[BaseModel], parts: tuple, data: Any) -> list[str]:
    """The keys the schema accepts in the mapping at ``parts``."""
    ann, value = _annotation_at(root, parts, data)
    model = _model_for(ann, value) if ann is not None else None
    return list(model.model_fields) if model is not None else []


def _path(loc: tuple, data: Any) -> tuple:
    """Pydantic's error location minus union tags and validator names."""
    out, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, str) and part == "name":
            out.append(part)
            node = None
        elif isinstance(node, (dict, str)) or node is None:
            continue  # a union tag such as 'giou', or a default being filled in
        else:
            out.append(part)
    return tuple(out)


def _message(err: dict, parts: tuple, data: Any, root: type[BaseModel]) -> tuple[tuple, str]:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        key = err["loc"][-1]
        valid = valid_keys(root, parts[:-1], data)
        return parts, f"unknown key '{key}'{did_you_mean(key, valid)}; valid keys here: {', '.join(valid)}"
    if kind == "union_tag_invalid":
        tags = [t.strip().strip("'") for t in ctx.get("expected_tags", "").split(",")]
        tag = ctx.get("tag")
        field = ctx.get("discriminator", "'name'").strip("'")
        return (*parts, field), f"unknown choice '{tag}'{did_you_mean(tag, tags)}; valid: {', '.join(tags)}"
    if kind == "literal_error":
        choices = [c.strip().strip("'") for c in ctx.get("expected", "").replace(" or ", ",").split(",")]
        return parts, f"'{err['input']}' is not valid{did_you_mean(err['input'], choices)}; valid: {', '.join(choices)}"
    if kind == "missing":
        return parts, "required key is missing"
    if kind in ("value_error", "assertion_error"):
        return parts, str(ctx.get("error", err["msg"]))
    got = err.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return parts, f"{err['msg']}{shown}"


def problems_from_validation(
    error: ValidationError, data: Any, origin: Callable[[tuple], str], root: type[BaseModel], prefix: tuple = ()
) -> list[Problem]:
    """Turn pydantic's errors into problems that name the file and key path."""
    problems = []
    for err in error.errors():
        loc = err["loc"]
        # a missing key is absent from the data, which _path would take for a union tag and drop
        where = (*_path(loc[:-1], data), loc[-1]) if err["type"] == "missing" and loc else _path(loc, data)
        parts, message = _message(err, where, data, root)
        full = (*prefix, *parts)
        problems.append(Problem(origin(full), paths.join(full), message))
    return list(dict.fromkeys(problems))

