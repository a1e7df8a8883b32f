"""Was stopping early valid here?  How well each epoch's metric ranked the completed trials as the end did.

A scheduler that stops trials at epoch k assumes the ranking at k is the ranking at the end.
The completed trials that ran the study's longest schedule hold the evidence: for each
earlier epoch, Spearman's rank correlation between their metric then and their final one.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from ablate.status import COMPLETED

MIN_TRIALS = 4  # below this a rank correlation says nothing
PREDICTS = 0.7  # rho from which an epoch is said to have predicted the end


def rung_agreement(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """One row per epoch before the last: ``epoch, rho, n`` over the completed trials of the longest schedule.

    Example: four trials whose epoch-1 values are in the reverse order of their final ones give rho = -1.
    """
    columns = ["epoch", "rho", "n"]
    if trials.empty or epochs is None or epochs.empty or metric not in epochs or "status" not in trials:
        return pd.DataFrame(columns=columns)
    done = trials[trials["status"] == COMPLETED]
    if done.empty:
        return pd.DataFrame(columns=columns)
    last = int(done["epochs"].max())
    ids = set(done.loc[done["epochs"] == last, "trial_id"])
    wide = epochs[epochs["trial_id"].isin(ids)].pivot_table(index="trial_id", columns="epoch", values=metric)
    if last not in wide:
        return pd.DataFrame(columns=columns)
    rows = []
    for epoch in [e for e in wide.columns if e < last]:
        pair = wide[[epoch, last]].dropna()
        rho = stats.spearmanr(pair[epoch], pair[last]).statistic if len(pair) >= 2 else math.nan
        rows.append({"epoch": int(epoch), "rho": float(rho), "n": len(pair)})
    return pd.DataFrame(rows, columns=columns)


def early_stopping_note(agreement: pd.DataFrame, stop_epochs: list[int], metric: str = "mAP") -> str | None:
    """A sentence on the epochs trials were stopped at (``stop_epochs``), or None when none was stopped."""
    if not stop_epochs:
        return None
    rows = agreement.set_index("epoch") if not agreement.empty else agreement
    parts = []
    for k in sorted(set(stop_epochs)):
        if agreement.empty or k not in rows.index or rows.loc[k, "n"] < MIN_TRIALS:
            n = 0 if agreement.empty or k not in rows.index else int(rows.loc[k, "n"])
            parts.append(f"epoch {k}: {n} completed trial(s) ran on past it, too few (< {MIN_TRIALS}) to check "
                         "that it ranked trials as the end did")
            continue
        rho, n = float(rows.loc[k, "rho"]), int(rows.loc[k, "n"])
        verdict = "predicted the end" if rho >= PREDICTS else "did NOT predict the end: stops there may be noise"
        parts.append(f"epoch {k}: {metric} there ranks the {n} completed trials as their final {metric} does with "
                     f"Spearman rho = {rho:+.2f}, so it {verdict}")
    return "early stopping check: " + "; ".join(parts)
