"""`storage:`: trial checkpoints and Ray's state on an object store (a real S3 server on
loopback, moto's), and a node-local folder refused on a multi-node cluster before any trial starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from records import steps, trial_runs
from typer.testing import CliRunner

from ablate.cli import app
from ablate.engine.trial import run_trial
from ablate.orchestrate.run import run_study
from ablate.orchestrate.storage import OWNER, Storage, sweep_scratch
from ablate.study import load_study, trials
from ablate.study.expand import check

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(monkeypatch):
    """A real S3 API (moto's server) on loopback with a bucket ``ablate``; pyarrow finds it through AWS_ENDPOINT_URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)  # Ray's workers inherit the driver's environment
    boto3.client("s3").create_bucket(Bucket="ablate")
    yield boto3.client("s3")
    server.stop()


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="ablate", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_checkpoints_on_s3_resume_from_the_store_and_nothing_local(s3, study_file, tmp_path):
    path = study_file("s3study", factors={"loss.box": ["diou"]})
    study = load_study(path, [])
    baseline, other = trials(study, check(study))
    storage = Storage.of("s3://ablate/studies", tmp_path / "results", "s3study")

    # a trial that ran one epoch elsewhere: its folder is in the bucket, nowhere on this disk
    staged = tmp_path / "elsewhere"
    run_trial(baseline.variant.config, seed=baseline.seed, out_dir=staged, threads=1, stop_after=1, log=lambda _: None)
    for file in staged.iterdir():
        s3.upload_file(str(file), "ablate", f"studies/s3study/trials/{baseline.trial_id}/{file.name}")
    shutil.rmtree(staged)

    outcome = run_study(path, [], results_root=tmp_path / "results", storage="s3://ablate/studies")

    assert outcome.counts["completed"] == 2 and not outcome.interrupted
    assert not (tmp_path / "results" / "s3study" / "trials").exists()  # trial folders live in the bucket only
    assert not (tmp_path / "results" / "s3study" / "ray").exists()
    keys = _keys(s3, "studies/s3study/")
    for t in (baseline, other):
        assert f"studies/s3study/trials/{t.trial_id}/checkpoint.pt" in keys
        status = storage.read_status(t.trial_id)
        assert status["status"] == "completed" and status["epochs_done"] == 2
        assert not (Path(tempfile.gettempdir()) / "ablate-scratch" / "s3study" / t.trial_id).exists()
    assert [s["epoch"] for s in storage.read_status(baseline.trial_id)["starts"]] == [1, 2]  # resumed from S3
    assert [s["epoch"] for s in storage.read_status(other.trial_id)["starts"]] == [1]
    assert any(k.startswith("studies/s3study/ray/") for k in keys)  # Ray Tune's experiment state too

    table = pd.read_parquet(tmp_path / "results" / "s3study" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "results" / "s3study" / "epochs.parquet")
    assert sorted(table.trial_id) == sorted([baseline.trial_id, other.trial_id])
    assert len(epochs) == 4 and not epochs.duplicated(["trial_id", "epoch"]).any()  # epoch 1 of the staged one too
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = trial_runs(uri, "s3study")
    assert sorted(runs) == sorted(table.trial_id)
    for run in runs.values():
        assert [step for step, _ in steps(uri, run)] == [1, 2]

    again = run_study(path, [], results_root=tmp_path / "results", storage="s3://ablate/studies")
    assert again.ran == 0 and again.counts["completed"] == 2  # what is ended is read back from the bucket

    result = CliRunner().invoke(app, ["run", str(path), "--results", str(tmp_path / "results"),
                                      "--storage", "s3://ablate/studies", "--restart", "--dry-run"])
    assert result.exit_code == 0, result.output
    storage.discard()  # what --restart does to the store
    assert _keys(s3, "studies/s3study/trials/") == [] and _keys(s3, "studies/s3study/ray/") == []


def test_unknown_storage_scheme_is_a_clear_error(study_file, tmp_path):
    path = study_file("badstore")
    result = CliRunner().invoke(app, ["run", str(path), "--storage", "ftp://host/x", "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert "storage" in result.output and "s3://, gs://" in result.output
    assert not (tmp_path / "badstore").exists()


@pytest.fixture
def split_cluster(tmp_path):
    """A head (Ray's cluster_utils) plus a node in its own mount namespace, where ``tmp_path/local``
    is a tmpfs of its own: a folder that exists on both nodes but is not shared, as a node's local disk."""
    import ray
    from ray.cluster_utils import Cluster

    local = tmp_path / "local"
    local.mkdir()
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare --mount` (root) to give a Ray node a folder of its own")
    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    ray_bin = Path(sys.executable).parent / "ray"
    node = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs none {local} && exec {ray_bin} start --address {head.address} --num-cpus 1 --block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ray.init(address=head.address)
    deadline = time.time() + 60
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        assert time.time() < deadline and node.poll() is None, "the second node did not join"
        time.sleep(0.5)
    ray.shutdown()
    yield head.address, local
    node.terminate()
    node.wait(timeout=60)
    head.shutdown()


def test_node_local_storage_is_refused_before_any_trial(split_cluster, study_file, tmp_path):
    address, local = split_cluster
    path = study_file("split")
    result = subprocess.run([sys.executable, "-m", "ablate", "run", str(path), "--address", address,
                             "--results", str(tmp_path / "results"), "--storage", str(local)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert f"storage {local} is not shared" in message and "cannot see" in message, message
    assert "--storage /mnt/shared/ablate" in message and "Traceback" not in message
    assert not list(local.rglob("trials"))
    assert not (tmp_path / "results" / "split" / "trials.parquet").exists()
    assert not list(local.rglob(".shared-check-*"))  # the check cleans up its marker


def test_scratch_folders_of_ended_workers_are_swept_and_live_ones_kept(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folders = {"pruned": ended.stdout.strip(), "running": str(os.getpid()), "starting": None}
    for name, pid in folders.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(b"x" * 1000)
        if pid is not None:
            (tmp_path / name / OWNER).write_text(pid)

    assert sweep_scratch(tmp_path) == ["pruned"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["running", "starting"]
    assert sweep_scratch(tmp_path / "missing") == []
