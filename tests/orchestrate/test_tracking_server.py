"""A study logging over HTTP to a real `mlflow server` whose backend store is a real PostgreSQL.

PostgreSQL comes from Debian's packages (installed here when missing, as root), runs as
the `postgres` user on loopback with a throw-away data folder; the test is skipped, with
the reason printed, only where it cannot be had.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ablate.orchestrate.run import run_study
from ablate.study import load_study, trials
from ablate.study.expand import check

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _postgres_or_skip() -> Path:
    if _pg_bin() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"], env=env,
                       capture_output=True, timeout=900)
    pg = _pg_bin()
    if pg is None or shutil.which("runuser") is None:
        reason = "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"
        print(f"\nSKIP: {reason}")
        pytest.skip(reason)
    return pg


@pytest.fixture
def tracking_server(tmp_path_factory):
    """http URI of an `mlflow server` on a fresh PostgreSQL database."""
    pg = _postgres_or_skip()
    data = Path(tempfile.mkdtemp(prefix="ablate-pg-"))  # not under pytest's 0700 root-owned folders: postgres owns it
    shutil.chown(data, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_port, port = _free_port(), _free_port()
    subprocess.run([*as_pg, str(pg / "initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_pg, str(pg / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "start",
                    "-o", f"-p {pg_port} -h 127.0.0.1 -k {data}"], check=True, capture_output=True, timeout=120)
    server = None
    try:
        subprocess.run([*as_pg, str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres",
                        "mlflow"], check=True, capture_output=True, timeout=60)
        artifacts = tmp_path_factory.mktemp("artifacts")
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"postgresql://postgres@127.0.0.1:{pg_port}/mlflow", "--artifacts-destination", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        uri = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            assert server.poll() is None, server.stdout.read()
            try:  # plain HTTP: the MLflow client would back off for minutes on a refused connection
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("mlflow server did not come up in 180 s")
        yield uri
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        subprocess.run([*as_pg, str(pg / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_a_study_logs_through_an_mlflow_server_on_postgresql(tracking_server, study_file, tmp_path):
    path = study_file("served", factors={"loss.box": ["diou"]}, seeds=[0, 1], resources={"cpu": 0.5},
                      tracking={"uri": tracking_server})
    outcome = run_study(path, [], results_root=tmp_path / "results")
    assert outcome.counts["completed"] == 4 and outcome.tracking_uri == tracking_server

    study = load_study(path, [])
    planned = sorted(t.trial_id for t in trials(study, check(study)))
    client = MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name("served")
    runs = client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'trial'")
    assert sorted(r.data.tags["ablate.trial_id"] for r in runs) == planned  # each trial once
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "mAP")]
        assert steps == [1, 2], steps  # each epoch once
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.yaml", "coco_summary.txt"}
