"""bench/scheduler_replay.py on the committed curve bank: the real scheduler classes over recorded curves
(no Ray started).  The benchmark's figures are in docs/benchmarks.md; this checks what they rest on."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

from ablate.study.schema import Decision

SCRIPT = Path(__file__).parents[2] / "bench" / "scheduler_replay.py"


@pytest.fixture(scope="module")
def replay():
    spec = importlib.util.spec_from_file_location("scheduler_replay", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bank(replay):
    trials, epochs = pd.read_parquet(replay.TRIALS), pd.read_parquet(replay.EPOCHS)
    curves = {t: dict(zip(g.epoch, g.mAP)) for t, g in epochs.groupby("trial_id")}
    return trials, epochs, curves


def test_the_bank_is_whole_and_as_the_docs_say(bank):
    trials, epochs, _ = bank
    assert trials.variant.nunique() >= 9 and trials.seed.nunique() >= 6  # >= 8 variants + baseline, >= 6 seeds
    assert (trials.status == "completed").all() and len(epochs) == len(trials) * epochs.epoch.max()
    assert (trials.groupby("variant").seed.nunique() == trials.seed.nunique()).all()


def test_the_race_replayed_stops_only_the_diverging_lr_and_keeps_every_other_trial(replay, bank):
    trials, epochs, curves = bank
    names = trials.drop_duplicates("variant").set_index("variant").variant_name
    variants = sorted(int(v) for v in trials.variant.unique())
    reached, got, stops = replay.replay("race", trials, epochs, curves, (0, 1, 2), [3, 4, 5], variants,
                                        random.Random(0), Decision(), 2, 6, 1, None)
    assert {names[v] for v in stops} == {"train.optimizer.lr=0.48"} and stops[min(stops)].epoch == 3
    assert got[min(stops)] == "worse"
    lr = set(trials[trials.variant == min(stops)].trial_id)
    assert all(n == 6 for t, n in reached.items() if t not in lr)  # every other trial ran to the end
    assert sum(reached.values()) < len(reached) * 6
    full, _, _ = replay.replay("none", trials, epochs, curves, (0, 1, 2), [3, 4, 5], variants,
                               random.Random(0), Decision(), 2, 6, 1, None)
    assert set(full.values()) == {6}


def test_adaptive_seeds_replayed_go_only_to_open_verdicts(replay, bank):
    trials, epochs, curves = bank
    variants = sorted(int(v) for v in trials.variant.unique())
    reached, got, stops = replay.replay("race+seeds", trials, epochs, curves, (0, 1, 2), [3, 4, 5], variants,
                                        random.Random(0), Decision(), 2, 6, 1, 6)
    seeds = trials.set_index("trial_id").loc[list(reached), ["variant", "seed"]]
    per_variant = seeds.groupby("variant").seed.nunique()
    assert all(per_variant[v] == 3 for v in stops)  # a stopped variant is given no seed
    assert per_variant[0] == per_variant.max()  # the baseline has every seed any variant has
    assert all(got[v] != "unresolved" or per_variant[v] == 6 for v in got)  # open only at max_seeds
