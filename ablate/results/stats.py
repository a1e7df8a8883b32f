"""The statistics of a comparison over seeds: intervals, tests, verdicts with error control, seeds needed.

A variant is compared with the baseline on the seeds both ran to the end (``compare``): paired
differences ``v_s - b_s`` when two or more seeds are shared (seed ``s`` shares data order and
initialisation in both, so the difference cancels most seed noise), Welch's unpaired comparison
when the two ran disjoint seeds, and a bare difference otherwise.  ``judge`` turns a study's
comparisons into verdicts:

- ``better`` / ``worse``: the two-sided t-test rejects "no difference" after Holm's correction
  across the study's variants (or Bonferroni, or none: ``decision.correction``);
- ``equivalent``: two one-sided tests (TOST) put the difference inside ``±decision.margin``,
  corrected the same way;
- ``unresolved``: neither, with the seeds that would give 80% power to settle it at the study's
  pooled spread of paired differences.

Beside them, descriptive only with few seeds: a bootstrap interval (seeds resampled jointly) and
the probability of improvement ``P(v_s > b_s)`` (Bouthillier et al. 2021; rliable).
numpy and scipy only; each rule is checked against scipy on small exact cases (tests/results).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

DELTA_COLUMNS = ("dmAP", "dmAP_lo", "dmAP_hi", "paired", "n_pairs", "p", "p_equiv", "verdict", "seeds_needed",
                 "boot_lo", "boot_hi", "p_improve")
VERDICTS = ("better", "worse", "equivalent", "unresolved")
CORRECTIONS = ("holm", "bonferroni", "none")
POWER = 0.8  # the power "seeds needed" is computed for
MAX_SEEDS = 1000  # seeds_needed searches up to this
BOOTSTRAP_RESAMPLES = 9999
ZERO_SPREAD = 1e-12  # differences closer than this are identical (0.41 - 0.40 and 0.42 - 0.41 differ in float)


def _stats():
    """scipy.stats, imported at its first use: 0.6 s that a study's driver would otherwise pay before its first
    trial (the race's first look, or the report, imports it)."""
    from scipy import stats

    return stats


@lru_cache(maxsize=4096)
def t_quantile(confidence: float, df: float) -> float:
    """Two-sided Student-t critical value ``t_{(1+c)/2, df}`` (cached: a study asks the same few)."""
    return float(_stats().t.ppf((1 + confidence) / 2, df))


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline on the seeds both have a final value for.

    ``diffs`` are the paired differences (``paired``); otherwise ``v`` and ``b`` are the two
    independent samples.  ``mean`` is the difference of the means either way.
    """

    mean: float
    paired: bool
    n: int  # paired: the shared seeds; unpaired: the variant's seeds
    diffs: np.ndarray | None = None
    v: np.ndarray | None = None
    b: np.ndarray | None = None

    @property
    def testable(self) -> bool:
        return (self.paired and self.n >= 2) or (not self.paired and self.v is not None and len(self.v) >= 2
                                                 and len(self.b) >= 2)


def compare(v: dict[int, float], b: dict[int, float]) -> Comparison | None:
    """``v`` (seed -> final value of the variant) against ``b`` (the baseline's), or None when one is empty.

    Paired on the shared seeds when there are two or more, whatever else either side ran (a seed
    the other lacks, e.g. a failed baseline seed, is left out of the pairs, not the whole pairing);
    with one shared seed, that seed's difference alone (no interval); with none, Welch's comparison.

    Example:
        >>> c = compare({0: 0.42, 1: 0.43, 2: 0.44}, {0: 0.40, 1: 0.41})
        >>> round(c.mean, 3), c.paired, c.n
        (0.02, True, 2)
    """
    if not v or not b:
        return None
    shared = sorted(v.keys() & b.keys())
    if shared:
        diffs = np.array([v[s] - b[s] for s in shared], float)
        return Comparison(float(diffs.mean()), True, len(shared), diffs=diffs)
    va, ba = np.array(list(v.values()), float), np.array(list(b.values()), float)
    return Comparison(float(va.mean() - ba.mean()), False, len(va), v=va, b=ba)


def paired_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(mean, lo, hi) of paired differences ``v_s - b_s``: mean ± t_{(1+c)/2, n-1} sd / sqrt(n).

    Args:
        diffs: at least two differences; zero spread gives an interval of width 0.
    """
    n, mean, sd = len(diffs), float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def welch_interval(v: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(mean, lo, hi) of ``mean(v) - mean(b)`` with Welch's unequal-variance interval.

    Args:
        v, b: at least two values each; zero spread in both gives an interval of width 0.
    """
    mean = float(np.mean(v) - np.mean(b))
    se, df = _welch_se_df(v, b)
    if se == 0:
        return mean, mean, mean
    half = float(_stats().t.ppf((1 + confidence) / 2, df)) * se
    return mean, mean - half, mean + half


def _welch_se_df(v: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    sv, sb = np.var(v, ddof=1) / len(v), np.var(b, ddof=1) / len(b)
    se = math.sqrt(sv + sb)
    if se == 0:
        return 0.0, math.inf
    return se, (sv + sb) ** 2 / (sv**2 / (len(v) - 1) + sb**2 / (len(b) - 1))  # Welch-Satterthwaite


def interval(c: Comparison, confidence: float) -> tuple[float, float]:
    """The two-sided ``confidence`` t interval of the difference (NaN, NaN when it cannot be had)."""
    if not c.testable:
        return math.nan, math.nan
    _, lo, hi = paired_interval(c.diffs, confidence) if c.paired else welch_interval(c.v, c.b, confidence)
    return lo, hi


def _t_test(c: Comparison, shift: float, alternative: str) -> float:
    """p of the t-test of ``difference - shift`` against 0 (``alternative``: two-sided, greater, less).

    Zero spread (identical differences) has no t statistic: the p-value is then 0 or 1 by the sign.
    """
    if c.paired:
        spread = float(np.std(c.diffs, ddof=1))
        if spread <= ZERO_SPREAD * max(1.0, float(np.abs(c.diffs).max())):
            return _certain(c.mean - shift, alternative)
        se, df = spread / math.sqrt(c.n), c.n - 1
    else:
        se, df = _welch_se_df(c.v, c.b)
        if se <= ZERO_SPREAD:
            return _certain(c.mean - shift, alternative)
    return _t_p((c.mean - shift) / se, df, alternative)


def _t_p(t: float, df: float, alternative: str) -> float:
    """p of a t statistic on ``df`` degrees of freedom, as ``stats.ttest_1samp`` / ``ttest_ind`` compute it, without
    their per-call argument handling (1.5 ms a call, three calls a variant: the race judges the variants at every
    epoch's result, and a report judges them all); tests/results/test_stats.py checks each p against scipy's tests."""
    if alternative == "greater":
        return float(special.stdtr(df, -t))
    if alternative == "less":
        return float(special.stdtr(df, t))
    return min(1.0, 2.0 * float(special.stdtr(df, -abs(t))))


def _certain(gap: float, alternative: str) -> float:
    if abs(gap) <= ZERO_SPREAD:
        gap = 0.0
    if alternative == "two-sided":
        return 0.0 if gap != 0 else 1.0
    return 0.0 if (gap > 0 if alternative == "greater" else gap < 0) else 1.0


def p_difference(c: Comparison) -> float:
    """Two-sided p-value of "the variant and the baseline are the same" (paired t or Welch)."""
    return _t_test(c, 0.0, "two-sided") if c.testable else math.nan


def p_equivalence(c: Comparison, margin: float) -> float:
    """TOST p-value of "the difference is at least ``margin`` either way": the larger one-sided p."""
    if not c.testable:
        return math.nan
    return max(_t_test(c, -margin, "greater"), _t_test(c, margin, "less"))


def p_worse(c: Comparison, margin: float) -> float:
    """One-sided p-value of "the difference is at least ``-margin``" (small: worse by more than ``margin``).

    ``c``'s differences are signed so that positive is better.
    """
    return _t_test(c, -margin, "less") if c.testable else math.nan


def p_worse_spread(diffs: np.ndarray, margin: float, sd: float, df: float) -> float:
    """One-sided p of "the mean difference is at least ``-margin``" with the spread ``sd`` estimated on ``df``
    degrees of freedom (a pooled estimate: Dunnett's many-to-one comparisons pool the spread the same way)."""
    n, gap = len(diffs), float(np.mean(diffs)) + margin
    if sd <= ZERO_SPREAD * max(1.0, float(np.abs(diffs).max())):
        return _certain(gap, "less")
    return float(_stats().t.cdf(gap / (sd / math.sqrt(n)), df))


def adjust(pvalues: list[float], correction: str) -> list[float]:
    """Adjusted p-values across a family (NaN entries are not members): Holm, Bonferroni or none.

    Holm's step-down: sorted ascending, ``p_(i) * (m - i + 1)``, made monotone, capped at 1.

    Example:
        >>> [round(p, 3) for p in adjust([0.01, 0.04, 0.03, float("nan")], "holm")]
        [0.03, 0.06, 0.06, nan]
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction '{correction}'; valid: {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, float)
    out = np.full(len(p), math.nan)
    members = np.flatnonzero(~np.isnan(p))
    m = len(members)
    if correction == "none" or m == 0:
        out[members] = p[members]
    elif correction == "bonferroni":
        out[members] = np.minimum(1.0, p[members] * m)
    else:
        running = 0.0
        for rank, i in enumerate(members[np.argsort(p[members], kind="stable")]):
            running = max(running, min(1.0, (m - rank) * p[i]))
            out[i] = running
    return out.tolist()


def _nct_cdf(x, df, nc) -> np.ndarray:
    """The noncentral t's cdf; where scipy's underflows to NaN in a far tail, its complement, else a normal tail."""
    x, df, nc = np.broadcast_arrays(np.asarray(x, float), np.asarray(df, float), np.asarray(nc, float))
    out = _stats().nct.cdf(x, df, nc)
    bad = np.isnan(out)
    if bad.any():
        out[bad] = 1.0 - _stats().nct.sf(x[bad], df[bad], nc[bad])
        still = np.isnan(out)
        out[still] = _stats().norm.cdf(x[still] - nc[still])
    return out


def power_difference(delta: float, sd: float, n, alpha: float):
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs (a number or an array),
    true mean ``delta``, spread ``sd``: ``P(T > t) + P(T < -t)``, ``T ~ nct(n - 1, delta sqrt(n) / sd)``."""
    n = np.asarray(n, float)
    df, nc = n - 1, delta * np.sqrt(n) / sd
    crit = _stats().t.ppf(1 - alpha / 2, df)
    power = 1.0 - _nct_cdf(crit, df, nc) + _nct_cdf(-crit, df, nc)
    return float(power) if power.ndim == 0 else power


def power_equivalence(delta: float, sd: float, n, alpha: float, margin: float):
    """A lower bound on the power of paired TOST within ``±margin``: ``P(T2 < -t) - P(T1 <= t)``, at least 0."""
    n = np.asarray(n, float)
    df, scale = n - 1, np.sqrt(n) / sd
    crit = _stats().t.ppf(1 - alpha, df)
    power = np.maximum(0.0, _nct_cdf(-crit, df, (delta - margin) * scale) - _nct_cdf(crit, df, (delta + margin) * scale))
    return float(power) if power.ndim == 0 else power


def seeds_needed(delta: float, sd: float, *, margin: float, alpha: float, have: int) -> int | None:
    """Fewest seeds, more than ``have``, that give ``POWER`` to settle a difference of ``delta`` at spread ``sd``.

    Settling is showing the difference (two-sided test) or, when ``|delta| < margin``, showing
    equivalence (TOST), whichever needs fewer.  None when ``sd`` or ``delta`` is unknown or more
    than ``MAX_SEEDS`` would be needed.
    """
    if any(math.isnan(x) for x in (delta, sd)) or sd <= 0 or have >= MAX_SEEDS:
        return None
    n = np.arange(max(2, have + 1), MAX_SEEDS + 1)
    enough = power_difference(delta, sd, n, alpha) >= POWER if delta != 0 else np.zeros(len(n), bool)
    if abs(delta) < margin:
        enough |= power_equivalence(delta, sd, n, alpha, margin) >= POWER
    hits = np.flatnonzero(enough)
    return int(n[hits[0]]) if len(hits) else None


def pooled_sd(comparisons: list[Comparison]) -> float:
    """The spread of paired differences pooled over comparisons: ``sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))``."""
    pairs = [c.diffs for c in comparisons if c is not None and c.paired and c.n >= 2]
    dof = sum(len(d) - 1 for d in pairs)
    if dof == 0:
        return math.nan
    return math.sqrt(sum((len(d) - 1) * float(np.var(d, ddof=1)) for d in pairs) / dof)


def bootstrap_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference (seeds resampled jointly), seeded."""
    if len(diffs) < 2 or np.ptp(diffs) == 0:
        return (float(diffs[0]), float(diffs[0])) if len(diffs) >= 2 else (math.nan, math.nan)
    result = _stats().bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                             method="percentile", rng=np.random.default_rng(0))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def p_improve(diffs: np.ndarray, higher_is_better: bool = True) -> float:
    """P(a seed of the variant beats the same seed of the baseline), ties counted half."""
    if len(diffs) == 0:
        return math.nan
    gain = diffs if higher_is_better else -diffs
    return float((np.sum(gain > 0) + 0.5 * np.sum(gain == 0)) / len(gain))


def judge(comparisons: dict, *, margin: float, confidence: float, correction: str,
          higher_is_better: bool = True) -> dict:
    """The verdict of every comparison in a study, with error control across them.

    Args:
        comparisons: variant -> ``Comparison`` (or None: nothing to compare).
        margin: the smallest difference that matters, in the metric's units (``decision.margin``).
        confidence: e.g. 0.95; alpha is ``1 - confidence``.
        correction: holm | bonferroni | none, across the study's testable comparisons.

    Returns:
        variant -> ``{"verdict", "p", "p_equiv", "dmAP_lo", "dmAP_hi"}``; ``p`` and ``p_equiv`` are
        the adjusted p-values, the interval is the unadjusted t interval.  ``seeds_to_settle`` adds
        how many seeds an unresolved one needs.
    """
    alpha = 1 - confidence
    keys = list(comparisons)
    raw_diff = [p_difference(comparisons[k]) if comparisons[k] is not None else math.nan for k in keys]
    raw_equiv = [p_equivalence(comparisons[k], margin) if comparisons[k] is not None else math.nan for k in keys]
    out = {}
    for k, pd_, pe in zip(keys, adjust(raw_diff, correction), adjust(raw_equiv, correction)):
        c = comparisons[k]
        row = {"verdict": None, "p": pd_, "p_equiv": pe, "dmAP_lo": math.nan, "dmAP_hi": math.nan}
        if c is not None:
            row["dmAP_lo"], row["dmAP_hi"] = interval(c, confidence)
            gain = c.mean if higher_is_better else -c.mean
            if not math.isnan(pd_) and pd_ < alpha and gain != 0:
                row["verdict"] = "better" if gain > 0 else "worse"
            elif not math.isnan(pe) and pe < alpha:
                row["verdict"] = "equivalent"
            else:
                row["verdict"] = "unresolved"
        out[k] = row
    return out


def seeds_to_settle(comparisons: dict, verdicts: dict, *, margin: float, confidence: float,
                    correction: str, spread: float | None = None) -> dict:
    """variant -> the seeds an unresolved comparison needs for 80% power (None otherwise), at the study's
    pooled spread of paired differences and at ``alpha / m`` (Holm's and Bonferroni's first step), so
    the seeds suffice whatever the other variants do.  ``spread``: that pooled sd, if already known."""
    testable = sum(c is not None and c.testable for c in comparisons.values())
    alpha = (1 - confidence) / (max(1, testable) if correction != "none" else 1)
    spread = pooled_sd(list(comparisons.values())) if spread is None else spread
    return {k: seeds_needed(c.mean, spread, margin=margin, alpha=alpha, have=c.n)
            if c is not None and verdicts[k]["verdict"] == "unresolved" else None
            for k, c in comparisons.items()}
