"""Expand a study into variants and trials, and check what varies.

Variant 0 is always the baseline.  A combination of levels that resolves to a
configuration already listed (for example a level equal to the baseline's own
value) is that variant, not a new one.  A trial is (variant, seed); its id is a
short hash of the resolved configuration and the seed, so it is the same on
every machine and in every run whatever the key order of the files.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ablate.errors import did_you_mean
from ablate.study import paths
from ablate.study.config import CONFIG_KEYS, TrialConfig
from ablate.study.errors import Problem, StudyError, problems_from_validation
from ablate.study.schema import CategoricalDist, Study


@dataclass(frozen=True)
class Variant:
    index: int
    name: str  # "baseline", "loss.box=giou", "+train.ema.enabled=true" (cumulative)
    overrides: dict[str, Any]  # factor path -> level as written in the study
    config: TrialConfig = field(repr=False)

    @property
    def is_baseline(self) -> bool:
        return self.index == 0


@dataclass(frozen=True)
class Trial:
    trial_id: str
    variant: Variant
    seed: int


def config_dict(config: TrialConfig) -> dict:
    return config.model_dump(mode="json")


def trial_id(config: TrialConfig, seed: int) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of (config, seed)."""
    canonical = json.dumps({"config": config_dict(config), "seed": seed}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def short(level: Any) -> str:
    """A compact label for a level: ``giou``, ``focal(gamma=1.5)``, ``[hflip, mosaic]``."""
    if isinstance(level, dict):
        inner = ",".join(f"{k}={short(v)}" for k, v in level.items() if k != "name")
        if "name" in level:
            return f"{level['name']}({inner})" if inner else str(level["name"])
        return "{" + inner + "}"
    if isinstance(level, list):
        return "[" + ", ".join(short(v) for v in level) + "]"
    if isinstance(level, bool) or level is None:
        return json.dumps(level)
    return str(level)


def apply(base: dict, overrides: dict[str, Any]) -> dict:
    for path, level in overrides.items():
        base = paths.merge(base, paths.nested(tuple(path.split(".")), level))
    return base


def is_bundle(study: Study, factor: str) -> bool:
    """A factor whose levels are labels, each a mapping of several dotted config paths (schema.Study.factors)."""
    return isinstance(study.factors.get(factor), dict)


def _dotted(study: Study, combo: dict[str, Any]) -> dict[str, Any]:
    """A combination of factor levels as dotted config paths: a bundle's label becomes the keys it sets."""
    out = {}
    for factor, level in combo.items():
        out.update(study.factors[factor][level] if is_bundle(study, factor) else {factor: level})
    return out


def level_of(study: Study, variant: Variant, factor: str) -> Any:
    """``factor``'s level in ``variant`` as the study writes it: its override, else the listed level that
    gives the baseline's value there (``giou``, not the resolved ``{name: giou, weight: 1.0}``), else that
    value; for a bundle, the label of the level that is the baseline, or None when none is."""
    if factor in variant.overrides:
        return variant.overrides[factor]
    if is_bundle(study, factor):
        base = trial_id(study.baseline(), 0)
        return next((label for label in study.factors[factor]
                     if trial_id(_resolve(study, {factor: label}, factor), 0) == base), None)
    parts = tuple(factor.split("."))
    value = paths.get(config_dict(variant.config), parts)
    written = (level for level in study.factors.get(factor, [])
               if paths.get(config_dict(_resolve(study, {factor: level}, factor)), parts) == value)
    return next(written, value)


def _origin(study: Study, parts: tuple) -> str:
    """The file (or -o override) that set ``parts``, for error messages."""
    return study._source.of(parts) if study._source else "study"


def _config_paths(data: dict) -> list[str]:
    return [".".join(p) for p in paths.leaves(data)]


def _bundle_problems(study: Study, name: str, base: dict) -> list[Problem]:
    """A bundle's name must not be a config key, and each of its levels a non-empty mapping of config keys."""
    origin = _origin(study, ("factors", name))
    if paths.has(base, tuple(name.split("."))):
        return [Problem(origin, f"factors.{name}", "is a config key, so its levels are a list (e.g. [giou, "
                        "ciou]); a bundle of several keys per level needs a name that is not a key, e.g. network")]
    problems = []
    for label, keys in study.factors[name].items():
        if not keys:
            problems.append(Problem(origin, f"factors.{name}.{label}", "sets no key; give dotted paths and values, "
                                    "e.g. {model.detector: atss}"))
        for path in keys:
            parts = tuple(path.split("."))
            if parts[0] not in CONFIG_KEYS or not paths.has(base, parts):
                problems.append(Problem(origin, f"factors.{name}.{label}.{path}", "no such config key"
                                        f"{did_you_mean(path, _config_paths(base))} (run `ablate show-config` to "
                                        "see every key)"))
    return problems


def _factor_paths(study: Study) -> dict[str, tuple[str, ...]]:
    """Check that each factor / search path names a key of the trial configuration (a bundle: each of its keys)."""
    base = config_dict(study.baseline())
    where = "search.space" if study.design == "optuna" else "factors"
    keys = list(study.search.space) if study.design == "optuna" else list(study.factors)
    problems, out = [], {}
    for path in keys:
        parts = tuple(path.split("."))
        origin = _origin(study, (*paths.split(where), path))
        if where == "factors" and is_bundle(study, path):
            problems += _bundle_problems(study, path, base)
        elif parts[0] not in CONFIG_KEYS:
            problems.append(Problem(origin, f"{where}.{path}", f"'{parts[0]}' is not part of a trial's configuration; "
                                    f"{where} vary keys under {', '.join(CONFIG_KEYS)}"))
        elif not paths.has(base, parts):
            problems.append(Problem(origin, f"{where}.{path}", f"no such config key{did_you_mean(path, _config_paths(base))}"
                                    " (run `ablate show-config` to see every key)"))
        else:
            out[path] = parts
    if problems:
        raise StudyError(problems)
    return out


def _resolve(study: Study, overrides: dict[str, Any], label: str) -> TrialConfig:
    data = apply(config_dict(study.baseline()), _dotted(study, overrides))
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as e:
        origin = _origin(study, ("factors",))
        inner = problems_from_validation(e, data, lambda p: origin, TrialConfig)
        raise StudyError([Problem(origin, label, f"{p.key}: {p.message}" if p.key else p.message) for p in inner]) from None


def _levels(study: Study) -> dict[str, list[TrialConfig]]:
    """Each factor's levels resolved against the baseline; empty and duplicate levels are errors."""
    out = {}
    for path, levels in study.factors.items():
        origin = _origin(study, ("factors", path))
        if not levels:
            raise StudyError([Problem(origin, f"factors.{path}", "has no levels; list at least one value")])
        levels = list(levels)  # a bundle's labels
        labels = [f"factors.{path}.{level}" if is_bundle(study, path) else f"factors.{path}[{i}]"
                  for i, level in enumerate(levels)]
        configs = [_resolve(study, {path: level}, label) for level, label in zip(levels, labels)]
        ids = [trial_id(c, 0) for c in configs]
        for i, j in itertools.combinations(range(len(levels)), 2):
            if ids[i] == ids[j]:
                raise StudyError([Problem(origin, f"factors.{path}", f"levels {short(levels[i])} (#{i}) and "
                                          f"{short(levels[j])} (#{j}) are the same configuration; remove one")])
        out[path] = configs
    return out


def _combos(study: Study) -> list[tuple[str, dict[str, Any]]]:
    factors = study.factors
    if study.design == "grid":
        keys = list(factors)
        combos = [dict(zip(keys, values)) for values in itertools.product(*factors.values())]
        return [(", ".join(f"{k}={short(v)}" for k, v in c.items()), c) for c in combos]
    if study.design == "one_at_a_time":
        return [(f"{k}={short(v)}", {k: v}) for k, levels in factors.items() for v in levels]
    if study.design == "cumulative":
        out, running = [], {}
        for k, levels in factors.items():
            for v in levels:
                running = {**running, k: v}
                out.append((f"+{k}={short(v)}", dict(running)))
        return out
    return []  # optuna: sampled at run time


def _excluded(study: Study, config: TrialConfig, rules: list[list[tuple[tuple, Any]]]) -> bool:
    data = config_dict(config)
    return any(all(paths.get(data, parts) == value for parts, value in rule) for rule in rules)


def _exclusion_rules(study: Study, levels: dict[str, list[TrialConfig]]) -> list[list[tuple[tuple, Any]]]:
    rules = []
    for i, rule in enumerate(study.exclude):
        origin = _origin(study, ("exclude",))
        if not rule:
            raise StudyError([Problem(origin, f"exclude[{i}]", "is empty; give factor: level pairs")])
        entries = []
        for path, level in rule.items():
            if path not in study.factors:
                raise StudyError([Problem(origin, f"exclude[{i}].{path}", "is not a factor"
                                          f"{did_you_mean(path, study.factors)}; factors: {', '.join(study.factors)}")])
            if is_bundle(study, path):  # a label: the keys it sets, with their resolved values
                if level not in study.factors[path]:
                    raise StudyError([Problem(origin, f"exclude[{i}].{path}", f"{short(level)} is not a level of "
                                              f"this factor; levels: {', '.join(study.factors[path])}")])
                resolved = config_dict(_resolve(study, {path: level}, f"exclude[{i}].{path}"))
                keys = [tuple(key.split(".")) for key in study.factors[path][level]]
                entries += [(parts, paths.get(resolved, parts)) for parts in keys]
                continue
            parts = tuple(path.split("."))
            value = paths.get(config_dict(_resolve(study, {path: level}, f"exclude[{i}].{path}")), parts)
            known = [paths.get(config_dict(c), parts) for c in levels[path]]
            if value not in known:
                levels_text = ", ".join(short(v) for v in study.factors[path])
                raise StudyError([Problem(origin, f"exclude[{i}].{path}", f"{short(level)} is not a level of this "
                                          f"factor; levels: {levels_text}")])
            entries.append((parts, value))
        rules.append(entries)
    return rules


def expand(study: Study) -> list[Variant]:
    """The study's variants, baseline first, in design order (see the module doc)."""
    levels = _levels(study)
    rules = _exclusion_rules(study, levels)
    baseline = study.baseline()
    variants = [Variant(0, "baseline", {}, baseline)]
    seen = {trial_id(baseline, 0)}
    for name, combo in _combos(study):
        config = _resolve(study, combo, f"factors ({name})")
        key = trial_id(config, 0)
        if key in seen or _excluded(study, config, rules):
            continue
        seen.add(key)
        variants.append(Variant(len(variants), name, combo, config))
    return variants


def trials(study: Study, variants: list[Variant] | None = None) -> list[Trial]:
    """Every (variant, seed), variant-major, baseline first."""
    variants = expand(study) if variants is None else variants
    return [Trial(trial_id(v.config, s), v, s) for v in variants for s in study.seeds]


def sampled_variant(study: Study, index: int, sample: dict[str, Any]) -> Variant:
    """A variant from values drawn from ``search.space`` (design optuna, at run time)."""
    name = ", ".join(f"{k}={short(v)}" for k, v in sample.items())
    return Variant(index, name, dict(sample), _resolve(study, sample, f"search ({name})"))


def _check_search(study: Study) -> None:
    if len(study.seeds) != 1:
        raise StudyError([Problem(_origin(study, ("seeds",)), "seeds", f"design optuna runs each sampled "
                                  f"configuration once, on one seed; got {study.seeds} -- give one seed, e.g. "
                                  f"seeds: [{study.seeds[0]}], and confirm the winner in a one_at_a_time study")])
    for path, dist in study.search.space.items():
        values = dist.choices if isinstance(dist, CategoricalDist) else [dist.low, dist.high]
        for i, value in enumerate(values):
            _resolve(study, {path: value}, f"search.space.{path}" + (f".choices[{i}]" if isinstance(dist, CategoricalDist) else ""))


def max_t(study: Study, variants: list[Variant]) -> int:
    """The scheduler's horizon in epochs: ``scheduler.max_t``, or when null the longest variant's epochs."""
    return study.scheduler.max_t or max([study.train.epochs] + [v.config.train.epochs for v in variants])


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """The epochs a race (or ASHA) judges at: ``grace_period x reduction_factor^k`` below ``max_t``."""
    out, k = [], 0
    while round(grace_period * reduction_factor**k) < max_t:
        out.append(round(grace_period * reduction_factor**k))
        k += 1
    return sorted(set(out))


def _check_scheduler(study: Study, variants: list[Variant]) -> None:
    s = study.scheduler
    cap = study.decision.max_seeds
    if cap is not None and cap < len(study.seeds):
        raise StudyError([Problem(_origin(study, ("decision", "max_seeds")), "decision.max_seeds",
                                  f"{cap} is below the {len(study.seeds)} seeds listed; set it to "
                                  f"{len(study.seeds)} or more, or null (only the listed seeds)")])
    if study.design == "optuna" and (s.name == "race" or cap is not None):
        key = "scheduler.name" if s.name == "race" else "decision.max_seeds"
        raise StudyError([Problem(_origin(study, tuple(key.split("."))), key,
                                  f"{'race' if s.name == 'race' else 'max_seeds'} compares variants over seeds; "
                                  "design optuna runs one seed per sample: use scheduler asha or none, and "
                                  "leave max_seeds null")])
    if s.name not in ("asha", "race"):
        return
    origin = _origin(study, ("scheduler",))
    longest = max(v.config.train.epochs for v in variants)
    if s.max_t is not None and s.max_t < longest:
        raise StudyError([Problem(origin, "scheduler.max_t", f"{s.max_t} would stop every trial before its last epoch "
                                  f"(the longest variant trains {longest} epochs); set max_t: {longest} or null")])
    horizon = max_t(study, variants)
    if s.grace_period > horizon:
        why = "" if s.max_t is not None else " epochs: max_t is null, so the longest variant's"
        raise StudyError([Problem(origin, "scheduler.grace_period", f"grace_period ({s.grace_period}) must be <= "
                                  f"max_t ({horizon}{why}); no trial could ever be compared")])


def check(study: Study) -> list[Variant]:
    """Validate everything that depends on expansion; return the variants."""
    _factor_paths(study)
    if study.design == "optuna":
        _check_search(study)
    variants = expand(study)
    _check_scheduler(study, variants)
    return variants
