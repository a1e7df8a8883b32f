"""What ASHA saves: the same multi-variant study with and without early stopping.

    uv run python bench/asha_savings.py [--epochs 9] [--seeds 2] [--lrs 0.002,0.005,0.04,0.1]

Both runs train the same trials (the baseline's learning rate and ``--lrs`` on the tiny
shapes detector at 128 px, one-at-a-time against the baseline, ``--seeds`` seeds each).  Prints the epochs each run
spent, its wall time, and each run's best variant (highest mean final mAP over seeds,
among variants with a completed trial); ASHA's pick is good when it is the full run's
best or lies within the seed noise of it (the full run's spread of that variant over
seeds, as the larger of its standard deviation and the other's).
Goal (issue 7): ASHA spends at most 35% of the full run's epochs.  It also prints the
share a synchronous successive halving would spend on the same study shape (``sha_share``):
the least any rung-based pruning with these rungs can spend, with the baseline protected.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from _runs import run, table, write_study

LRS = "0.002,0.005,0.04,0.1"  # around the baseline's 0.016: two worse-by-small, two worse-by-large guesses


def study(folder: Path, name: str, epochs: int, seeds: int, scheduler: dict, lrs: list[float]) -> Path:
    return write_study(folder, name, design="one_at_a_time", seeds=list(range(seeds)),
                       data={"image_size": 128, "shapes": {"train_images": 192, "val_images": 64}},
                       train={"epochs": epochs, "warmup": {"name": "linear", "iters": 30}},
                       factors={"train.optimizer.lr": lrs}, scheduler=scheduler, resources={"cpu": 1})


def sha_share(variants: int, seeds: int, epochs: int, grace: int, reduction: float) -> float:
    """Epochs an ideal synchronous successive halving spends, as a share of the full run.

    The baseline's seeds run all ``epochs``; of the other ``variants`` x ``seeds`` trials,
    1/reduction**k pass the k-th rung (at grace * reduction**k epochs) and run on to the
    next rung or the end.  Async ASHA spends more: it promotes early arrivals.
    """
    rungs = [grace * reduction ** k for k in range(64) if grace * reduction ** k < epochs]
    ends = [*rungs[1:], epochs]
    per_trial = rungs[0] + sum((end - start) / reduction ** (k + 1) for k, (start, end) in enumerate(zip(rungs, ends)))
    return (seeds * epochs + variants * seeds * per_trial) / ((variants + 1) * seeds * epochs)


def best(trials: pd.DataFrame) -> pd.Series:
    """Mean final mAP per variant, over its completed trials, best first."""
    done = trials[trials.status == "completed"]
    return done.groupby("variant_name")["final_mAP"].mean().sort_values(ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--grace", type=int, default=1, help="ASHA grace period (epochs)")
    parser.add_argument("--reduction", type=float, default=3.0, help="ASHA reduction factor")
    parser.add_argument("--lrs", default=LRS, help="the variants: learning rates besides the baseline's, comma-separated")
    args = parser.parse_args()
    lrs = [float(v) for v in args.lrs.split(",")]

    asha = {"name": "asha", "metric": "mAP", "mode": "max", "grace_period": args.grace,
            "reduction_factor": args.reduction, "protect_baseline": True}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, scheduler in (("full", {"name": "none"}), ("asha", asha)):
            folder = Path(tmp) / label
            out[label] = run(study(folder, f"lr_{label}", args.epochs, args.seeds, scheduler, lrs), folder)
            print(f"{label}: {len(out[label].epochs)} epochs in {out[label].wall_s:.0f} s", flush=True)
    full, pruned = out["full"], out["asha"]
    full_rank, asha_rank = best(full.trials), best(pruned.trials)
    top, pick = full_rank.index[0], asha_rank.index[0]
    spread = full.trials[full.trials.status == "completed"].groupby("variant_name")["final_mAP"].std().fillna(0)
    noise = max(spread.get(top, 0.0), spread.get(pick, 0.0))
    gap = full_rank[top] - full_rank[pick]
    epochs_share = len(pruned.epochs) / len(full.epochs)
    counts = pruned.trials.status.value_counts().to_dict()

    print(f"\n{len(full.trials)} trials ({len(full_rank)} variants x {args.seeds} seeds), {args.epochs} epochs each; "
          f"ASHA grace {args.grace}, reduction {args.reduction:g}, baseline protected")
    print(table([
        ("epochs spent", len(full.epochs), len(pruned.epochs), f"{epochs_share:.0%} (goal <= 35%)"),
        ("synchronous SHA on this shape (ideal)", "", "", f"{sha_share(len(lrs), args.seeds, args.epochs, args.grace, args.reduction):.0%}"),
        ("wall time", f"{full.wall_s:.0f} s", f"{pruned.wall_s:.0f} s", f"{pruned.wall_s / full.wall_s:.0%}"),
        ("trials completed / pruned", f"{(full.trials.status == 'completed').sum()} / 0",
         f"{counts.get('completed', 0)} / {counts.get('pruned', 0)}", ""),
        ("best variant (mean final mAP)", f"{top} ({full_rank[top]:.3f})", f"{pick} ({asha_rank[pick]:.3f})",
         "same" if pick == top else f"full run's mAP of ASHA's pick is {gap:.3f} lower; seed noise {noise:.3f}: "
         + ("within" if gap <= noise else "OUTSIDE")),
    ], ("figure", "without ASHA", "with ASHA", "ASHA / without")))
    print("\nfull run, mean final mAP by variant:", ", ".join(f"{k} {v:.3f}" for k, v in full_rank.items()))
    kept = pruned.trials.groupby("variant_name")["epochs"].apply(lambda e: "+".join(str(int(n)) for n in e))
    print("with ASHA, epochs per variant (one figure per seed):", ", ".join(f"{k} {v}" for k, v in kept.items()))


if __name__ == "__main__":
    main()
