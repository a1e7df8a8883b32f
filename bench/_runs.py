"""Shared by the study benchmarks: write a small study on the shipped tiny base, run
`ablate run` on it in a fresh process (as a user does), and read back what it recorded."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

BASE = Path(__file__).resolve().parent.parent / "studies" / "_base_" / "tiny_shapes.yaml"


def write_study(folder: Path, name: str, **keys) -> Path:
    """A study on studies/_base_/tiny_shapes.yaml with ``keys`` on top (sections merge)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"_base_": str(BASE), "name": name, **keys}, sort_keys=False))
    return path


@dataclass
class Run:
    wall_s: float  # the `ablate run` process, start to exit
    started: float  # unix time just before the process was started
    trials: pd.DataFrame
    epochs: pd.DataFrame
    statuses: dict[str, dict]  # trial id -> status.json


def run(path: Path, folder: Path, *args: str) -> Run:
    """``ablate run path`` with its results and MLflow store in ``folder``; raises if it fails."""
    results = folder / "results"
    command = [sys.executable, "-m", "ablate", "run", str(path), "--results", str(results),
               "-o", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", *args]
    started = time.time()
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    name = yaml.safe_load(path.read_text())["name"]
    statuses = {p.parent.name: json.loads(p.read_text()) for p in (results / name / "trials").glob("*/status.json")}
    return Run(wall, started, pd.read_parquet(results / name / "trials.parquet"),
               pd.read_parquet(results / name / "epochs.parquet"), statuses)


def median(values) -> float:
    return statistics.median(list(values))


def table(rows: list[tuple], header: tuple[str, ...]) -> str:
    """A plain aligned table for the console and docs/benchmarks.md."""
    cells = [header, *[tuple(str(c) for c in r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])
