"""The statistics rules on small exact cases, each checked against scipy (or a hand computation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ablate.results.stats import (
    adjust,
    bootstrap_interval,
    compare,
    interval,
    judge,
    p_difference,
    p_equivalence,
    p_improve,
    p_worse,
    pooled_sd,
    power_difference,
    power_equivalence,
    seeds_needed,
    seeds_to_settle,
)

D = np.array([0.005, 0.010, 0.006])  # paired differences of three seeds


def test_compare_pairs_on_the_shared_seeds_only():
    c = compare({0: 0.405, 1: 0.420, 2: 0.426, 3: 0.5}, {0: 0.400, 1: 0.410, 2: 0.420, 4: 0.3})
    assert c.paired and c.n == 3 and c.diffs.tolist() == pytest.approx(D.tolist())
    one = compare({0: 0.43}, {0: 0.40, 1: 0.50})
    assert one.paired and one.n == 1 and one.mean == pytest.approx(0.03)  # that seed, not the baseline's mean
    assert not one.testable and math.isnan(p_difference(one)) and all(map(math.isnan, interval(one, 0.95)))
    welch = compare({3: 0.45, 4: 0.46}, {0: 0.40, 1: 0.41, 2: 0.43})
    assert not welch.paired and welch.testable
    assert compare({}, {0: 0.4}) is None


def test_paired_interval_and_p_equal_scipy():
    c = compare({s: 0.4 + d for s, d in enumerate(D)}, {s: 0.4 for s in range(3)})
    ref = stats.ttest_1samp(D, 0.0)
    ci = ref.confidence_interval(0.95)
    assert interval(c, 0.95) == pytest.approx((ci.low, ci.high))
    assert p_difference(c) == pytest.approx(ref.pvalue)


def test_welch_interval_and_p_equal_scipy():
    v, b = np.array([0.45, 0.46]), np.array([0.40, 0.41, 0.43])
    c = compare(dict(zip((3, 4), v)), dict(zip((0, 1, 2), b)))
    ref = stats.ttest_ind(v, b, equal_var=False)
    ci = ref.confidence_interval(0.9)
    assert interval(c, 0.9) == pytest.approx((ci.low, ci.high))
    assert p_difference(c) == pytest.approx(ref.pvalue)


def test_tost_is_the_larger_of_two_one_sided_scipy_tests():
    diffs = np.array([0.001, -0.002, 0.0005, 0.0015])
    c = compare({s: 0.4 + d for s, d in enumerate(diffs)}, {s: 0.4 for s in range(4)})
    lower = stats.ttest_1samp(diffs, -0.01, alternative="greater").pvalue
    upper = stats.ttest_1samp(diffs, 0.01, alternative="less").pvalue
    assert p_equivalence(c, 0.01) == pytest.approx(max(lower, upper))
    assert p_equivalence(c, 0.01) < 0.05  # well inside ±0.01
    assert p_equivalence(c, 0.0005) > 0.05  # a margin smaller than the noise shows nothing


def _scipy_p(c, shift: float, alternative: str) -> float:
    """scipy's own t-test of ``difference - shift`` against 0, paired or Welch as ``c`` is."""
    if c.paired:
        return stats.ttest_1samp(c.diffs - shift, 0.0, alternative=alternative).pvalue
    return stats.ttest_ind(c.v - shift, c.b, equal_var=False, alternative=alternative).pvalue


def test_every_p_paired_or_welch_equals_scipy_s_t_tests():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n_v, n_b = (int(n) for n in rng.integers(2, 7, 2))
        v, b = 0.4 + rng.normal(0, 0.01, n_v), 0.4 + rng.normal(0, 0.01, n_b)
        welch = compare(dict(enumerate(v)), {s + 10: x for s, x in enumerate(b)})  # disjoint seeds
        paired = compare(dict(enumerate(v)), dict(enumerate(np.resize(b, n_v))))
        assert paired.paired and not welch.paired
        m = float(rng.uniform(0.001, 0.02))
        for c in (welch, paired):
            tost = max(_scipy_p(c, -m, "greater"), _scipy_p(c, m, "less"))
            for got, want in ((p_difference(c), _scipy_p(c, 0.0, "two-sided")),
                              (p_worse(c, m), _scipy_p(c, -m, "less")), (p_equivalence(c, m), tost)):
                assert got == pytest.approx(want, rel=1e-9, abs=1e-15), (c, m)


def test_zero_spread_is_certain_either_way():
    same = compare({0: 0.41, 1: 0.42}, {0: 0.40, 1: 0.41})
    assert interval(same, 0.95) == pytest.approx((0.01, 0.01)) and p_difference(same) == 0.0
    equal = compare({0: 0.40, 1: 0.41}, {0: 0.40, 1: 0.41})
    assert p_difference(equal) == 1.0 and p_equivalence(equal, 0.01) == 0.0


def test_holm_and_bonferroni_on_an_exact_case():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(p, "none") == p
    with_nan = adjust([0.01, math.nan, 0.04], "holm")  # NaN: not a member, so m = 2
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="holm, bonferroni, none"):
        adjust(p, "fdr")


def test_power_of_the_paired_t_test_matches_the_textbook_and_a_simulation():
    assert power_difference(1.0, 1.0, 10, 0.05) == pytest.approx(0.8031, abs=1e-3)  # d = 1, n = 10 (G*Power)
    rng = np.random.default_rng(0)
    sims = rng.normal(0.5, 1.0, size=(20000, 12))
    simulated = np.mean(stats.ttest_1samp(sims, 0.0, axis=1).pvalue < 0.05)
    assert power_difference(0.5, 1.0, 12, 0.05) == pytest.approx(simulated, abs=0.015)


def test_power_of_tost_is_a_lower_bound_close_to_a_simulation():
    rng = np.random.default_rng(1)
    sims = rng.normal(0.0, 1.0, size=(20000, 20))
    lo = stats.ttest_1samp(sims, -1.0, axis=1, alternative="greater").pvalue
    hi = stats.ttest_1samp(sims, 1.0, axis=1, alternative="less").pvalue
    simulated = np.mean(np.maximum(lo, hi) < 0.05)
    bound = power_equivalence(0.0, 1.0, 20, 0.05, 1.0)
    assert bound <= simulated + 0.01 and bound == pytest.approx(simulated, abs=0.03)


def test_seeds_needed_is_the_first_n_with_80_percent_power_and_more_than_already_run():
    n = seeds_needed(0.01, 0.01, margin=0.001, alpha=0.05, have=2)
    assert power_difference(0.01, 0.01, n, 0.05) >= 0.8 > power_difference(0.01, 0.01, n - 1, 0.05)
    assert seeds_needed(0.05, 0.01, margin=0.001, alpha=0.05, have=6) == 7  # never fewer than already run
    near_zero = seeds_needed(0.0, 0.01, margin=0.01, alpha=0.05, have=2)  # settled by equivalence
    assert power_equivalence(0.0, 0.01, near_zero, 0.05, 0.01) >= 0.8
    assert seeds_needed(0.0001, 1.0, margin=0.0, alpha=0.05, have=2) is None  # more than 1000
    assert seeds_needed(0.01, math.nan, margin=0.01, alpha=0.05, have=2) is None


def test_pooled_sd_weights_each_variant_by_its_degrees_of_freedom():
    a, b = np.array([0.01, 0.02, 0.03]), np.array([0.0, 0.04])
    ca = compare({s: x for s, x in enumerate(a)}, dict.fromkeys(range(3), 0.0))
    cb = compare({s: x for s, x in enumerate(b)}, dict.fromkeys(range(2), 0.0))
    expected = math.sqrt((2 * np.var(a, ddof=1) + 1 * np.var(b, ddof=1)) / 3)
    assert pooled_sd([ca, cb, None]) == pytest.approx(expected)


def test_bootstrap_is_scipys_percentile_interval_and_p_improve_counts_seeds():
    diffs = np.array([0.01, -0.002, 0.004, 0.006, 0.003])
    ref = stats.bootstrap((diffs,), np.mean, confidence_level=0.95, n_resamples=9999, method="percentile",
                          rng=np.random.default_rng(0)).confidence_interval
    assert bootstrap_interval(diffs, 0.95) == pytest.approx((ref.low, ref.high))
    assert p_improve(np.array([0.1, -0.1, 0.0, 0.2])) == pytest.approx(2.5 / 4)
    assert p_improve(np.array([0.1, -0.1, 0.0, 0.2]), higher_is_better=False) == pytest.approx(1.5 / 4)


def _paired(diffs, seed0=0):
    return compare({seed0 + s: 0.4 + d for s, d in enumerate(diffs)}, {seed0 + s: 0.4 for s in range(len(diffs))})


def test_verdicts():
    family = {
        "better": _paired([0.020, 0.022, 0.021, 0.019]),
        "worse": _paired([-0.10, -0.12, -0.11, -0.09]),
        "same": _paired([0.001, -0.001, 0.0005, -0.0005]),
        "noisy": _paired([0.03, -0.02, 0.01, -0.015]),
        "one seed": _paired([0.05]),
        "nothing": None,
    }
    out = judge(family, margin=0.01, confidence=0.95, correction="holm")
    assert {k: v["verdict"] for k, v in out.items()} == {
        "better": "better", "worse": "worse", "same": "equivalent", "noisy": "unresolved",
        "one seed": "unresolved", "nothing": None}
    need = seeds_to_settle(family, out, margin=0.01, confidence=0.95, correction="holm")
    spread = pooled_sd(list(family.values()))
    assert need["noisy"] == seeds_needed(family["noisy"].mean, spread, margin=0.01, alpha=0.05 / 4, have=4)  # 4 testable
    assert need["noisy"] > 4 and need["better"] is None and need["nothing"] is None
    lower_is_better = judge({"v": _paired([0.020, 0.022, 0.021, 0.019])}, margin=0.01, confidence=0.95,
                            correction="none", higher_is_better=False)
    assert lower_is_better["v"]["verdict"] == "worse"  # a higher loss


def test_holm_changes_a_verdict_that_one_test_alone_would_give():
    borderline = _paired([0.01, 0.02, 0.015])
    alone = judge({"v": borderline}, margin=0.001, confidence=0.95, correction="holm")
    assert alone["v"]["verdict"] == "better" and alone["v"]["p"] == pytest.approx(p_difference(borderline))
    nulls = {f"null{i}": _paired([0.001 * (-1) ** i, 0.002, -0.001]) for i in range(9)}
    crowded = judge({"v": borderline, **nulls}, margin=0.001, confidence=0.95, correction="holm")
    assert crowded["v"]["verdict"] == "unresolved"  # 10 comparisons: the same evidence no longer suffices


def test_ten_null_variants_give_a_false_verdict_at_most_5_percent_of_studies():
    # 10 variants identical to the baseline, 3 seeds each, seed noise shared within a seed (as a shared data
    # order and init would), 1000 simulated studies: any "better" or "worse" is a false verdict
    rng = np.random.default_rng(7)
    false = 0
    for _ in range(1000):
        seed_effect = rng.normal(0, 0.01, 3)
        base = {s: 0.4 + seed_effect[s] + rng.normal(0, 0.005) for s in range(3)}
        family = {v: compare({s: 0.4 + seed_effect[s] + rng.normal(0, 0.005) for s in range(3)}, base)
                  for v in range(10)}
        verdicts = judge(family, margin=0.01, confidence=0.95, correction="holm")
        false += any(r["verdict"] in ("better", "worse") for r in verdicts.values())
    assert false / 1000 <= 0.05
    # without the correction the same studies would be wrong far more often
    rng = np.random.default_rng(7)
    raw = 0
    for _ in range(500):
        base = {s: 0.4 + rng.normal(0, 0.005) for s in range(3)}
        family = {v: compare({s: 0.4 + rng.normal(0, 0.005) for s in range(3)}, base) for v in range(10)}
        raw += any(r["verdict"] in ("better", "worse")
                   for r in judge(family, margin=0.01, confidence=0.95, correction="none").values())
    assert raw / 500 > 0.2
