"""How long `ablate plan` takes, and what it would cost if loading a study imported torch again.

    uv run python bench/plan_startup.py [--study studies/loss_ablation.yaml] [--repeat 5]

Runs, alternately, ``ablate plan STUDY`` as shipped and the same command in a process that
imports torch, torchvision and pycocotools first (what loading a study cost while the study
schema reached the engine for one ``Literal``), each ``--repeat`` times in a fresh
interpreter, and prints the medians and their ratio.  Also lists the heavy modules a plain
``ablate plan`` ends up with (none is the target; tests/test_layers.py holds it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "ray", "mlflow", "pycocotools", "faster_coco_eval", "scipy")
PLAN = ("import contextlib, io, runpy, sys\nsys.argv = ['ablate', 'plan', {study!r}]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    runpy.run_module('ablate', run_name='__main__')\n")


def timed(code: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - began, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/loss_ablation.yaml")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plan = PLAN.format(study=args.study)
    probe = plan + f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    runs = {"ablate plan": [], "ablate plan, torch imported first": []}
    for _ in range(args.repeat):  # alternated, so a noisy neighbour hits both alike
        runs["ablate plan"].append(timed(plan)[0])
        runs["ablate plan, torch imported first"].append(
            timed("import torch, torchvision, pycocotools.coco  # noqa\n" + plan)[0])
    print(f"{args.study}, median of {args.repeat} fresh interpreters (python {sys.version.split()[0]})")
    for name, times in runs.items():
        print(f"  {name:<36s} {statistics.median(times):6.2f} s   ({', '.join(f'{t:.2f}' for t in times)})")
    ratio = statistics.median(runs["ablate plan, torch imported first"]) / statistics.median(runs["ablate plan"])
    print(f"  ratio (torch first / as shipped)     {ratio:6.2f}x")
    print(f"  heavy modules after ablate plan: {timed(probe)[1] or 'none'}")


if __name__ == "__main__":
    main()
