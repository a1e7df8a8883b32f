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

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import stats

from ablate.errors import DataError
from ablate.metrics import METRICS
from ablate.results.store import EPOCHS, TRIALS
from ablate.status import short as short_status
from ablate.status import variant_text
from ablate.study.schema import TrialConfig
from ablate.tricks.schedules import STEP_PRESETS

AP_COLUMNS = ("mAP", "AP50", "APs", "APm", "APl")
ZOO_NAMES = ("Network", "Dataset", "Backbone", "style", "Lr schd")
DELTA_COLUMNS = ("dmAP", "dmAP_lo", "dmAP_hi", "paired", "resolved", "seeds_to_resolve")
MAX_SEEDS = 1000  # seeds_to_resolve searches 2..MAX_SEEDS

NETWORKS = {"retinanet": "RetinaNet", "fcos": "FCOS"}
DATASETS = {"coco": "COCO", "voc": "VOC", "shapes": "shapes"}
BACKBONES = {"resnet18": "R-18", "resnet34": "R-34", "resnet50": "R-50", "mobilenet_v3": "MobileNetV3"}


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


# ---- model-zoo names ---------------------------------------------------------


def lr_schedule(config: TrialConfig) -> str:
    """``Lr schd`` as model zoos write it: effective lr, then ``1x``/``2x``/``3x`` or ``<name>_<epochs>e``.

    A step schedule of 12, 24 or 36 epochs is ``1x``/``2x``/``3x`` unless it names its own
    milestones (other than the preset's).

    Example:
        >>> lr_schedule(TrialConfig.model_validate({"train": {"schedule": "cosine", "epochs": 8}}))
        '0.005_cosine_8e'
    """
    train, schedule = config.train, config.train.schedule
    name = f"{schedule.name}_{train.epochs}e"
    if schedule.name == "step":
        for preset, (epochs, milestones) in STEP_PRESETS.items():
            if train.epochs == epochs and schedule.milestones in (None, milestones):
                name = preset
    return f"{config.lr_effective:g}_{name}"


def zoo_fields(config_json: str | None) -> dict[str, str]:
    """``Network, Dataset, Backbone, style, Lr schd`` of one resolved trial config.

    Args:
        config_json: the ``config`` column (JSON of the resolved ``TrialConfig``); None
            (an older store without it) or unreadable JSON gives empty strings, and a
            config this version no longer validates gives an empty ``Lr schd``.
    """
    return dict(_zoo_fields(config_json if isinstance(config_json, str) else None))


@lru_cache(maxsize=4096)  # a study has few distinct configs; validating each once keeps 10,000 trials fast
def _zoo_fields(config_json: str | None) -> dict[str, str]:
    try:
        raw = json.loads(config_json) if config_json is not None else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return dict.fromkeys(ZOO_NAMES, "")
    model, data = raw.get("model", {}), raw.get("data", {})
    backbone = model.get("backbone", "")
    if backbone == "tiny":
        backbone = f"tiny-w{float(model.get('width', 1.0))}"
    train = {k: v for k, v in raw.get("train", {}).items() if k != "lr_effective"}  # `ablate plan --json` adds it
    try:
        schedule = lr_schedule(TrialConfig.model_validate({**raw, "train": train}))
    except ValidationError:
        schedule = ""
    return {"Network": NETWORKS.get(model.get("detector"), str(model.get("detector", ""))),
            "Dataset": DATASETS.get(data.get("dataset"), str(data.get("dataset", ""))),
            "Backbone": BACKBONES.get(backbone, backbone), "style": "pytorch", "Lr schd": schedule}


# ---- statistics ----------------------------------------------------------------


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
    if metric not in METRICS:
        raise DataError(f"metric '{metric}' is not reported by the engine; valid: {', '.join(METRICS)}")
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
