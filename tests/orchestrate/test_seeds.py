"""Adaptive seeds (decision.max_seeds) without Ray: which variants get one more seed, from recorded verdicts."""

from __future__ import annotations

from ablate.orchestrate.seeds import add_seeds, added, planned_trials
from ablate.results.race import Stop, save_stops
from ablate.results.store import ResultsStore
from ablate.study import load_study
from ablate.study.expand import check

FINALS = {  # variant -> seed -> final mAP
    0: {0: 0.40, 1: 0.42, 2: 0.41},
    1: {0: 0.45, 1: 0.471, 2: 0.46},  # +0.05 on every seed: better
    2: {0: 0.43, 1: 0.40, 2: 0.42},  # +0.0, -0.02, +0.01: unresolved
    3: {0: 0.10, 1: 0.12, 2: 0.11},  # stopped by the race
}


def _study(write, max_seeds):
    path = write("s.yaml", {"name": "s", "design": "one_at_a_time", "seeds": [0, 1, 2],
                            "factors": {"loss.box": ["diou", "ciou", "eiou"]},
                            "decision": {"max_seeds": max_seeds}})
    study = load_study(path)
    return study, check(study)


def _record(folder, finals):
    store = ResultsStore(folder)
    for v, seeds in finals.items():
        for seed, value in seeds.items():
            tid = f"v{v}s{seed}"
            store.add_epoch(tid, {"epoch": 1, "mAP": value})
            store.upsert_trial(tid, variant=v, variant_name=f"v{v}", seed=seed, status="completed", epochs=1)
    store.flush()


def test_only_an_unresolved_variant_gets_a_seed_and_the_baseline_gets_it_too(tmp_path, write):
    study, variants = _study(write, 5)
    folder = tmp_path / "results" / "s"
    _record(folder, FINALS)
    save_stops(folder, {3: Stop(3, 1, 3, -0.3, 0.001)})
    assert add_seeds(study, variants, folder) == [(0, 3), (2, 3)]
    assert added(folder) == {0: [3], 2: [3]}
    planned = planned_trials(study, variants, folder)
    assert [(t.variant.index, t.seed) for t in planned if t.seed == 3] == [(0, 3), (2, 3)]
    assert len({t.trial_id for t in planned}) == len(planned) == 4 * 3 + 2  # stable, distinct ids
    # nothing new recorded: the same verdicts ask for the next seed (4) of the same variant, up to the cap
    assert add_seeds(study, variants, folder) == [(0, 4), (2, 4)]
    assert add_seeds(study, variants, folder) == []  # 5 seeds: max_seeds reached
    assert added(folder) == {0: [3, 4], 2: [3, 4]}


def test_a_resolved_study_and_a_study_without_max_seeds_add_nothing(tmp_path, write):
    folder = tmp_path / "results" / "s"
    _record(folder, {0: FINALS[0], 1: FINALS[1], 3: FINALS[3]})
    save_stops(folder, {3: Stop(3, 1, 3, -0.3, 0.001)})
    study, variants = _study(write, 6)
    assert add_seeds(study, variants, folder) == [] and added(folder) == {}
    _record(folder, FINALS)
    study, variants = _study(write, None)
    assert add_seeds(study, variants, folder) == []
