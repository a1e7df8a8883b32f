"""One row per variant: seeds aggregated, the delta against the baseline with its interval.

Reads the trials table of ``ablate run`` (``results/<study>/trials.parquet``, or the
same columns rebuilt from MLflow) and reduces it to what the report shows: the model-zoo
columns (network, dataset, backbone, lr schedule, memory, COCO AP), the varied factors,
the mean difference of a metric against the baseline variant with a confidence interval
over seeds, and how many seeds would resolve a difference the interval cannot.

The delta is paired by seed when the baseline ran every seed the variant ran (seed ``s``
shares data order and initialisation in both, so ``v_s - b_s`` cancels most of the seed
noise); otherwise it is Welch's unpaired interval.  Nothing is dropped: a pruned trial
counts with its last evaluation, a failed one with whatever it evaluated before failing,
and a variant whose every trial failed still has a row (AP columns NaN).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ablate.errors import DataError
from ablate.metrics import check_metric
from ablate.results.stats import DELTA_COLUMNS, delta_stats
from ablate.results.store import EPOCHS, TRIALS
from ablate.results.zoo import AP_COLUMNS, ZOO_NAMES, zoo_fields
from ablate.status import short as short_status
from ablate.status import variant_text


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
    return pd.read_parquet(folder / TRIALS), pd.read_parquet(folder / EPOCHS)


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
    epochs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per variant, baseline first then by variant index.

    Args:
        trials: the trials table (``trials.parquet`` or ``frames_from_mlflow``).
        factors: varied paths (``factor_paths(trials)``), one ``factor.<path>`` column each.
        metric: the metric whose delta vs the baseline goes into ``dmAP*`` (named so
            whatever the metric; ``summary.attrs["metric"]`` says which).
        baseline: the variant index the deltas are taken against.
        confidence: of the intervals, e.g. 0.95.
        epochs: the epochs table; when given, a trial that stopped early (pruned) is compared
            with the baseline of its seed at the same epoch, not with the finished baseline
            (an epoch-2 AP against an epoch-8 AP would measure the schedule, not the trick).

    Returns:
        Columns ``variant, variant_name, factor.<path>..., Network, Dataset, Backbone,
        style, Lr schd, Mem, mAP, AP50, APs, APm, APl, n_seeds, seeds, dmAP, dmAP_lo,
        dmAP_hi, paired, resolved, seeds_to_resolve, img/s, epochs, status,
        mlflow_run_ids``.  AP columns: mean over seeds of each trial's last evaluation;
        ``Mem``: max peak MiB; ``img/s``: median over trials; ``epochs``: most run;
        ``seeds``/``n_seeds``: the seeds with a value of ``metric``.  The zoo names are
        empty strings when the store has no ``config`` column.  ``attrs`` holds
        ``metric``, ``baseline`` and ``confidence``.

    Raises:
        DataError: an unknown metric or factor, or no trials of the baseline variant.
    """
    try:
        check_metric(metric)
    except ValueError as e:
        raise DataError(f"metric {e}") from None
    if not 0 < confidence < 1:
        raise DataError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    unknown = [p for p in factors if f"factor.{p}" not in trials]
    if unknown:
        raise DataError(f"no factor column for {', '.join(unknown)}; the trials vary: "
                        f"{', '.join(factor_paths(trials)) or 'nothing'}")
    if "variant" not in trials or baseline not in set(trials["variant"]):
        found = sorted(int(v) for v in trials["variant"].unique()) if "variant" in trials else []
        raise DataError(f"baseline variant {baseline} has no trials; variants present: {found or 'none'}")
    trials = trials.sort_values(["variant", "seed"], kind="stable")
    by = trials["variant"]

    # Per seed first (a seed run twice counts once), then over seeds.
    finals = pd.DataFrame({c: _column(trials, f"final_{c}") for c in dict.fromkeys((*AP_COLUMNS, metric))})
    per_seed = finals.groupby([by, trials["seed"]]).mean()
    values: dict[int, dict[int, float]] = {}
    for (v, seed), x in per_seed[metric].dropna().items():
        values.setdefault(v, {})[int(seed)] = float(x)
    grouped = pd.DataFrame({
        "variant_name": _column(trials, "variant_name", ""), "config": _column(trials, "config", None),
        **{f"factor.{p}": trials[f"factor.{p}"] for p in factors}}).groupby(by)
    per_variant = pd.concat([
        grouped.first(), per_seed[list(AP_COLUMNS)].groupby(level=0).mean(),
        _column(trials, "peak_mem_mb").groupby(by).max().rename("Mem"),
        _column(trials, "imgs_per_s").groupby(by).median().rename("img/s"),
        _column(trials, "epochs", 0).groupby(by).max().rename("epochs")], axis=1).to_dict("index")

    labels: dict[int, list[str]] = {}
    runs: dict[int, list[str]] = {}
    for v, s, e, r, run in zip(by, _column(trials, "status", "unknown"), _column(trials, "epochs", 0),
                               _column(trials, "reason", ""), _column(trials, "mlflow_run_id", None)):
        labels.setdefault(v, []).append(short_status(s if isinstance(s, str) else "unknown", int(e) if e == e else 0,
                                                     r if isinstance(r, str) else ""))
        if isinstance(run, str):
            runs.setdefault(v, []).append(run)

    base = values.get(baseline, {})
    reached = {(int(v), int(s)): int(e) for v, s, e in zip(by, trials["seed"], _column(trials, "epochs", 0)) if e == e}
    curve: dict[tuple[int, int], float] = {}  # (seed, epoch) -> the baseline's metric then
    if epochs is not None and not epochs.empty and metric in epochs:
        seed_of = trials[by == baseline].set_index("trial_id")["seed"]
        rows_b = epochs[epochs["trial_id"].isin(seed_of.index)]
        for tid, epoch, value in zip(rows_b["trial_id"], rows_b["epoch"], rows_b[metric]):
            if value == value:
                curve[(int(seed_of[tid]), int(epoch))] = float(value)

    def base_for(v: int) -> dict[int, float]:
        last = max((e for (vv, _), e in reached.items() if vv == v), default=0)
        return {s: curve.get((s, reached.get((v, s), last)), x) for s, x in base.items()}

    rows = []
    for v in [baseline] + [v for v in per_variant if v != baseline]:
        agg, mine = per_variant[v], values.get(v, {})
        if v == baseline:
            delta = {**delta_stats({}, base, confidence), "dmAP": 0.0 if base else math.nan}
        else:
            delta = delta_stats(mine, base_for(v), confidence)
        rows.append({
            "variant": int(v), "variant_name": agg["variant_name"],
            **{f"factor.{p}": agg[f"factor.{p}"] for p in factors}, **zoo_fields(agg["config"]),
            "Mem": float(agg["Mem"]), **{c: float(agg[c]) for c in AP_COLUMNS},
            "n_seeds": len(mine), "seeds": list(mine), **delta,
            "img/s": float(agg["img/s"]), "epochs": int(agg["epochs"]) if agg["epochs"] == agg["epochs"] else 0,
            "status": variant_text(labels[v]), "mlflow_run_ids": runs.get(v, []),
        })
    summary = pd.DataFrame(rows, columns=[
        "variant", "variant_name", *(f"factor.{p}" for p in factors), *ZOO_NAMES, "Mem", *AP_COLUMNS,
        "n_seeds", "seeds", *DELTA_COLUMNS, "img/s", "epochs", "status", "mlflow_run_ids"])
    summary["seeds_to_resolve"] = pd.Series([r["seeds_to_resolve"] for r in rows], dtype=object)  # int or None
    summary.attrs.update(metric=metric, baseline=baseline, confidence=confidence)
    return summary
