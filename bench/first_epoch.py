"""The time from `ablate run` to the first trial's first training step, this checkout against an earlier commit.

    uv run python bench/first_epoch.py [--against 702af9e] [--repeat 5]

Runs a one-trial study (the shipped tiny base: 192 px shapes, one seed, one epoch) through
``ablate run`` in a fresh process, alternately with this checkout's ablate and with the
``--against`` commit's (a temporary git worktree put first on PYTHONPATH, so the driver and its Ray
workers import it; same environment otherwise), and reads the step's time from the trial's
status.json (``starts[0]``: the trial function's start plus its set-up).  The default commit is the
one before the driver stopped importing torch (docs/benchmarks.md section 2, fix 4), the reference
of issue 21's "halved".  Each run gets a copy of one MLflow store made first (a user's second study).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _runs import write_study

ROOT = Path(__file__).resolve().parents[1]


def one(study: Path, folder: Path, store: Path, pythonpath: str | None) -> tuple[float, float]:
    """(seconds to the first training step, the run's wall time) of one ``ablate run``."""
    results = folder / "results"
    shutil.rmtree(results, ignore_errors=True)
    shutil.copyfile(store, folder / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    began = time.time()
    subprocess.run([sys.executable, "-m", "ablate", "run", str(study), "--results", str(results),
                    "-o", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}"], cwd=folder, env=env,
                   capture_output=True, text=True, check=True)
    wall = time.time() - began
    status = json.loads(next((results / "first" / "trials").glob("*/status.json")).read_text())
    start = status["starts"][0]
    return start["at"] + start.get("setup_s", 0.0) - began, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="702af9e", help="the earlier commit (default: before fix 4)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, old = Path(tmp), Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.against], cwd=ROOT, check=True)
        try:
            study = write_study(folder, "first", seeds=[0], train={"epochs": 1}, scheduler={"name": "none"},
                                resources={"cpu": 1})
            store = folder / "empty.db"
            from mlflow.tracking import MlflowClient

            MlflowClient(f"sqlite:///{store}").search_experiments()
            runs: dict[str, list[tuple[float, float]]] = {"this checkout": [], args.against: []}
            for i in range(args.repeat):
                for name in (("this checkout", args.against) if i % 2 == 0 else (args.against, "this checkout")):
                    runs[name].append(one(study, folder, store, str(old) if name == args.against else None))
                    print(f"{name:14s} first step {runs[name][-1][0]:6.2f} s, wall {runs[name][-1][1]:6.1f} s",
                          flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    new = statistics.median(r[0] for r in runs["this checkout"])
    ref = statistics.median(r[0] for r in runs[args.against])
    pairs = sorted(a[0] / b[0] for a, b in zip(runs["this checkout"], runs[args.against]))
    print(f"\nfirst training step, median of {args.repeat} alternated runs: {new:.2f} s (this checkout) against "
          f"{ref:.2f} s ({args.against}): {new / ref:.2f}x; run by run {pairs[0]:.2f}-{pairs[-1]:.2f}x")


if __name__ == "__main__":
    main()
