"""What `ablate run` adds around training: a study of short trials vs the theoretical minimum.

    uv run python bench/orchestration.py [--trials 8] [--epochs 2] [--repeat 2]

The minimum is the trials' own train+eval time (the sum of their epochs' ``epoch_time_s``,
measured inside the study, so under the same contention) divided by the parallel slots
(2 trials at ``cpu: 1`` on 2 cores).  The rest is ablate's overhead, split into what it is
made of: the study's fixed cost (process start, imports, Ray start, MLflow set-up before
the first trial; the report and Ray shutdown after the last) and, per trial, the Ray
worker start (from the driver launching the trial to the trial function running), the
trial's set-up (data, model, optimiser), checkpoints, and the rest (reporting epochs to
the driver, the driver's MLflow and Parquet writes, the worker's teardown).
Goal (issue 7): at most 1.2x for trials of 30 s or more; issue 21: 1.10x, and the time to the first
trial's first epoch halved.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _runs import median, run, table, write_study


def measure(folder: Path, trials: int, epochs: int, slots: int) -> dict:
    seeds = list(range(max(1, trials // 2)))
    levels = ["diou"] if trials > 1 else []
    path = write_study(folder, "overhead", seeds=seeds, factors={"loss.box": levels} if levels else {},
                       design="one_at_a_time", train={"epochs": epochs}, scheduler={"name": "none"},
                       resources={"cpu": 1})
    r = run(path, folder, "--max-concurrent", str(slots))
    e, t = r.epochs, r.trials.set_index("trial_id")
    own = e.groupby("trial_id")["epoch_time_s"].sum()
    minimum = own.sum() / slots
    parts = {"ray worker start": [], "set-up": [], "train": [], "eval": [], "checkpoint": [], "rest": []}
    for tid, row in t.iterrows():
        start = r.statuses[tid]["starts"][0]
        history = r.statuses[tid]["history"]
        wall = row.ended_at - row.started_at
        parts["ray worker start"].append(start["at"] - row.started_at)
        parts["set-up"].append(start.get("setup_s", 0.0))
        parts["train"].append(sum(h["epoch_time_s"] - h["eval_time_s"] for h in history))
        parts["eval"].append(sum(h["eval_time_s"] for h in history))
        parts["checkpoint"].append(sum(h.get("checkpoint_s", 0.0) for h in history))
        parts["rest"].append(wall - sum(parts[k][-1] for k in parts if k != "rest"))
    first, last = t.started_at.min(), t.ended_at.max()
    first_epoch = min(s["starts"][0]["at"] + s["starts"][0].get("setup_s", 0.0) for s in r.statuses.values())
    return {"wall": r.wall_s, "minimum": minimum, "own_mean": own.mean(), "n": len(t), "makespan": last - first,
            "before": first - r.started, "after": r.started + r.wall_s - last, "first_epoch": first_epoch - r.started,
            **{k: sum(v) / len(v) for k, v in parts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials in the study (variants x seeds)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (2: about 35 s a trial here)")
    parser.add_argument("--slots", type=int, default=2, help="trials at once (cpu: 1 each)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(measure(Path(tmp), args.trials, args.epochs, args.slots))
        m = runs[-1]
        print(f"run {i + 1}/{args.repeat}: {m['n']} trials, wall {m['wall']:.1f} s, minimum {m['minimum']:.1f} s, "
              f"ratio {m['wall'] / m['minimum']:.2f}x", flush=True)
    med = {k: median(r[k] for r in runs) for k in runs[0]}
    ratio = median(r["wall"] / r["minimum"] for r in runs)
    per_trial = median((r["wall"] - r["minimum"]) * args.slots / r["n"] for r in runs)
    print(f"\n{args.trials} trials x {args.epochs} epochs, {args.slots} at once; median of {args.repeat} runs")
    print(table([
        ("study wall time (`ablate run`, process start to exit)", f"{med['wall']:.1f} s"),
        ("theoretical minimum (sum of trials' train+eval / slots)", f"{med['minimum']:.1f} s"),
        ("ratio (goal <= 1.2x for trials >= 30 s)", f"{ratio:.2f}x"),
        ("a trial's own train+eval time", f"{med['own_mean']:.1f} s"),
        ("overhead per trial ((wall - minimum) x slots / trials)", f"{per_trial:.1f} s"),
    ], ("figure", "median")))
    print("\nwhere the time goes: study fixed cost, then per trial (mean)")
    print(table([
        ("before the first trial (imports, Ray start, MLflow set-up)", f"{med['before']:.1f} s"),
        ("to the first epoch (process start to the first trial's first training step)", f"{med['first_epoch']:.1f} s"),
        ("after the last trial (report, Ray shutdown)", f"{med['after']:.1f} s"),
        ("first trial start to last trial end, minus the minimum (gaps, uneven slots)",
         f"{med['makespan'] - med['minimum']:.1f} s"),
        ("per trial: Ray worker start (launch to trial function)", f"{med['ray worker start']:.1f} s"),
        ("per trial: set-up (data, model, optimiser)", f"{med['set-up']:.1f} s"),
        ("per trial: checkpoints", f"{med['checkpoint']:.2f} s"),
        ("per trial: rest (reporting, MLflow + Parquet in the driver, teardown)", f"{med['rest']:.1f} s"),
        ("per trial: train (not overhead)", f"{med['train']:.1f} s"),
        ("per trial: eval (not overhead)", f"{med['eval']:.1f} s"),
    ], ("part", "median")))


if __name__ == "__main__":
    main()
