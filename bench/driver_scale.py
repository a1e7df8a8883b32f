"""The driver at scale: a 2,000-trial study at 50 trials at once, through real Ray Tune, Parquet and MLflow.

    uv run python bench/driver_scale.py [--variants 4] [--seeds 500] [--concurrent 50]

The trials do not train (orchestrate/stand_in.py: ``worker.train``'s contract, one reported epoch),
so what is measured is the driver: its CPU time and peak memory, per Tune event (a trial's start,
its result, its end); how often it writes Parquet and MLflow; when the last record lands after the
last trial ends; and the report over the whole study.  At the end every trial is checked to be in
Parquet once and in MLflow once (sqlite, MLflow's default store).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

BASE = Path(__file__).resolve().parent.parent / "studies" / "_base_" / "tiny_shapes.yaml"
LEVELS = ["diou", "ciou", "eiou", "iou", "l1", "smooth_l1", "giou"]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Counted:
    """Wraps ``owner.name`` to count its calls and keep the time of the last one."""

    def __init__(self, owner, name: str):
        self.calls, self.last, self.original = 0, 0.0, getattr(owner, name)
        counter = self

        def wrapped(*args, **kwargs):
            try:
                return counter.original(*args, **kwargs)
            finally:
                counter.calls += 1
                counter.last = time.time()

        setattr(owner, name, wrapped)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=4, help="variants (the baseline and loss.box levels)")
    p.add_argument("--seeds", type=int, default=500)
    p.add_argument("--concurrent", type=int, default=50)
    a = p.parse_args()

    from mlflow.tracking import MlflowClient

    from ablate.orchestrate.mlflow_mirror import Mirror
    from ablate.orchestrate.run import run_study
    from ablate.orchestrate.stand_in import PeakRss, stand_in_trainable
    from ablate.report.build import Source, build_report
    from ablate.results.store import ResultsStore

    sends, flushes = Counted(Mirror, "_send"), Counted(ResultsStore, "flush")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        study = {"_base_": str(BASE), "name": "scale", "design": "one_at_a_time", "seeds": list(range(a.seeds)),
                 "factors": {"loss.box": LEVELS[:a.variants - 1]}, "train": {"epochs": 1},
                 "scheduler": {"name": "none"}, "resources": {"cpu": round(2 / a.concurrent, 4)},
                 "tracking": {"uri": uri}}
        path = folder / "scale.yaml"
        path.write_text(yaml.safe_dump(study, sort_keys=False))
        n = a.variants * a.seeds

        cpu0, began = _cpu_s(), time.time()
        with PeakRss(every_s=0.2) as rss:
            outcome = run_study(path, [], results_root=folder / "results", max_concurrent=a.concurrent,
                                trainable=stand_in_trainable())
        wall, cpu = time.time() - began, _cpu_s() - cpu0

        trials = pd.read_parquet(folder / "results" / "scale" / "trials.parquet")
        epochs = pd.read_parquet(folder / "results" / "scale" / "epochs.parquet")
        first, last = trials.started_at.min(), trials.ended_at.max()
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("scale").experiment_id
        runs, token = [], None
        while True:
            page = client.search_runs([experiment], "tags.`ablate.role` = 'trial'", max_results=1000, page_token=token)
            runs += page
            token = page.token
            if not token:
                break
        ids = [r.data.tags["ablate.trial_id"] for r in runs]
        t0 = time.perf_counter()
        build_report(Source("scale", results=folder / "results", tracking_uri=uri), out_dir=folder / "report")
        report_s = time.perf_counter() - t0

    events = 3 * n  # each trial: its start, its reported epoch, its end
    print(f"{n} trials ({a.variants} variants x {a.seeds} seeds), {a.concurrent} at once, stand-in trainable")
    print(f"  completed {outcome.counts.get('completed', 0)}, unsynced {outcome.unsynced}; in Parquet "
          f"{trials.trial_id.nunique()} trials ({len(trials)} rows), {len(epochs)} epoch rows; in MLflow "
          f"{len(set(ids))} trial runs ({len(ids)} runs)")
    print(f"  wall {wall:.0f} s: {first - began:.1f} s before the first trial, {last - first:.0f} s from the first "
          f"trial's start to the last one's end ({n / (last - first):.1f} trials/s), {began + wall - last:.1f} s after")
    print(f"  driver CPU {cpu:.0f} s = {cpu / events * 1000:.1f} ms per event ({events} events); RSS {rss.before:.0f} MiB "
          f"before, peak {rss.peak:.0f} MiB (+{rss.peak - rss.before:.0f})")
    print(f"  MLflow: {sends.calls} trial writes (start, epochs, end), {sends.calls / (last - first):.1f}/s; Parquet: {flushes.calls} "
          f"flushes, {flushes.calls / (last - first):.2f}/s")
    print(f"  the last record landed {max(sends.last, flushes.last) - last:.1f} s after the last trial ended "
          f"(MLflow {sends.last - last:.1f} s, Parquet {flushes.last - last:.1f} s)")
    print(f"  report over the study: {report_s:.1f} s")
    ok = (trials.trial_id.nunique() == len(trials) == n and len(epochs) == n
          and sorted(set(ids)) == sorted(trials.trial_id) and len(ids) == n)
    print("  every trial once in Parquet and once in MLflow:", "yes" if ok else "NO")


if __name__ == "__main__":
    main()
