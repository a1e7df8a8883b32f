"""One row per variant: seeds aggregated, the verdict against the baseline with its interval.

Reads the trials table of ``ablate run`` (``results/<study>/trials.parquet``, or the
same columns rebuilt from MLflow) and reduces it to what the report shows: the model-zoo
columns (network, dataset, backbone, lr schedule, memory, COCO AP), the varied factors,
the difference of a metric against the baseline variant with its interval over seeds, and
the verdict of results/stats.py (better, worse, equivalent, unresolved with the seeds that
would settle it), with error control across the study's variants.  No column mixes epochs:
completed trials give the final values; a variant no seed completed is shown at the epoch
all its seeds reached (``at_epoch``).  Every variant keeps a row (AP columns NaN when no
trial of it evaluated).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.errors import DataError
from ablate.metrics import HIGHER_IS_BETTER, check_metric
from ablate.results.stats import (
    CORRECTIONS,
    DELTA_COLUMNS,
    bootstrap_interval,
    compare,
    interval,
    judge,
    p_improve,
    pooled_sd,
    seeds_to_settle,
)
from ablate.results.store import EPOCHS, TRIALS, read_frame
from ablate.results.zoo import AP_COLUMNS, ZOO_NAMES, zoo_fields
from ablate.status import COMPLETED, PRUNED, variant_text
from ablate.status import short as short_status


def load_frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) of a study's results folder.

    Args:
        folder: ``results/<study>``, as written by ``ablate run``.

    Raises:
        DataError: a table is missing (naming the folder and what to run).
    """
    folder = Path(folder)
    missing = [name for name in (TRIALS, EPOCHS) if not (folder / name).is_file()]
    if missing:
        raise DataError(f"results folder '{folder}' has no {' or '.join(missing)}; "
                        "run the study first (ablate run STUDY.yaml) or pass the right folder")
    return read_frame(folder / TRIALS), read_frame(folder / EPOCHS)


def factor_paths(trials: pd.DataFrame) -> list[str]:
    """The varied config paths, from the ``factor.<path>`` columns in column order.

    Example:
        >>> factor_paths(pd.DataFrame(columns=["variant", "factor.loss.box", "factor.loss.cls"]))
        ['loss.box', 'loss.cls']
    """
    return [c[len("factor."):] for c in trials.columns if c.startswith("factor.")]


# ---- the summary ----------------------------------------------------------------


def _column(trials: pd.DataFrame, name: str, fill=math.nan) -> pd.Series:
    """A column, or ``fill`` everywhere when the store lacks it (no trial reached an epoch, older stores)."""
    return trials[name] if name in trials else pd.Series(fill, index=trials.index)


def variant_summary(
    trials: pd.DataFrame, *, factors: list[str], metric: str = "mAP", baseline: int = 0, confidence: float = 0.95,
    margin: float = 0.01, correction: str = "holm", epochs: pd.DataFrame | None = None,
    stops: dict | None = None,
) -> pd.DataFrame:
    """One row per variant, baseline first then by variant index, with its verdict against the baseline.

    Args:
        trials: the trials table (``trials.parquet`` or ``frames_from_mlflow``).
        factors: varied paths (``factor_paths(trials)``), one ``factor.<path>`` column each.
        metric: the metric judged (``dmAP*`` columns, named so whatever the metric; ``attrs["metric"]``).
        baseline: the variant index the deltas are taken against.
        confidence, margin, correction: the study's ``decision`` (see results/stats.py).
        epochs: the epochs table, for variants that no seed completed (their values at the epoch
            every seed of theirs reached) and the metric's direction.
        stops: variant -> the racing scheduler's ``Stop`` (results/race.py, ``race_stops``): such a
            variant is ``worse`` by the race's own error-controlled test, shown at the epoch it was
            stopped (``at_epoch``) on every seed that reached it, and is not in the corrected family.

    Only completed trials give final values: a failed trial's last evaluation is not a result,
    and a pruned one (a variant's, or a baseline's with ``protect_baseline: false``) did not reach
    the end.  A variant is compared with the baseline's final values on the seeds both completed,
    whatever either's ``train.epochs``.  A variant no seed completed is shown at its stop epoch
    ``k`` (``at_epoch``), against the baseline's same seeds at epoch ``k``, and gets the verdict
    ``stopped@k`` (the scheduler's decision, not a test); it is not in the corrected family.

    Returns:
        Columns ``variant, variant_name, factor.<path>..., Network, Dataset, Backbone, style,
        Lr schd, Mem, mAP, AP50, APs, APm, APl, at_epoch, n_seeds, seeds, dmAP, dmAP_lo, dmAP_hi,
        paired, n_pairs, p, p_equiv, verdict, seeds_needed, boot_lo, boot_hi, p_improve, img/s,
        img/s_lo, img/s_hi, epochs, status, mlflow_run_ids``.  AP columns: mean over the completed
        seeds' final values (or, with ``at_epoch``, over the seeds at that epoch); ``Mem``: max peak
        MiB; ``img/s``: median over trials, ``img/s_lo``/``img/s_hi`` the slowest and the fastest
        trial (a trial's figure is its median over epochs; trials run at different times on a shared
        machine, so the range, not the median, says what differs); ``epochs``: most run; ``seeds``:
        the completed seeds.  ``attrs``:
        ``metric, baseline, confidence, margin, correction, family`` (the corrected comparisons) and
        ``spread`` (the pooled sd of paired differences that ``seeds_needed`` assumes).

    Raises:
        DataError: an unknown metric, factor or correction, or no trials of the baseline variant.
    """
    try:
        check_metric(metric)
    except ValueError as e:
        raise DataError(f"metric {e}") from None
    if not 0 < confidence < 1:
        raise DataError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    if correction not in CORRECTIONS:
        raise DataError(f"correction '{correction}' is not one of {', '.join(CORRECTIONS)}")
    unknown = [p for p in factors if f"factor.{p}" not in trials]
    if unknown:
        raise DataError(f"no factor column for {', '.join(unknown)}; the trials vary: "
                        f"{', '.join(factor_paths(trials)) or 'nothing'}")
    if "variant" not in trials or baseline not in set(trials["variant"]):
        found = sorted(int(v) for v in trials["variant"].unique()) if "variant" in trials else []
        raise DataError(f"baseline variant {baseline} has no trials; variants present: {found or 'none'}")
    trials = trials.sort_values(["variant", "seed"], kind="stable")
    by = trials["variant"]
    columns = list(dict.fromkeys((*AP_COLUMNS, metric)))

    per_seed = _per_seed(trials, metric)
    values = _values(per_seed, metric)
    at_epoch = _stopped_values(trials, epochs, columns, metric, set(per_seed.index.get_level_values(0)))
    grouped = pd.DataFrame({
        "variant_name": _column(trials, "variant_name", ""), "config": _column(trials, "config", None),
        **{f"factor.{p}": trials[f"factor.{p}"] for p in factors}}).groupby(by)
    per_variant = pd.concat([
        grouped.first(), per_seed[list(AP_COLUMNS)].groupby(level=0).mean(),
        _column(trials, "peak_mem_mb").groupby(by).max().rename("Mem"),
        _column(trials, "imgs_per_s").groupby(by).agg(["median", "min", "max"]).set_axis(
            ["img/s", "img/s_lo", "img/s_hi"], axis=1),
        _column(trials, "epochs", 0).groupby(by).max().rename("epochs")], axis=1).to_dict("index")

    labels: dict[int, list[str]] = {}
    runs: dict[int, list[str]] = {}
    for v, s, e, r, run in zip(by, _column(trials, "status", "unknown"), _column(trials, "epochs", 0),
                               _column(trials, "reason", ""), _column(trials, "mlflow_run_id", None)):
        labels.setdefault(v, []).append(short_status(s if isinstance(s, str) else "unknown", int(e) if e == e else 0,
                                                     r if isinstance(r, str) else ""))
        if isinstance(run, str):
            runs.setdefault(v, []).append(run)

    others = [v for v in per_variant if v != baseline]
    base = values.get(baseline, {})
    stops = stops or {}
    family = {v: compare(values[v], base) for v in others if v in values and v not in stops}
    higher = metric in HIGHER_IS_BETTER
    verdicts = judge(family, margin=margin, confidence=confidence, correction=correction, higher_is_better=higher)
    spread = pooled_sd(list(family.values()))
    needed = seeds_to_settle(family, verdicts, margin=margin, confidence=confidence, correction=correction,
                             spread=spread)
    rows = []
    for v in [baseline, *others]:
        agg, mine, row = per_variant[v], values.get(v, {}), _no_delta()
        aps, k = {c: float(agg[c]) for c in AP_COLUMNS}, None
        if v == baseline:
            row["dmAP"] = 0.0 if base else math.nan
        elif v in stops:  # the race's verdict, at the epoch it was taken
            k = int(stops[v].epoch)
            at = {c: _values_at(trials, epochs, v, k, c) for c in columns}
            aps = {c: float(np.mean(list(at[c].values()))) if at.get(c) else math.nan for c in AP_COLUMNS}
            mine = at[metric]
            c = compare(at[metric], _values_at(trials, epochs, baseline, k, metric))
            if c is not None:
                row.update(dmAP=c.mean, paired=c.paired, n_pairs=c.n if c.paired else 0)
                row["dmAP_lo"], row["dmAP_hi"] = interval(c, confidence)
            row.update(verdict="worse", p=float(stops[v].p))
        elif family.get(v) is not None:
            c = family[v]
            row.update(verdicts[v], dmAP=c.mean, paired=c.paired, n_pairs=c.n if c.paired else 0,
                       seeds_needed=needed[v])
            if c.paired:  # descriptive beside the t interval, rough with few seeds
                row["boot_lo"], row["boot_hi"] = bootstrap_interval(c.diffs, confidence)
                row["p_improve"] = p_improve(c.diffs, higher)
        elif v in at_epoch:  # no seed completed: where it stopped, against the baseline there
            k, stopped = at_epoch[v]
            aps = {c: float(np.mean(list(stopped[c].values()))) if stopped[c] else math.nan for c in AP_COLUMNS}
            c = compare(stopped[metric], _values_at(trials, epochs, baseline, k, metric))
            if c is not None:
                row.update(dmAP=c.mean, paired=c.paired, n_pairs=c.n if c.paired else 0)
                row["dmAP_lo"], row["dmAP_hi"] = interval(c, confidence)
            row["verdict"] = f"stopped@{k}"
        rows.append({
            "variant": int(v), "variant_name": agg["variant_name"],
            **{f"factor.{p}": agg[f"factor.{p}"] for p in factors}, **zoo_fields(agg["config"]),
            "Mem": float(agg["Mem"]), **aps, "at_epoch": k, "n_seeds": len(mine), "seeds": list(mine), **row,
            "img/s": float(agg["img/s"]), "img/s_lo": float(agg["img/s_lo"]), "img/s_hi": float(agg["img/s_hi"]),
            "epochs": int(agg["epochs"]) if agg["epochs"] == agg["epochs"] else 0,
            "status": variant_text(labels[v]), "mlflow_run_ids": runs.get(v, []),
        })
    summary = pd.DataFrame(rows, columns=[
        "variant", "variant_name", *(f"factor.{p}" for p in factors), *ZOO_NAMES, "Mem", *AP_COLUMNS, "at_epoch",
        "n_seeds", "seeds", *DELTA_COLUMNS, "img/s", "img/s_lo", "img/s_hi", "epochs", "status", "mlflow_run_ids"])
    for column in ("seeds_needed", "at_epoch", "verdict"):  # int, str or None
        summary[column] = pd.Series([r[column] for r in rows], dtype=object)
    summary.attrs.update(metric=metric, baseline=baseline, confidence=confidence, margin=margin,
                         correction=correction, family=sum(c is not None and c.testable for c in family.values()),
                         spread=spread)
    return summary


def _per_seed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(variant, seed) -> final AP columns and ``metric``: completed trials only, a seed run twice counted once."""
    completed = (_column(trials, "status", "") == COMPLETED).to_numpy()
    columns = list(dict.fromkeys((*AP_COLUMNS, metric)))
    finals = pd.DataFrame({c: _column(trials, f"final_{c}") for c in columns})[completed]
    return finals.groupby([trials["variant"][completed], trials["seed"][completed]]).mean()


def _values(per_seed: pd.DataFrame, metric: str) -> dict[int, dict[int, float]]:
    """variant -> seed -> final ``metric``."""
    values: dict[int, dict[int, float]] = {}
    for (v, seed), x in per_seed[metric].dropna().items():
        values.setdefault(int(v), {})[int(seed)] = float(x)
    return values


def step_summary(trials: pd.DataFrame, *, metric: str = "mAP", confidence: float = 0.95, margin: float = 0.01,
                 correction: str = "holm", **_: object) -> pd.DataFrame | None:
    """A cumulative study's steps: each variant against the one before it, paired by seed.

    A cumulative design adds one trick per row (the Bag of Freebies and PP-YOLO tables), so what a
    reader asks of row k is what its trick added to row k-1, not to the baseline.  The steps are one
    family, corrected together as ``variant_summary``'s comparisons are.  None for other designs.

    Returns:
        One row per step (variants 1..n in order): ``variant, variant_name, previous, <metric>, dmAP,
        dmAP_lo, dmAP_hi, n_seeds, n_pairs, paired, p, p_equiv, verdict, seeds_needed``.
    """
    designs = set(_column(trials, "design", "").dropna())
    if designs != {"cumulative"}:
        return None
    values = _values(_per_seed(trials, metric), metric)
    order = sorted(int(v) for v in trials["variant"].unique())
    family = {v: compare(values[v], values[prev]) if v in values and prev in values else None
              for prev, v in zip(order, order[1:])}
    verdicts = judge(family, margin=margin, confidence=confidence, correction=correction,
                     higher_is_better=metric in HIGHER_IS_BETTER)
    needed = seeds_to_settle(family, verdicts, margin=margin, confidence=confidence, correction=correction)
    names = trials.drop_duplicates("variant").set_index("variant")["variant_name"]
    rows = []
    for prev, v in zip(order, order[1:]):
        c, mine = family[v], values.get(v, {})
        rows.append({**_no_delta(), **verdicts[v], "variant": v, "variant_name": names[v], "previous": names[prev],
                     metric: float(np.mean(list(mine.values()))) if mine else math.nan, "n_seeds": len(mine),
                     "dmAP": c.mean if c is not None else math.nan, "paired": bool(c is not None and c.paired),
                     "n_pairs": c.n if c is not None and c.paired else 0, "seeds_needed": needed[v]})
    steps = pd.DataFrame(rows)
    steps.attrs.update(metric=metric, confidence=confidence, margin=margin, correction=correction)
    return steps


def _no_delta() -> dict:
    return {"dmAP": math.nan, "dmAP_lo": math.nan, "dmAP_hi": math.nan, "paired": False, "n_pairs": 0,
            "p": math.nan, "p_equiv": math.nan, "verdict": None, "seeds_needed": None, "boot_lo": math.nan,
            "boot_hi": math.nan, "p_improve": math.nan}


def _stopped_values(trials: pd.DataFrame, epochs: pd.DataFrame | None, columns: list[str], metric: str,
                    finished: set) -> dict[int, tuple[int, dict[str, dict[int, float]]]]:
    """Variants no seed completed -> (k, column -> seed -> value at epoch k): k is the epoch every
    pruned seed of theirs reached, so the values never mix epochs."""
    if epochs is None or epochs.empty:
        return {}
    pruned = trials[(_column(trials, "status", "") == PRUNED) & ~trials["variant"].isin(finished)]
    out = {}
    for v, group in pruned.groupby("variant"):
        reached = group["epochs"].dropna()
        if reached.empty or int(reached.min()) < 1:
            continue
        k = int(reached.min())
        rows = epochs[epochs["trial_id"].isin(group["trial_id"]) & (epochs["epoch"] == k)]
        seed_of = group.set_index("trial_id")["seed"]
        at = {c: {int(seed_of[t]): float(x) for t, x in zip(rows["trial_id"], rows[c]) if x == x}
              for c in columns if c in rows}
        if at.get(metric) and all(c in at for c in columns):
            out[int(v)] = (k, at)
    return out


def _values_at(trials: pd.DataFrame, epochs: pd.DataFrame | None, variant: int, k: int, metric: str) -> dict:
    """seed -> ``metric`` of ``variant``'s trials at epoch ``k`` (those that reached it; the baseline's too)."""
    if epochs is None or epochs.empty or metric not in epochs:
        return {}
    seed_of = trials[trials["variant"] == variant].set_index("trial_id")["seed"]
    rows = epochs[epochs["trial_id"].isin(seed_of.index) & (epochs["epoch"] == k)]
    return {int(seed_of[t]): float(x) for t, x in zip(rows["trial_id"], rows[metric]) if x == x}
