"""A trainable with ``worker.train``'s contract and no training, for ``run_study(trainable=...)``.

It writes the trial's ``status.json`` through ``Storage`` and reports one epoch whose numbers
depend on the variant and seed, so the driver's whole path (Tune's events, the records, Parquet,
MLflow, the report) runs as in a study while the trials cost next to nothing: what the driver
itself costs is what is measured (tests/orchestrate/test_mlflow_outage.py, bench/driver_scale.py).
"""

from __future__ import annotations


def stand_in_trainable():
    """The trainable, built in a function so that cloudpickle ships it by value to Ray's workers."""

    def train(tune_config: dict, *, plan, storage, threads: int, use_gpu: bool) -> None:
        import json
        import os
        import socket
        import time

        import ray
        from ray import tune

        began = time.time()
        trial = plan.resolve(tune_config)
        k = (trial.seed * 7 + trial.variant.index) % 10
        row = {"epoch": 1, "mAP": 0.20 + k / 100, "AP50": 0.40 + k / 100, "AP75": 0.18, "APs": 0.05, "APm": 0.2,
               "APl": 0.3, "AR100": 0.35, "loss": 1.5 - k / 20, "loss_cls": 0.8, "loss_box": 0.6, "loss_ctr": 0.1,
               "lr": 0.004, "imgs_per_s": 50.0 + k, "peak_mem_mb": 100.0 + k, "epoch_time_s": 0.01,
               "eval_time_s": 0.002}
        status = {"trial_id": trial.trial_id, "status": "completed", "pid": os.getpid(), "epochs_done": 1,
                  "starts": [{"epoch": 1, "pid": os.getpid(), "device": "cpu", "at": began,
                              "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}],
                  "history": [row]}
        storage.write_text(f"{storage.trial_path(trial.trial_id)}/status.json", json.dumps(status))
        tune.report({**row, "trial_id": trial.trial_id})

    return train


class PeakRss:
    """``with PeakRss() as rss:`` samples this process's resident memory; ``rss.before`` and ``rss.peak`` in MiB."""

    def __init__(self, every_s: float = 0.1):
        import psutil

        self.process, self.every_s = psutil.Process(), every_s
        self.before = self.peak = self._mib()

    def _mib(self) -> float:
        return self.process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self.done.wait(self.every_s):
            self.peak = max(self.peak, self._mib())

    def __enter__(self) -> PeakRss:
        import threading

        self.before = self.peak = self._mib()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self._mib())
