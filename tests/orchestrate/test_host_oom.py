"""A trial that would exhaust the host's memory: Ray's memory monitor kills its worker, the trial is
recorded as failed: out of memory (host), it is not retried in a loop, and the study goes on.

The threshold is lowered for the test (RAY_memory_usage_threshold, read when this test's local Ray
starts) to what the machine uses now plus 3 GiB, and the trial allocates past it in 256 MiB steps:
the machine never comes near its real limit.  A stand-in trainable (``run_study(trainable=...)``):
this is about the driver and Ray, not the engine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ablate.orchestrate.run import run_study

pytestmark = pytest.mark.slow

GIB = 1 << 30


def _meminfo() -> tuple[int, int]:
    """(total, available) bytes, as Ray's memory monitor reads them (without a cgroup limit)."""
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()}
    return fields["MemTotal"], fields["MemAvailable"]


def _hog_trainable(limit_bytes: int):
    """Variant 1 allocates until killed (or ``limit_bytes``, then reports: the test fails); the others report."""

    def train(tune_config: dict, *, plan, storage, threads: int, use_gpu: bool) -> None:
        import json
        import os
        import socket
        import time

        import ray
        from ray import tune

        trial = plan.resolve(tune_config)
        began = time.time()
        status = {"trial_id": trial.trial_id, "status": "running", "pid": os.getpid(), "epochs_done": 0,
                  "starts": [{"epoch": 1, "pid": os.getpid(), "device": "cpu", "at": began,
                              "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}],
                  "history": []}
        path = f"{storage.trial_path(trial.trial_id)}/status.json"
        previous = storage.read_status(trial.trial_id)
        if previous.get("status") == "failed":  # ablate marked it failed (as after a hang): return at once
            return
        storage.write_text(path, json.dumps(status))
        if trial.variant.index == 1:
            held = []
            while sum(len(b) for b in held) < limit_bytes:
                held.append(bytearray(256 << 20))  # zero-filled: really resident
                time.sleep(0.05)
            time.sleep(20)
        row = {"epoch": 1, "mAP": 0.2, "AP50": 0.4, "APs": 0.05, "APm": 0.2, "APl": 0.3, "loss": 1.0,
               "imgs_per_s": 50.0, "peak_mem_mb": 100.0, "epoch_time_s": 0.01}
        status.update(status="completed", epochs_done=1, history=[row])
        storage.write_text(path, json.dumps(status))
        tune.report({**row, "trial_id": trial.trial_id})

    return train


def test_a_trial_that_would_exhaust_host_memory_is_recorded_as_such_not_retried_and_the_study_goes_on(
        study_file, tmp_path, monkeypatch):
    total, available = _meminfo()
    threshold = min(0.9, (total - available + 3 * GIB) / total)
    monkeypatch.setenv("RAY_memory_usage_threshold", f"{threshold:.3f}")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "100")
    path = study_file("oom", train={"epochs": 1}, factors={"loss.box": ["diou", "ciou"]}, max_failures=2)
    limit = int(threshold * total - (total - available)) + 4 * GIB  # past the threshold
    outcome = run_study(path, [], results_root=tmp_path / "results", trainable=_hog_trainable(limit))
    table = pd.read_parquet(tmp_path / "results" / "oom" / "trials.parquet").set_index("variant")
    print(table[["variant_name", "status", "reason", "retries"]].to_string())
    hog = table.loc[1]
    assert hog.status == "failed" and hog.reason.startswith("out of memory (host)"), hog.reason
    assert hog.retries == 0, hog.retries  # not retried into the same wall
    assert (table.drop(index=1).status == "completed").all()  # the study went on
    assert outcome.counts["failed"] == 1 and outcome.counts["completed"] == 2
