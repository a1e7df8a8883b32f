"""The statistics of a comparison over seeds: intervals, paired or Welch's, and the seeds a difference needs.

numpy and scipy only; each rule is checked against scipy on small exact cases (tests/results).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

DELTA_COLUMNS = ("dmAP", "dmAP_lo", "dmAP_hi", "paired", "resolved", "seeds_to_resolve")
MAX_SEEDS = 1000  # seeds_to_resolve searches 2..MAX_SEEDS


@lru_cache(maxsize=4096)
def t_quantile(confidence: float, df: float) -> float:
    """Two-sided Student-t critical value ``t_{(1+c)/2, df}`` (cached: a study asks the same few)."""
    return float(stats.t.ppf((1 + confidence) / 2, df))


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
    sv, sb = np.var(v, ddof=1) / len(v), np.var(b, ddof=1) / len(b)
    se = math.sqrt(sv + sb)
    if se == 0:
        return mean, mean, mean
    df = (sv + sb) ** 2 / (sv**2 / (len(v) - 1) + sb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return mean, mean - half, mean + half


@lru_cache(maxsize=16)
def _unit_half_widths(confidence: float, paired: bool) -> np.ndarray:
    n = np.arange(2, MAX_SEEDS + 1)  # [999]: half-width at sd = 1 for n = 2..MAX_SEEDS
    return stats.t.ppf((1 + confidence) / 2, n - 1 if paired else 2 * n - 2) / np.sqrt(n)


def seeds_to_resolve(delta: float, sd: float, *, confidence: float, paired: bool = True) -> int | None:
    """Fewest seeds (2..1000) whose interval half-width at spread ``sd`` falls below ``|delta|``.

    Half-width with n seeds: ``t_{(1+c)/2, df} * sd / sqrt(n)``, df = n - 1 paired (``sd``
    of the differences ``v_s - b_s``) or 2n - 2 unpaired (n seeds in each variant; ``sd``
    of one difference of independent runs, ``sqrt(sd_v^2 + sd_b^2)``).

    Returns:
        None when ``delta`` is 0 or NaN, ``sd`` is 0 or NaN (nothing to estimate), or
        more than 1000 seeds would be needed.
    """
    if not (delta and sd) or math.isnan(delta) or math.isnan(sd):
        return None
    enough = np.flatnonzero(_unit_half_widths(confidence, paired) * sd < abs(delta))
    return int(enough[0]) + 2 if len(enough) else None


def delta_stats(v: dict[int, float], b: dict[int, float], confidence: float) -> dict:
    """``dmAP, dmAP_lo, dmAP_hi, paired, resolved, seeds_to_resolve`` of a variant vs the baseline.

    Args:
        v, b: seed -> metric (no NaN) of the variant and of the baseline.

    Paired when every seed of ``v`` is in ``b`` and there are two or more; else Welch's
    interval when each side has two or more; else the difference of means alone (bounds
    NaN, ``resolved`` None, ``paired`` False).

    Example:
        >>> d = delta_stats({0: 0.42, 1: 0.43}, {0: 0.40, 1: 0.41}, 0.95)
        >>> round(d["dmAP"], 3), d["paired"], d["resolved"]
        (0.02, True, True)
    """
    out = {"dmAP": math.nan, "dmAP_lo": math.nan, "dmAP_hi": math.nan, "paired": False, "resolved": None,
           "seeds_to_resolve": None}
    if not v or not b:
        return out
    va, ba = np.array(list(v.values()), float), np.array(list(b.values()), float)
    if len(v) >= 2 and v.keys() <= b.keys():
        diffs = va - np.array([b[s] for s in v], float)
        mean, lo, hi = paired_interval(diffs, confidence)
        sd, paired = float(np.std(diffs, ddof=1)), True
    elif len(v) >= 2 and len(b) >= 2:
        mean, lo, hi = welch_interval(va, ba, confidence)
        sd, paired = math.sqrt(np.var(va, ddof=1) + np.var(ba, ddof=1)), False
    else:
        return {**out, "dmAP": float(va.mean() - ba.mean())}
    resolved = not lo <= 0 <= hi
    need = None if resolved else seeds_to_resolve(mean, sd, confidence=confidence, paired=paired)
    return {"dmAP": mean, "dmAP_lo": lo, "dmAP_hi": hi, "paired": paired, "resolved": resolved,
            "seeds_to_resolve": need}
