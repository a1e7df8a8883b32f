"""Load a study file: safe YAML, ``_base_`` inheritance, ``-o`` overrides, validation.

Everything a user can get wrong is reported here, before any trial starts, as a
``StudyError`` whose every problem names the file that set the key, the dotted
key path, and what would be valid.

``data.root`` may name environment variables (``${ABLATE_COCO_ROOT}``, ``$HOME``).
They stay unexpanded in the configuration, so a trial's id does not depend on where
a machine keeps its data and ``ablate plan`` works without them; ``expand_env`` fills
them in where the data is read (``ablate.data.build``), and ``require_env`` checks them
up front with the file that set the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ablate.study import paths
from ablate.study.errors import Problem, StudyError, problems_from_validation
from ablate.study.schema import Study

MAX_BYTES = 1 << 20  # a study file is configuration, not data
MAX_VALUES = 100_000  # values after aliases are expanded: an alias bomb is small on disk, huge in memory
MAX_DEPTH = 32  # a study is a few levels deep; the checks after loading recurse
ENV_VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)  # $NAME or ${NAME}, as os.path.expandvars reads them


@dataclass
class Source:
    """Which file (or command-line override) set each key path."""

    file: str
    origins: dict[tuple, str]

    def of(self, parts: tuple) -> str:
        for n in range(len(parts), 0, -1):
            if parts[:n] in self.origins:
                return self.origins[parts[:n]]
        return self.file


def display(path: Path) -> str:
    """A path as the user would type it: relative below the working folder, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else rel


def record(origins: dict[tuple, str], data: Any, label: str, prefix: tuple = ()) -> None:
    """Note that ``label`` set every key of ``data``; a replaced section forgets its old keys."""
    for parts in paths.leaves(data):
        value = paths.get(data, parts)
        if not isinstance(value, dict) or "name" in value:
            full = (*prefix, *parts)
            for old in [o for o in origins if len(o) > len(full) and o[: len(full)] == full]:
                del origins[old]
        origins[(*prefix, *parts)] = label


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


class StudyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (plain data only; libyaml's when built in) that refuses duplicate keys.

    PyYAML keeps the last of two equal keys silently, so a second ``loss.box:`` under
    ``factors`` would drop the first factor without a word.  Merge keys (``<<: *base``)
    still override, as YAML intends.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (list, dict)):
                    continue  # unhashable: the base class says so
                if key in lines:
                    raise DuplicateKey(None, None, f"duplicate key '{key}' at line {key_node.start_mark.line + 1} "
                                       f"(first at line {lines[key]}); YAML would keep only the last, remove one",
                                       key_node.start_mark)
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _check_size(data: Any, name: str) -> None:
    """Refuse what would hang or overflow the checks after loading: alias bombs, deep nesting, cycles."""
    stack, count = [(data, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise StudyError([Problem(name, "", f"the YAML expands to more than {MAX_VALUES} values through its "
                                      "aliases (*name); a study file is small plain data: write the values out")])
        if depth > MAX_DEPTH:
            raise StudyError([Problem(name, "", f"YAML nested too deeply (more than {MAX_DEPTH} levels, or an alias "
                                      "that contains itself)")])
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def read_yaml(path: Path) -> dict:
    """One YAML mapping from ``path`` with the safe loader; clear errors otherwise."""
    name = display(path)
    if not path.exists():
        raise StudyError([Problem(name, "", "file not found")])
    if not path.is_file():
        raise StudyError([Problem(name, "", "not a file")])
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise StudyError([Problem(name, "", f"file is {size} bytes; a study file is at most {MAX_BYTES} bytes")])
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=StudyLoader)  # noqa: S506 -- a safe loader, see StudyLoader
    except UnicodeDecodeError:
        raise StudyError([Problem(name, "", "not a UTF-8 text file; a study file is YAML")]) from None
    except DuplicateKey as e:
        raise StudyError([Problem(name, "", e.problem)]) from None
    except yaml.constructor.ConstructorError as e:
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise StudyError([Problem(name, "", f"{e.problem}{where}: study files are plain data, "
                                  "YAML tags that build objects are not allowed")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StudyError([Problem(name, "", f"invalid YAML{where}: {getattr(e, 'problem', e)}")]) from None
    except RecursionError:
        raise StudyError([Problem(name, "", "YAML nested too deeply")]) from None
    if data is None:
        raise StudyError([Problem(name, "", "file is empty; a study needs at least `name:`")])
    _check_size(data, name)
    if not isinstance(data, dict):
        raise StudyError([Problem(name, "", f"the top level must be a mapping of keys, not a {type(data).__name__}")])
    return data


def _bases(value: Any, owner: Path) -> list[Path]:
    name = display(owner)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise StudyError([Problem(name, "_base_", "must be a file path or a list of file paths, relative to this file")])
    out = []
    for item in items:
        target = (owner.parent / item).resolve()
        if not target.is_file():
            near = sorted(p.name for p in target.parent.glob("*.y*ml")) if target.parent.is_dir() else []
            from ablate.errors import did_you_mean

            raise StudyError([Problem(name, "_base_", f"no such file '{item}' (looked for {display(target)})"
                                      f"{did_you_mean(target.name, near)}")])
        out.append(target)
    return out


def resolve(path: Path, stack: tuple[Path, ...] = ()) -> tuple[dict, dict[tuple, str]]:
    """The file merged over its bases (in order), with the origin of every key."""
    path = path.resolve()
    if path in stack:
        chain = " -> ".join(display(p) for p in (*stack, path))
        raise StudyError([Problem(display(stack[-1]), "_base_", f"circular inheritance: {chain}")])
    data = read_yaml(path)
    merged: dict = {}
    origins: dict[tuple, str] = {}
    for base in _bases(data.pop("_base_"), path) if "_base_" in data else []:
        base_data, base_origins = resolve(base, (*stack, path))
        merged = paths.merge(merged, base_data)
        origins.update(base_origins)
    merged = paths.merge(merged, data)
    record(origins, data, display(path))
    return merged, origins


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"train.optimizer.lr=0.02"`` -> ``(("train", "optimizer", "lr"), 0.02)``; the value is YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise StudyError([Problem("-o", text, "an override is dotted.key=value, e.g. -o train.optimizer.lr=0.02")])
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise StudyError([Problem("-o", key, f"value is not valid YAML: {e}")]) from None
    return paths.split(key), parsed


def load_study(file: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Study:
    """Read, merge and fully validate a study; raise ``StudyError`` on any problem.

    Factor levels, exclusions and the search space are checked too (by
    expanding the study), so a study that loads is a study that can run.
    """
    from ablate.study.expand import check

    path = Path(file)
    raw, origins = resolve(path)
    for text in overrides:
        parts, value = parse_override(text)
        raw = paths.merge(raw, paths.nested(parts, value))
        record(origins, paths.nested(parts, value), f"-o {text}")
    source = Source(display(path.resolve()), origins)
    try:
        study = Study.model_validate(raw)
    except ValidationError as e:
        raise StudyError(problems_from_validation(e, raw, source.of, Study)) from None
    study._source = source
    check(study)
    return study


def env_vars(text: str) -> list[str]:
    """The environment variables ``text`` names, in order: ``"${A}/x/$B"`` -> ``["A", "B"]``."""
    return [name for name in (m.group(1).strip("{}") for m in ENV_VAR.finditer(text)) if name]


def expand_env(text: str, *, key: str, file: str | None = None) -> str:
    """``text`` with each ``$NAME`` / ``${NAME}`` replaced by its value in the environment.

    Raises:
        StudyError: a variable it names is unset or empty; the problem names ``file``
            (the study file that set ``key``, when known), ``key`` and the variable to set.
    """
    unset = list(dict.fromkeys(v for v in env_vars(text) if not os.environ.get(v)))
    if unset:
        plural = len(unset) > 1
        raise StudyError([Problem(
            file or "study", key,
            f"'{text}' needs the environment variable{'s' * plural} {' and '.join(unset)}, which "
            f"{'are' if plural else 'is'} not set; set {'them' if plural else 'it'} where the trials run, "
            f"e.g. {'; '.join(f'export {v}=/path/to/dataset' for v in unset)}",
        )])

    def value(m: re.Match) -> str:
        name = m.group(1).strip("{}")
        return os.environ[name] if name else m.group(0)

    return ENV_VAR.sub(value, text)


def require_env(study: Study) -> None:
    """Fail now, naming the file that set ``data.root``, if a variable it names is unset.

    ``load_study`` does not check this (``ablate plan`` must work without the data);
    call it before training starts.
    """
    roots = study.data.root if isinstance(study.data.root, list) else [study.data.root]
    for k, root in enumerate(r for r in roots if r is not None):
        origin = study._source.of(("data", "root")) if study._source else None
        expand_env(root, key=f"data.root[{k}]" if isinstance(study.data.root, list) else "data.root", file=origin)
