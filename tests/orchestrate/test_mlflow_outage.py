"""MLflow going away mid-study, and a study of 200 trials: every record kept, each sent exactly once.

The tracking server is a real `mlflow server` on loopback over a sqlite store, stopped
(its whole process group killed) while a real study trains, then started again on the
same store; `ablate sync` then sends what the run kept.  The load test runs 200 trials
through real Ray Tune, Parquet and MLflow, with a stub trainable in place of training
(``run_study(trainable=...)``, orchestrate/stand_in.py): it is about the driver, not the engine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from records import steps, trial_runs
from typer.testing import CliRunner

from ablate.cli import app
from ablate.orchestrate.mlflow_mirror import PENDING
from ablate.orchestrate.run import run_study
from ablate.orchestrate.stand_in import PeakRss, stand_in_trainable
from ablate.study import load_study, trials
from ablate.study.expand import check

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on a sqlite store in ``folder``, started and stopped at will (same port, same store)."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, _free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # uvicorn is its child
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, "mlflow server exited"
            try:  # plain HTTP: the MLflow client would back off on a refused connection
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("mlflow server did not come up in 180 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # as a crash or a lost host: no goodbye
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "server")
    s.folder.mkdir()
    s.start()
    yield s
    s.stop()


def _snapshot(uri: str, study: str) -> dict[str, dict]:
    """trial id -> its run id, status, status tag and every metric's [(step, value)], from MLflow."""
    return {tid: {"run_id": run.info.run_id, "state": run.info.status, "status": run.data.tags.get("status"),
                  "params": len(run.data.params), **{k: steps(uri, run, k) for k in ("mAP", "loss", "epoch_time_s")}}
            for tid, run in trial_runs(uri, study).items()}


def _assert_mlflow_equals_parquet(uri: str, root: Path, study: str, planned: list[str]) -> dict:
    table = pd.read_parquet(root / study / "trials.parquet").set_index("trial_id")
    epochs = pd.read_parquet(root / study / "epochs.parquet")
    assert sorted(table.index) == sorted(planned) and not epochs.duplicated(["trial_id", "epoch"]).any()
    runs = _snapshot(uri, study)
    assert sorted(runs) == sorted(planned)  # each trial once
    for tid, run in runs.items():
        rows = epochs[epochs.trial_id == tid].sort_values("epoch")
        for metric in ("mAP", "loss", "epoch_time_s"):  # each epoch once, the same numbers
            assert run[metric] == list(zip(rows.epoch, rows[metric])), (tid, metric)
        assert run["run_id"] == table.loc[tid, "mlflow_run_id"]
        assert run["state"] == "FINISHED" and run["status"] == table.loc[tid, "status_label"] == "completed"
        assert run["params"] > 10  # variant, seed, factors, the flattened config
    return runs


def _sync_terminated_midway(root: Path, study: str, cwd: Path) -> None:
    """`ablate sync` preempted (SIGTERM) once its first trial is sent: it ends after the trial in progress,
    says what is left, and leaves it pending (the full sync after it proves nothing was lost or sent twice)."""
    path = root / study / PENDING
    before = len(json.loads(path.read_text())["trials"])
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "sync", study, "--results", str(root)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while len(json.loads(path.read_text() if path.exists() else '{"trials": []}')["trials"]) == before:
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = len(json.loads(path.read_text())["trials"]) if path.exists() else 0
    print(f"sync preempted: {before} pending before, {left} after; exit {proc.returncode}\n{output}")
    assert proc.returncode == 143, output
    assert "terminated (SIGTERM)" in output and f"{left} trial(s) still pending" in output, output
    assert "Traceback" not in output
    assert 0 < left < before, "the sync ended before the signal: the test proves nothing"


def test_mlflow_server_stops_mid_study_then_sync_sends_everything_once(server, study_file, statuses, tmp_path):
    path = study_file("outage", train={"epochs": 3}, factors={"loss.box": ["diou"]}, seeds=[0, 1],
                      tracking={"uri": server.uri})
    study = load_study(path, [])
    planned = [t.trial_id for t in trials(study, check(study))]
    root = tmp_path / "results"
    began = time.time()
    driver = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(root)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.time() + 240
        epochs_file = root / "outage" / "epochs.parquet"
        while not epochs_file.exists() or pd.read_parquet(epochs_file).empty:
            assert driver.poll() is None, driver.stdout.read()
            assert time.time() < deadline, "no epoch recorded in 240 s"
            time.sleep(0.1)
        server.stop()
        stopped = time.time()
        output, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    print(f"\nstudy: {stopped - began:.1f} s until the first epoch was recorded and the server killed, "
          f"then {time.time() - stopped:.1f} s to the end")
    assert driver.returncode == 0, output
    assert output.count("unreachable ([Errno 111] Connection refused)") == 1, output  # said once, not per call
    assert "not synced" in output and "ablate sync outage" in output, output

    # nothing lost: every trial and epoch is in Parquet, and marked for MLflow
    table = pd.read_parquet(root / "outage" / "trials.parquet")
    epochs = pd.read_parquet(root / "outage" / "epochs.parquet")
    assert sorted(table.trial_id) == sorted(planned) and (table.status == "completed").all()
    assert len(epochs) == 4 * 3 and not epochs.duplicated(["trial_id", "epoch"]).any()
    pending = json.loads((root / "outage" / PENDING).read_text())
    assert pending["tracking_uri"] == server.uri and pending["finished"] is True and pending["trials"]

    # while it is still down, sync says so and keeps everything
    result = CliRunner().invoke(app, ["sync", str(path), "--results", str(root)])
    assert result.exit_code == 1 and "unreachable" in result.output, result.output
    assert json.loads((root / "outage" / PENDING).read_text())["trials"] == pending["trials"]

    server.start()  # the same store: what went out before the outage is there
    _sync_terminated_midway(root, "outage", tmp_path)
    result = CliRunner().invoke(app, ["sync", "outage", "--results", str(root)])
    assert result.exit_code == 0, result.output
    assert "nothing pending" in result.output and not (root / "outage" / PENDING).exists()
    first = _assert_mlflow_equals_parquet(server.uri, root, "outage", planned)
    client = MlflowClient(server.uri)
    parent = client.search_runs([client.get_experiment_by_name("outage").experiment_id],
                                "tags.`ablate.role` = 'study'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"

    # again: nothing to send, nothing changes; and the next run of the study adds nothing either
    result = CliRunner().invoke(app, ["sync", "outage", "--results", str(root)])
    assert result.exit_code == 0 and "nothing to send" in result.output, result.output
    again = run_study(path, [], results_root=root)
    assert again.ran == 0 and again.unsynced == 0
    assert _assert_mlflow_equals_parquet(server.uri, root, "outage", planned) == first


def test_a_study_that_starts_with_mlflow_down_runs_and_the_next_run_sends_it(server, study_file, tmp_path):
    """The parent run cannot even be created: the study still runs, and the next `ablate run` sends it all."""
    path = study_file("cold", train={"epochs": 1}, seeds=[0, 1], tracking={"uri": server.uri})
    study = load_study(path, [])
    planned = [t.trial_id for t in trials(study, check(study))]
    root = tmp_path / "results"
    server.stop()
    outcome = run_study(path, [], results_root=root)
    assert outcome.counts["completed"] == 2 and outcome.unsynced == 2 and not outcome.interrupted
    assert sorted(json.loads((root / "cold" / PENDING).read_text())["trials"]) == sorted(planned)

    server.start()
    again = run_study(path, [], results_root=root)  # sends what is pending before anything else
    assert again.ran == 0 and again.unsynced == 0 and not (root / "cold" / PENDING).exists()
    _assert_mlflow_equals_parquet(server.uri, root, "cold", planned)


# ---------------------------------------------------------------- load: 200 trials through the driver

@pytest.mark.timeout(600)  # 140 s on a quiet 2-core machine; another ran the same study 2x slower
def test_200_trials_at_full_concurrency_are_each_recorded_once(study_file, tmp_path):
    n_seeds = 50
    path = study_file("load", factors={"loss.box": ["diou", "ciou", "eiou"]}, seeds=list(range(n_seeds)),
                      train={"epochs": 1}, resources={"cpu": 0.1})
    study = load_study(path, [])
    planned = [t.trial_id for t in trials(study, check(study))]
    assert len(planned) == 200
    root = tmp_path / "results"

    began = time.time()
    with PeakRss() as rss:
        outcome = run_study(path, [], results_root=root, trainable=stand_in_trainable())
    wall = time.time() - began
    growth = rss.peak - rss.before
    print(f"\n200 trials: {wall:.1f} s ({200 / wall:.2f} trials/s), driver RSS {rss.before:.0f} MiB before, "
          f"peak {rss.peak:.0f} MiB (+{growth:.0f} MiB)")
    assert outcome.counts["completed"] == 200 and outcome.unsynced == 0 and not outcome.interrupted
    assert growth < 2048, growth

    table = pd.read_parquet(root / "load" / "trials.parquet")
    epochs = pd.read_parquet(root / "load" / "epochs.parquet")
    assert sorted(table.trial_id) == sorted(planned) and (table.epochs == 1).all()
    assert len(epochs) == 200 and not epochs.duplicated(["trial_id", "epoch"]).any()
    runs = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "load")
    assert sorted(runs) == sorted(planned)  # each once
    by_id = table.set_index("trial_id")
    for tid, run in runs.items():
        assert run.data.metrics["mAP"] == pytest.approx(by_id.loc[tid, "final_mAP"])
        assert run.data.tags["ablate.epochs_logged"] == "1" and run.info.status == "FINISHED"
        assert run.info.run_id == by_id.loc[tid, "mlflow_run_id"]
