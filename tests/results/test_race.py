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


def scipy_p(diffs, others=(), margin=0.01):
    """The look's one-sided p by hand with scipy: spread = max(own sd, sd pooled over every variant's pairs)."""
    groups = [np.asarray(diffs), *[np.asarray(o) for o in others]]
    dof = sum(len(g) - 1 for g in groups)
    pooled = np.sqrt(sum((len(g) - 1) * np.var(g, ddof=1) for g in groups) / dof)
    sd = max(np.std(diffs, ddof=1), pooled)
    t = (np.mean(diffs) + margin) / (sd / np.sqrt(len(diffs)))
    return stats.t.cdf(t, dof)


def test_a_variant_clearly_worse_is_stopped_with_scipys_p_times_looks_then_holm():
    r = race()
    feed(r, 0, BASE)
    bad = {0: -0.080, 1: -0.085, 2: -0.090}
    stops = feed(r, 1, shifted(bad), upto=1)
    # rungs of grace_period 1 x reduction_factor 3^k below max_t 4: epochs 1 and 3;
    # looks = 2 rungs x (max_seeds - min_seeds + 1 = 1) = 2
    assert r.rungs == [1, 3] and r.looks == 2
    diffs = np.array([bad[0], bad[1], bad[2]])
    p_look = scipy_p(diffs)  # variant 2 has no pairs yet: the pool is variant 1's own (df 2)
    assert p_look == pytest.approx(stats.ttest_1samp(diffs + 0.01, 0.0, alternative="less").pvalue)
    expected = adjust([min(1.0, 2 * p_look), 1.0], "holm")[0]  # variant 2 has no look yet: p 1
    assert expected < 0.05
    assert [s.variant for s in stops] == [1]
    assert stops[0].p == pytest.approx(expected, rel=1e-9)
    assert stops[0].epoch == 1 and stops[0].n == 3 and stops[0].delta == pytest.approx(diffs.mean())
    assert r.is_stopped(1) and not r.is_stopped(2) and not r.is_stopped(0)


def test_the_spread_is_pooled_over_variants_but_never_below_the_variants_own():
    r = race(variants=[1, 2, 3])
    feed(r, 0, BASE)
    calm = {0: 0.001, 1: -0.001, 2: 0.0}  # variant 2: tiny spread
    loud = {0: 0.03, 1: -0.03, 2: 0.0}  # variant 3: large spread
    feed(r, 2, shifted(calm), upto=1)
    feed(r, 3, shifted(loud), upto=1)
    mild = {0: -0.030, 1: -0.036, 2: -0.033}
    feed(r, 1, shifted(mild), upto=1)
    d1, d2, d3 = (np.array(list(x.values())) for x in (mild, calm, loud))
    pooled, dof = r.spread(1)
    assert dof == 6 and pooled == pytest.approx(np.sqrt((2 * np.var(d1, ddof=1) + 2 * np.var(d2, ddof=1)
                                                          + 2 * np.var(d3, ddof=1)) / 6))
    # variant 1's own sd (0.003) is below the pool: the pooled sd on 6 df is used; stopped or not by that p
    p1 = 2 * scipy_p(d1, [d2, d3])
    assert r._best_p[1][0] == pytest.approx(p1, rel=1e-9)
    # a variant whose own seeds disagree more than the pool keeps its own sd (on the pooled df)
    p3 = 2 * scipy_p(d3, [d1, d2])
    assert r._best_p[3][0] == pytest.approx(min(1.0, p3), rel=1e-9)
    assert np.std(d3, ddof=1) > pooled


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
    # the same variant data: stopped in a race of 1 variant, not in a race of 8 (Holm's first step is alpha / 8)
    mild = shifted({0: -0.035, 1: -0.045, 2: -0.040})
    alone, crowd = race(variants=[1]), race(variants=list(range(1, 9)))
    for r in (alone, crowd):
        feed(r, 0, BASE)
        feed(r, 1, mild, upto=1)
    p = 2 * scipy_p(np.array([-0.035, -0.045, -0.040]))
    assert p < 0.05 < 8 * p  # the case sits between the two thresholds
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
