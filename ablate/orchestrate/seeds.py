"""Adaptive seeds (``decision.max_seeds``): one more seed at a time for the variants still unresolved.

When every planned trial has ended, each variant whose verdict is ``unresolved`` (and that the
race did not stop) gets the next seed, the baseline (and a ``train.distill`` student's teacher) too
where it lacks that seed, until the variant is resolved or has ``max_seeds`` seeds.  Added seeds continue the listed ones (seeds
``[0, 1, 2]`` go on with 3, 4, ...), the same for every variant, so they pair with the
baseline's.  ``seeds.json`` in the results folder records them *before* their trials start:
a rerun (or a resume after kill -9) plans exactly the trials already added, and adds only what
the recorded verdicts still ask for.  A trial's id is a hash of its config and seed, so an added
trial has the same id in every run.
"""

from __future__ import annotations

from pathlib import Path

from ablate.results.store import SEEDS, read_state, write_state
from ablate.study.expand import Trial, Variant, trial_id
from ablate.study.schema import Study


def added(folder: Path) -> dict[int, list[int]]:
    """variant -> the seeds added to it so far (``seeds.json``)."""
    return {int(v): [int(s) for s in seeds] for v, seeds in read_state(folder, SEEDS).get("added", {}).items()}


def planned_trials(study: Study, variants: list[Variant], folder: Path) -> list[Trial]:
    """The listed seeds' trials, then the added ones, variant-major."""
    extra = added(folder)
    return [Trial(trial_id(v.config, s), v, s) for v in variants for s in [*study.seeds, *extra.get(v.index, [])]]


def add_seeds(study: Study, variants: list[Variant], folder: Path) -> list[tuple[int, int]]:
    """Add the next seed to every variant still unresolved; returns the (variant, seed) added ([]: none).

    Reads the verdicts from the recorded trials (as the report does), writes ``seeds.json``.
    """
    cap = study.decision.max_seeds
    if not cap or study.design == "optuna":
        return []
    # imported here: scipy and the aggregation are not needed at `ablate run`'s start
    from ablate.results.aggregate import factor_paths, load_frames, variant_summary
    from ablate.results.race import race_stops

    trials, epochs = load_frames(folder)
    d = study.decision
    summary = variant_summary(trials, factors=factor_paths(trials), metric=study.scheduler.metric,
                              confidence=d.confidence, margin=d.margin, correction=d.correction, epochs=epochs,
                              stops=race_stops(folder))
    extra = added(folder)
    known = {v.index for v in variants}
    new: dict[int, int] = {}
    for row in summary.itertuples():
        v = int(row.variant)
        if v == 0 or v not in known or row.verdict != "unresolved":
            continue
        mine = [*study.seeds, *extra.get(v, [])]
        if len(mine) >= cap:
            continue
        new[v] = max(study.seeds) + 1 + len(extra.get(v, []))
    if not new:
        return []
    out = []
    for v, seed in sorted(new.items()):
        for w in dict.fromkeys((v, 0, _teacher(variants, v))):  # a student's teacher (train.distill) needs it too
            if w is not None and seed not in extra.get(w, []):
                extra.setdefault(w, []).append(seed)
                out.append((w, seed))
    write_state(folder, SEEDS, {"added": {str(v): sorted(s) for v, s in sorted(extra.items())}})
    return sorted(out)


def _teacher(variants: list[Variant], index: int) -> int | None:
    """The variant a ``train.distill`` student names as its teacher, or None (none, or a trial id)."""
    variant = next(v for v in variants if v.index == index)
    name = variant.config.train.distill.teacher if variant.config.train.distill.name != "none" else None
    return next((v.index for v in variants if v.name == name), None)
