"""Design ``optuna``: the study's ``search:`` space as Optuna distributions for Ray Tune's ``OptunaSearch``.

Optuna's categorical values must be plain scalars, so a choice such as
``{name: focal, gamma: 1.5}`` travels as its label (``focal(gamma=1.5)``) and
``values`` maps labels back to the study's choices.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ablate.study.expand import config_dict, sampled_variant, short
from ablate.study.paths import get
from ablate.study.schema import CategoricalDist, FloatDist, Study


def distributions(study: Study) -> dict[str, Any]:
    space = {}
    for path, d in study.search.space.items():
        if isinstance(d, CategoricalDist):
            space[path] = CategoricalDistribution([short(c) for c in d.choices])
        elif isinstance(d, FloatDist):
            space[path] = FloatDistribution(d.low, d.high, log=d.log, step=d.step)
        else:
            space[path] = IntDistribution(d.low, d.high, log=d.log, step=1 if d.log else d.step)
    return space


def values(study: Study, sampled: dict[str, Any]) -> dict[str, Any]:
    """Optuna's sampled values -> the study's levels (categorical labels -> choices)."""
    out = {}
    for path, value in sampled.items():
        d = study.search.space[path]
        out[path] = {short(c): c for c in d.choices}[value] if isinstance(d, CategoricalDist) else value
    return out


def baseline_point(study: Study) -> dict[str, Any] | None:
    """The baseline's values as a point of the space (run first, as Optuna's first trial), or None."""
    base = config_dict(study.baseline())
    point = {}
    for path, d in study.search.space.items():
        value = get(base, tuple(path.split(".")))
        if isinstance(d, CategoricalDist):
            parts = tuple(path.split("."))
            same = [short(c) for c in d.choices
                    if get(config_dict(sampled_variant(study, 0, {path: c}).config), parts) == value]
            if not same:
                return None
            point[path] = same[0]
        elif d.low <= value <= d.high:
            point[path] = value
        else:
            return None
    return point


def searcher(study: Study, *, metric: str, mode: str, points: list[dict], done: list[tuple[dict, float | None, bool]]):
    """Ray Tune's OptunaSearch with a seeded TPE sampler.

    Args:
        points: points to evaluate first (the baseline, unfinished trials of an earlier run).
        done: (point, final metric, pruned) of trials an earlier run finished, told to Optuna as history.
    """
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = OptunaSearch(distributions(study), metric=metric, mode=mode, points_to_evaluate=points or None,
                          sampler=optuna.samplers.TPESampler(seed=study.search.seed))
    for point, value, pruned in done:
        search.add_evaluated_point(point, value if value is not None else float("nan"), pruned=pruned)
    return search
