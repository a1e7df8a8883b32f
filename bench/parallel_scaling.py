"""Parallel scaling: the same trials 1 and 2 at a time on the CPU cores (1 thread each) and,
with ``--device cuda``, 1, 2 and 4 packed on one GPU (fractional ``resources.gpu``).

    uv run python bench/parallel_scaling.py [--trials 4] [--epochs 1] [--repeat 2]

Prints trials per hour, each trial's own time, and each trial's peak memory (CPU: the tensors
a step holds, ablate/engine/memory.py; CUDA: ``max_memory_allocated``) for each concurrency,
median over ``--repeat`` runs, alternating the concurrencies so machine noise hits all.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _runs import median, run, table, write_study


def measure(folder: Path, trials: int, epochs: int, at_once: int, device: str) -> dict:
    gpu = 1.0 / at_once if device == "cuda" else 0.0
    path = write_study(folder, "scaling", design="one_at_a_time", seeds=list(range(trials)),
                       data={"image_size": 128, "shapes": {"train_images": 256, "val_images": 64}},
                       train={"epochs": epochs}, scheduler={"name": "none"}, resources={"cpu": 1, "gpu": gpu})
    r = run(path, folder, "--max-concurrent", str(at_once))
    t = r.trials
    makespan = t.ended_at.max() - t.started_at.min()
    return {"per_hour": len(t) / makespan * 3600, "per_hour_wall": len(t) / r.wall_s * 3600,
            "trial_s": (t.ended_at - t.started_at).mean(), "mem": t.peak_mem_mb.max()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    levels = (1, 2) if args.device == "cpu" else (1, 2, 4)

    results: dict[int, list[dict]] = {k: [] for k in levels}
    for i in range(args.repeat):
        for k in levels if i % 2 == 0 else reversed(levels):
            with tempfile.TemporaryDirectory() as tmp:
                results[k].append(measure(Path(tmp), args.trials, args.epochs, k, args.device))
            print(f"repeat {i + 1}: {k} at once: {results[k][-1]['per_hour']:.0f} trials/h", flush=True)
    one = median(r["per_hour"] for r in results[1])
    rows = []
    for k in levels:
        m = {key: median(r[key] for r in results[k]) for key in results[k][0]}
        rows.append((k, f"{m['per_hour']:.0f}", f"{m['per_hour'] / one:.2f}x", f"{m['per_hour_wall']:.0f}",
                     f"{m['trial_s']:.1f} s", f"{m['mem']:.0f} MiB"))
    memory = "peak GPU memory per trial" if args.device == "cuda" else "peak tensor memory per trial"
    print(f"\n{args.trials} trials x {args.epochs} epoch(s) on {args.device}, median of {args.repeat} runs")
    print(table(rows, ("trials at once", "trials/hour (first start to last end)", "vs 1 at once",
                       "trials/hour (whole `ablate run`)", "a trial's wall time", memory)))


if __name__ == "__main__":
    main()
