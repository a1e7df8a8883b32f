"""What MLflow cannot compute from a variant's seed runs, written on the variant's own run.

MLflow's UI compares runs, not the seeds of one setting: the mean over seeds, the paired
interval against the baseline, the (Holm-adjusted) p-value and the verdict come from
results/aggregate.py and are logged here on each variant run (study run -> variant run ->
trial runs), so a search such as ``tags.verdict = 'worse'`` or a chart of ``delta_mAP``
works in the UI.  Written each time the report is built against the study's own baseline.
"""

from __future__ import annotations

import math
import time

import pandas as pd

from ablate.mlflow_tags import VARIANT, study_runs
from ablate.report.table import format_verdict

AP = ("mAP", "AP50", "APs", "APm", "APl")
# summary column -> metric name on the variant run ({m}: the judged metric)
STATS = {"dmAP": "delta_{m}", "dmAP_lo": "delta_{m}_lo", "dmAP_hi": "delta_{m}_hi", "p": "p_value",
         "p_equiv": "p_equivalent", "boot_lo": "delta_{m}_boot_lo", "boot_hi": "delta_{m}_boot_hi",
         "p_improve": "p_improvement", "n_seeds": "n_seeds", "Mem": "mem_mib", "img/s": "imgs_per_s",
         "img/s_lo": "imgs_per_s_min", "img/s_hi": "imgs_per_s_max"}


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def variant_metrics(row: pd.Series, metric: str) -> dict[str, float]:
    """The numbers a variant run carries: its mean AP over seeds (``mean_mAP``, ...) and its comparison."""
    out = {f"mean_{k}": _number(row.get(k)) for k in AP}
    out |= {name.format(m=metric): _number(row.get(col)) for col, name in STATS.items()}
    return {k: v for k, v in out.items() if v is not None}


def variant_tags(row: pd.Series, summary: pd.DataFrame) -> dict[str, str]:
    """The words a variant run carries: its verdict as the table words it, the seeds, the decision rule."""
    a = summary.attrs
    is_baseline = row["variant"] == a["baseline"]
    tags = {"verdict": "baseline" if is_baseline else format_verdict(row.to_dict()),
            "seeds": ",".join(str(s) for s in row.get("seeds") or []),
            "decision": f"margin {a['margin']}, confidence {a['confidence']}, {a['correction']} over {a['family']}"}
    if row.get("at_epoch") is not None and not pd.isna(row.get("at_epoch")):
        tags["at_epoch"] = str(int(row["at_epoch"]))
    return tags


def log_variant_summaries(client, experiment_id: str, study: str, summary: pd.DataFrame) -> int:
    """Log each variant's aggregate to its MLflow variant run; returns how many runs got it.

    A variant without a run (a study recorded by an older ablate, whose trial runs hang from the
    study run) is skipped.
    """
    from mlflow.entities import Metric, RunTag

    runs = {run.data.tags[VARIANT]: run.info.run_id for run in study_runs(client, experiment_id, study, "variant")}
    stamp, done = int(time.time() * 1000), 0
    for _, row in summary.iterrows():
        run_id = runs.get(str(row["variant_name"]))
        if run_id is None:
            continue
        metrics = [Metric(k, v, stamp, 0) for k, v in variant_metrics(row, summary.attrs["metric"]).items()]
        client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in variant_tags(row, summary).items()])
        done += 1
    return done
