"""``hang_timeout_s``: a trial that finishes no epoch for that long is stopped and recorded as hung.

The watchdog is a thread of the trial's own worker process.  A hang may sit anywhere, C
code included (a deadlocked DataLoader worker, a collective waiting for a dead peer), so
the watchdog never waits on the training thread: when the time is up it writes the
trial's ``status.json`` as failed (``hung: no epoch reported within N s (epoch E)``),
pushes it to an object store, and ends the process with ``os._exit``.  Ray sees a dead
worker and retries the trial; ``worker.train`` finds the failed status.json and returns
at once, so the driver records ``failed: hung ...`` from that file, as it records any
deterministic failure (not retried again, not rerun on resume).

Why not in the driver: Ray Tune has no per-trial inactivity limit.  Stoppers and
schedulers are only asked when a trial reports (a hung trial never does); its
``TimeoutStopper`` and ``time_budget_s`` end the whole experiment; and a Callback could
only stop a trial by killing its actor through Tune's private handles, after which the
retry would hang again.  The worker knows which epoch it is in and owns its folder.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Test seam, read by worker.train only: "<trial id>@<epoch>" makes that trial sleep forever at
# that epoch's first iteration, as a deadlocked data loader would (tests/orchestrate/test_faults.py).
TEST_HANG = "ABLATE_TEST_HANG"


class Watchdog:
    """Ends this process (after ``on_hung(reason)``) once ``timeout`` seconds pass without ``beat``.

    Args:
        timeout: seconds allowed between the start and the first epoch, and between epochs.
        on_hung: writes the trial's failed status; called once, from the watchdog's thread.
    """

    def __init__(self, timeout: float, on_hung: Callable[[str], None]):
        self.timeout, self.on_hung = timeout, on_hung
        self.lock = threading.Lock()
        self.deadline = time.monotonic() + timeout
        self.epoch = 1  # the epoch under way
        self.paused = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="ablate-hang-watchdog", daemon=True)
        self.thread.start()

    def beat(self, epochs_done: int) -> None:
        """An epoch finished: the clock starts again for the next one."""
        with self.lock:
            self.epoch = epochs_done + 1
            self.deadline = time.monotonic() + self.timeout

    @contextlib.contextmanager
    def paused_while(self):
        """Not counted: reporting an epoch waits on the driver, which may be slow (MLflow) but is not the trial."""
        with self.lock:
            self.paused = True
        try:
            yield
        finally:
            with self.lock:
                self.paused = False
                self.deadline = time.monotonic() + self.timeout

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        while not self.stopped.wait(min(1.0, self.timeout / 10)):
            with self.lock:
                late = not self.paused and time.monotonic() > self.deadline
                epoch = self.epoch
            if late:
                try:
                    self.on_hung(f"hung: no epoch reported within {self.timeout:g} s (epoch {epoch})")
                finally:
                    os._exit(1)  # noqa: SLF001 -- the training thread may be stuck in C code; only this ends it


def hung_status(out: Path, trial_id: str, reason: str) -> dict:
    """The trial's status.json, as run_trial last wrote it (history and starts kept), now failed with ``reason``."""
    from ablate.engine.trial import read_status

    return {"epochs_done": 0, "history": [], **read_status(out), "trial_id": trial_id, "status": "failed",
            "reason": reason, "pid": os.getpid()}


def hang_for_tests(trial_id: str) -> Callable[[dict], None] | None:
    """The ``progress`` hook of the TEST_HANG seam for ``trial_id``, or None (always, outside tests)."""
    value = os.environ.get(TEST_HANG, "")
    if not value.startswith(f"{trial_id}@"):
        return None
    epoch = int(value.split("@", 1)[1])

    def hang(row: dict) -> None:
        if row["epoch"] == epoch:
            while True:
                time.sleep(60)

    return hang
