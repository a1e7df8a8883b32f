"""Ray workers that cannot start: a driver under `uv run` by a relative path, and an interpreter that is missing.

Real Ray Tune, MLflow (sqlite) and training on tiny shapes, each driver in a process of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from records import trial_runs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]


def _uv() -> str | None:
    """The uv running this suite (`uv run` says it in $UV), else one on PATH or the Makefile's bootstrapped one."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(REPO / ".tools" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_a_driver_that_imported_ray_first_under_uv_run_by_a_relative_path_runs_its_study(study_file, tmp_path):
    """The Makefile's bootstrap runs the suite as `.tools/bin/uv run pytest`, and tests import Ray before ablate:
    Ray's `uv run` hook, if left on, re-launches every worker with that relative uv path, where it does not exist."""
    uv = _uv()
    if uv is None:
        pytest.skip("no uv executable to run the driver under")
    (tmp_path / "bin").mkdir()
    os.symlink(uv, tmp_path / "bin" / "uv")
    work = tmp_path / "work"
    work.mkdir()
    path = study_file("ray_first", seeds=[0], train={"epochs": 1})
    (work / "driver.py").write_text(
        "import ray  # first, before ablate sets Ray's switches\n"
        "from pathlib import Path\n"
        "from ablate.orchestrate.run import run_study\n"
        f"outcome = run_study(Path({str(path)!r}), [], results_root=Path({str(tmp_path / 'results')!r}))\n"
        "print('COUNTS', outcome.counts)\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_UV_RUN_RUNTIME_ENV"}
    done = subprocess.run(["../bin/uv", "run", "--no-project", sys.executable, "driver.py"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "COUNTS {'completed': 1, 'pruned': 0, 'failed': 0}" in done.stdout
    # one trial, one prestarted worker: with a core left for the driver, it imported the trial's modules as it
    # started (local_ray.Workers), so the trial's function found them imported
    from ray._private.utils import get_num_cpus

    (status,) = (tmp_path / "results" / "ray_first" / "trials").glob("*/status.json")
    assert json.loads(status.read_text())["starts"][0]["preloaded"] is (get_num_cpus() > 1)


def test_a_study_whose_workers_cannot_start_stops_with_rays_reason_and_a_rerun_completes_it(study_file, tmp_path):
    # the failure of the relative uv path, without uv: a runtime-env hook that points workers at no interpreter
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "badworker.py").write_text(
        "def hook(runtime_env):\n    return {**(runtime_env or {}), 'py_executable': '/nonexistent/bin/python3'}\n")
    path = study_file("no_worker", seeds=[0], train={"epochs": 1})
    root = tmp_path / "results"
    command = [sys.executable, "-m", "ablate", "run", str(path), "--results", str(root)]
    broken = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
              "RAY_RUNTIME_ENV_HOOK": "badworker.hook", "ABLATE_WORKER_START_TIMEOUT_S": "10"}
    began = time.monotonic()
    stopped = subprocess.run(command, cwd=tmp_path, env=broken, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - began
    said = stopped.stdout + stopped.stderr
    assert stopped.returncode == 1, said[-3000:]
    assert "no Ray worker started in 10 s: 1 trial(s) waiting" in said
    assert "/nonexistent/bin/python3: No such file or directory" in said  # Ray's own line, the cause
    assert "run the same command again" in said and "Traceback" not in said
    assert took < 150, took  # "within ~2 minutes", start-up and shutdown included
    if (root / "no_worker" / "trials.parquet").exists():
        assert "completed" not in set(pd.read_parquet(root / "no_worker" / "trials.parquet").get("status", []))

    fixed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert fixed.returncode == 0, (fixed.stdout + fixed.stderr)[-3000:]
    table = pd.read_parquet(root / "no_worker" / "trials.parquet")
    assert list(table.status) == ["completed"]
    assert list(trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "no_worker")) == list(table.trial_id)
