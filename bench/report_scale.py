"""How long `ablate report` takes over a big study: 10,000 trials x 50 epochs of synthetic rows.

    uv run python bench/report_scale.py [--variants 200] [--seeds 50] [--epochs 50] [--repeat 3]

Prints the median time of each stage (aggregation, tables, figures, page) over
``--repeat`` runs and the page size.  The report aggregates with pandas and plots
aggregates, so the time should grow with variants, not with rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.report.figures import curves, forest, pareto, size_bars, timeline
from ablate.report.html import table_to_html, write_html
from ablate.report.table import best_cells, write_tables, zoo_table
from ablate.results.aggregate import variant_summary


def synthetic(n_variants: int, n_seeds: int, n_epochs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials and epochs tables shaped like a real store; every 10th trial pruned, every 50th failed."""
    rng = np.random.default_rng(0)
    n = n_variants * n_seeds
    variant, seed = np.repeat(np.arange(n_variants), n_seeds), np.tile(np.arange(n_seeds), n_variants)
    ids = np.array([f"t{i:05d}" for i in range(n)])
    status = np.where(np.arange(n) % 50 == 7, "failed", np.where(np.arange(n) % 10 == 3, "pruned", "completed"))
    last = np.where(status == "completed", n_epochs, rng.integers(1, n_epochs, n))
    epoch = np.tile(np.arange(1, n_epochs + 1), n)
    rows = np.repeat(np.arange(n), n_epochs)
    keep = epoch <= last[rows]
    m_ap = 0.4 * (1 - np.exp(-epoch / 10)) + 0.0005 * variant[rows] + rng.normal(0, 0.01, rows.size)
    epochs = pd.DataFrame({"trial_id": ids[rows][keep], "epoch": epoch[keep], "mAP": m_ap[keep]})
    final = epochs.groupby("trial_id")["mAP"].last().reindex(ids).to_numpy()
    start = 1.7e9 + np.arange(n) * 5.0
    trials = pd.DataFrame({
        "trial_id": ids, "variant": variant, "variant_name": [f"v{v}" for v in variant], "seed": seed,
        "factor.loss.box": [f"box{v % 7}" for v in variant], "status": status, "status_label": status,
        "reason": np.where(status == "failed", "nan loss", ""), "epochs": last,
        **{f"final_{k}": final * f for k, f in (("mAP", 1), ("AP50", 1.5), ("APs", 0.6), ("APm", 1.2), ("APl", 1.1))},
        "peak_mem_mb": rng.uniform(90, 200, n), "imgs_per_s": rng.uniform(20, 60, n),
        "mlflow_run_id": ids, "started_at": start, "ended_at": start + last * 3.0,
        "retries": (np.arange(n) % 97 == 0).astype(int)})
    return trials, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trials, epochs = synthetic(args.variants, args.seeds, args.epochs)
    print(f"{len(trials)} trials, {len(epochs)} epoch rows, {args.variants} variants")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            t = time.perf_counter()
            summary = variant_summary(trials, factors=["loss.box"], epochs=epochs)
            times.setdefault("aggregate", []).append(time.perf_counter() - t)
            t = time.perf_counter()
            write_tables(summary, Path(tmp))
            times.setdefault("tables", []).append(time.perf_counter() - t)
            t = time.perf_counter()
            figures = [("curves", curves(trials, epochs)), ("forest", forest(summary)),
                       ("mem", pareto(summary, x="Mem")), ("speed", pareto(summary, x="img/s")),
                       ("sizes", size_bars(summary)), ("timeline", timeline(trials))]
            times.setdefault("figures", []).append(time.perf_counter() - t)
            t = time.perf_counter()
            page = write_html(Path(tmp) / "index.html", title="bench", description="", notes=[], figures=figures,
                              table_html=table_to_html(zoo_table(summary), best=best_cells(summary)))
            times.setdefault("page", []).append(time.perf_counter() - t)
        size = page.stat().st_size / 1e6
    total = sum(statistics.median(v) for v in times.values())
    for stage, values in times.items():
        print(f"{stage:10s} median {statistics.median(values):6.2f} s  ({statistics.median(values) / total:.0%})")
    print(f"{'total':10s} median {total:6.2f} s; page {size:.1f} MB")


if __name__ == "__main__":
    main()
