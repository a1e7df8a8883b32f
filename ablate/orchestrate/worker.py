"""The Ray Tune trainable, run in the Ray worker process: one ablate trial, reported epoch by epoch.

The trial's folder (``<storage>/<study>/trials/<trial id>/``, see storage.py) is its
checkpoint: when Ray retries a crashed trial, or a killed study runs again, ``run_trial``
resumes from the last epoch written there.  A deterministic failure (non-finite
loss, OOM, bad data, a bad path) is written to the folder's ``status.json`` and the
function returns normally, so Ray does not retry what would fail the same way.  With
``hang_timeout_s`` a watchdog ends a worker whose trial stops finishing epochs (worker_watchdog.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ablate.errors import AblateError
from ablate.orchestrate.storage import Storage
from ablate.study.expand import Trial, sampled_variant, trial_id
from ablate.study.schema import Study

# What ``train`` imports before a trial's first step (3-4 s of CPU: torch, torchvision with torch._dynamo, the
# engine, Ray Tune's function trainable), for a local Ray's workers to import as they start (local_ray.Workers)
TRAIN_IMPORTS = ("torch", "torchvision", "ray.tune.trainable.function_trainable", "ablate.engine.trial",
                 "ablate.data.build", "ablate.models")


@dataclass(frozen=True)
class Plan:
    """What the driver and every worker agree on: how a Tune config names an ablate trial."""

    study: Study
    lookup: dict[str, Trial]  # trial id -> Trial (grid, one_at_a_time, cumulative)
    baseline_id: str
    teachers: dict[str, str] = field(default_factory=dict)  # student trial id -> teacher's (train.distill)

    def resolve(self, tune_config: dict, index: int = -1) -> Trial:
        """The ablate trial behind a Ray Tune config: ``{"trial_id": ...}`` or Optuna's sampled values."""
        if "trial_id" in tune_config:
            return self.lookup[tune_config["trial_id"]]
        from ablate.orchestrate.search import values

        variant = sampled_variant(self.study, index, values(self.study, tune_config))
        seed = self.study.seeds[0]
        tid = trial_id(variant.config, seed)
        if tid == self.baseline_id:
            variant = self.lookup[tid].variant
        return Trial(tid, variant, seed)


def train(tune_config: dict, *, plan: Plan, storage: Storage, threads: int, use_gpu: bool) -> None:
    """Run (or resume) one trial, reporting every epoch's metrics to Ray Tune."""
    # imported before this function began: at the worker's start (local_ray.Workers), or by a reused actor's last trial
    preloaded = all(name in sys.modules for name in TRAIN_IMPORTS)
    import torch
    from ray import tune

    from ablate.engine import checkpoint
    from ablate.engine.trial import STATUS, read_status, run_trial
    from ablate.errors import DISK_ERRNOS, StorageError, TrialFailed
    from ablate.orchestrate.worker_watchdog import Watchdog, hang_for_tests, hung_status

    began = time.time()  # the worker process is up and this module imported (bench/orchestration.py)
    trial = plan.resolve(tune_config)
    out = storage.pull(trial.trial_id)
    if read_status(out).get("status") == "failed":  # Ray's retry of a trial that stopped itself (hung): done
        storage.push(trial.trial_id, done=True)
        return
    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"

    import socket

    import ray

    where = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "at": began,
             "preloaded": preloaded}

    def report(row: dict, _out: Path) -> None:
        if watchdog is not None:
            watchdog.beat(int(row["epoch"]))
        with watchdog.paused_while() if watchdog is not None else contextlib.nullcontext():
            storage.push(trial.trial_id)  # stored before it is reported: a lost node loses no reported epoch
            tune.report({**row, "trial_id": trial.trial_id})

    def on_hung(reason: str) -> None:
        checkpoint.save_json(out / STATUS, hung_status(out, trial.trial_id, reason))
        storage.push(trial.trial_id)

    timeout = plan.study.hang_timeout_s
    watchdog = Watchdog(timeout, on_hung) if timeout is not None else None
    try:
        teacher = plan.teachers.get(trial.trial_id)  # completed before this trial was started (teachers.py)
        run_trial(trial.variant.config, seed=trial.seed, out_dir=out, device=device, threads=threads,
                  teacher=storage.pull(teacher) if teacher is not None else None, on_epoch=report,
                  log=lambda line: print(f"[{trial.trial_id}] {line}", flush=True), where=where,
                  progress=hang_for_tests(trial.trial_id))
    except TrialFailed:
        pass  # run_trial wrote status.json with the reason
    except OSError as e:  # the trial's folder is full or read-only: the driver stops the study (record.py)
        if e.errno not in DISK_ERRNOS:
            raise
        raise StorageError(f"{os.strerror(e.errno)}: cannot write the trial folder {out}") from None
    except AblateError as e:  # bad data or a bad path: found while building, before any epoch
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.save_json(out / STATUS, {"trial_id": trial.trial_id, "status": "failed",
                                            "reason": str(e).strip().splitlines()[-1], "epochs_done": 0, "history": []})
    finally:
        if watchdog is not None:
            watchdog.stop()
    storage.push(trial.trial_id, done=True)
