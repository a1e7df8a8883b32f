"""The paired racing rule (results/race.py) on small exact cases, its p-values checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ablate.results.race import Race, Stop, race_stops, save_stops
from ablate.results.stats import adjust

BASE = {0: [0.10, 0.20, 0.30, 0.40], 1: [0.11, 0.22, 0.31, 0.41], 2: [0.09, 0.19, 0.29, 0.42]}  # seed -> epochs 1..4


def race(variants=(1, 2), **kw) -> Race:
    args = {"variants": list(variants), "margin": 0.01, "alpha": 0.05, "grace_period": 1, "max_t": 4,
            "min_seeds": 3, "max_seeds": 3}
    return Race(**{**args, **kw})


def feed(r: Race, variant: int, curves: dict[int, list[float]], upto: int | None = None) -> list[Stop]:
    out = []
    for seed, curve in curves.items():
        for epoch, value in enumerate(curve[:upto], start=1):
            out += r.add(variant, seed, epoch, value)
    return out


def shifted(by: dict[int, float]) -> dict[int, list[float]]:
    return {s: [x + by[s] for x in BASE[s]] for s in BASE}


def test_a_variant_clearly_worse_is_stopped_with_scipys_p_times_looks_then_holm():
    r = race()
    feed(r, 0, BASE)
    bad = {0: -0.080, 1: -0.085, 2: -0.090}
    stops = feed(r, 1, shifted(bad), upto=1)
    # one look so far: epoch 1, 3 pairs; looks = (max_t - grace) x (max_seeds - min_seeds + 1) = 3
    assert r.looks == 3
    diffs = np.array([bad[0], bad[1], bad[2]])
    p_look = stats.ttest_1samp(diffs + 0.01, 0.0, alternative="less").pvalue  # H0: difference >= -margin
    expected = adjust([min(1.0, 3 * p_look), 1.0], "holm")[0]  # variant 2 has no look yet: p 1
    assert expected < 0.05
    assert [s.variant for s in stops] == [1]
    assert stops[0].p == pytest.approx(expected, rel=1e-9)
    assert stops[0].epoch == 1 and stops[0].n == 3 and stops[0].delta == pytest.approx(diffs.mean())
    assert r.is_stopped(1) and not r.is_stopped(2) and not r.is_stopped(0)


def test_no_look_before_grace_period_nor_at_max_t_nor_with_too_few_seeds():
    bad = shifted({0: -0.08, 1: -0.085, 2: -0.09})
    r = race(grace_period=2)
    feed(r, 0, BASE)
    assert feed(r, 1, bad, upto=1) == []  # epoch 1 < grace_period 2
    r = race(min_seeds=4, max_seeds=4)
    feed(r, 0, BASE)
    assert feed(r, 1, bad) == []  # 3 pairs < min_seeds 4
    r = race()
    feed(r, 0, BASE)
    for seed, curve in bad.items():  # only the last epoch, where stopping saves nothing
        r.add(1, seed, 4, curve[3])
    assert not r.stopped


def test_a_difference_within_the_margin_is_never_stopped_however_sure():
    r = race(margin=0.01)
    feed(r, 0, BASE)
    assert feed(r, 1, shifted({0: -0.009, 1: -0.009, 2: -0.009})) == []  # identical pairs: p exactly 1


def test_holm_across_variants_needs_more_evidence_than_one_variant_alone():
    # the same variant data: stopped in a race of 1 variant, not in a race of 5 (Holm's first step is alpha / 5)
    mild = shifted({0: -0.035, 1: -0.045, 2: -0.040})
    alone, crowd = race(variants=[1]), race(variants=[1, 2, 3, 4, 5])
    for r in (alone, crowd):
        feed(r, 0, BASE)
        feed(r, 1, mild, upto=1)
    diffs = np.array([-0.035, -0.045, -0.040])
    p = 3 * stats.ttest_1samp(diffs + 0.01, 0.0, alternative="less").pvalue
    assert p < 0.05 < 5 * p  # the case sits between the two thresholds
    assert alone.is_stopped(1) and not crowd.is_stopped(1)


def test_a_slow_starter_catching_up_is_not_stopped():
    # far behind at epoch 1, gaining every epoch: the gap closes, the race lets it run
    slow = {s: [BASE[s][0] - 0.08, BASE[s][1] - 0.05, BASE[s][2] - 0.02, BASE[s][3] + 0.02] for s in BASE}
    r = race()
    feed(r, 0, BASE)
    # epoch 1 alone is damning (the same pairs stop a variant that is not catching up, first test) ...
    r.add(1, 0, 1, slow[0][0]), r.add(1, 1, 1, slow[1][0])
    stops = r.add(1, 2, 1, slow[2][0])
    assert [s.variant for s in stops] == [1]  # no epoch before 1 to catch up from
    # ... but fed epoch by epoch from epoch 2 on (grace_period 2), it is gaining at every look
    r = race(grace_period=2)
    feed(r, 0, BASE)
    assert feed(r, 1, slow) == []


def test_the_leader_is_never_stopped_and_a_better_variant_never_is():
    # 0.10 worse than the baseline on every pair, yet the best mean at epoch 1: the baseline's other seeds
    # there are poor (its mean over seeds 0-5 is 0.15 < 0.20); the leader runs on
    r = race(variants=[1])
    for seed, value in enumerate([0.30, 0.30, 0.30, 0.00, 0.00, 0.00]):
        r.add(0, seed, 1, value)
    for seed in (0, 1, 2):
        r.add(1, seed, 1, 0.20)
    assert r._leads(1, 1) and not r.stopped
    # the same pairs without the baseline's poor seeds: stopped
    r = race(variants=[1])
    for seed in (0, 1, 2):
        r.add(0, seed, 1, 0.30 + 0.001 * seed)
    stops = [s for seed in (0, 1, 2) for s in r.add(1, seed, 1, 0.20 - 0.002 * seed)]
    assert [s.variant for s in stops] == [1]
    # better than the baseline: never stopped, and the baseline never is
    r = race(variants=[1])
    feed(r, 0, BASE)
    feed(r, 1, shifted({0: 0.05, 1: 0.06, 2: 0.04}))
    assert not r.stopped


def test_mode_min_stops_the_variant_whose_loss_is_higher():
    r = race(higher_is_better=False)
    feed(r, 0, BASE)
    assert [s.variant for s in feed(r, 1, shifted({0: 0.08, 1: 0.085, 2: 0.09}), upto=1)] == [1]
    assert r.stopped[1].delta == pytest.approx(0.085)  # in the metric's own sign: the loss is higher


def test_the_same_results_in_another_order_give_the_same_stops():
    # a resumed driver replays the records all at once: it must reach the stops the live run reached
    bad = shifted({0: -0.08, 1: -0.085, 2: -0.09})
    live = race()
    feed(live, 0, BASE)
    feed(live, 1, bad, upto=2)
    replay = race()
    feed(replay, 1, bad, upto=2)  # the variant's results first, the baseline's after
    feed(replay, 0, BASE)
    assert live.stopped.keys() == replay.stopped.keys() == {1}


def test_stops_are_written_and_read_back(tmp_path):
    stops = {3: Stop(3, 2, 4, -0.05, 0.001)}
    save_stops(tmp_path, stops)
    assert race_stops(tmp_path) == stops
    assert race_stops(tmp_path / "nothing") == {}
    assert "worse than the baseline by more than 0.01 mAP at epoch 2" in stops[3].reason("mAP", 0.01)
