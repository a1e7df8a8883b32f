"""Two studies started together in one folder, on MLflow's default store (./mlflow.db) and two local
Rays, and two reports written while a study runs: every trial once in each Parquet and in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from records import trial_runs

from ablate.study import load_study, trials
from ablate.study.expand import check

pytestmark = pytest.mark.slow


def _ablate(*args, cwd, env):
    return subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def test_two_studies_at_once_in_one_folder_and_two_reports_while_one_runs(study_file, tmp_path):
    # before the fix the second driver to open the new sqlite store failed its schema migration
    # ("Online migration expected to match one row") and left it half made: the other's trials unsynced
    paths = [study_file(f"two_{n}", factors={"loss.box": ["diou", "ciou", "eiou"]}, tracking={"uri": None})
             for n in ("a", "b")]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # MLflow's default: ./mlflow.db
    drivers = [_ablate("run", str(p), cwd=tmp_path, env=env) for p in paths]
    try:
        deadline = time.monotonic() + 300
        table = tmp_path / "results" / "two_a" / "trials.parquet"
        while not (table.is_file() and (pd.read_parquet(table).status == "completed").any()):
            assert time.monotonic() < deadline and drivers[0].poll() is None, "study a finished no trial"
            time.sleep(0.5)
        reports = [_ablate("report", "two_a", "--out", str(tmp_path / f"r{i}"), cwd=tmp_path, env=env) for i in (0, 1)]
        for r in reports:
            out, _ = r.communicate(timeout=120)
            assert r.returncode == 0, out
        outputs = [d.communicate(timeout=600)[0] for d in drivers]
    finally:
        for d in drivers:
            if d.poll() is None:
                d.kill()
    for d, out in zip(drivers, outputs):
        assert d.returncode == 0, out
        assert "not synced" not in out and "locked" not in out and "Traceback" not in out, out
    assert all((tmp_path / f"r{i}" / "index.html").is_file() for i in (0, 1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for path in paths:
        study = load_study(path)
        planned = sorted(t.trial_id for t in trials(study, check(study)))
        table = pd.read_parquet(tmp_path / "results" / study.name / "trials.parquet")
        assert sorted(table.trial_id) == planned and (table.status == "completed").all()
        assert sorted(trial_runs(uri, study.name)) == planned  # each once in MLflow, none lost
