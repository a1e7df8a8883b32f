"""SIGTERM is a stop, not a crash: how Slurm, Kubernetes and ``timeout`` preempt a job.

``TERM.install()`` (``ablate run`` calls it first, and again after ``ray.init``, which puts its
own handler in, one that exits at once and makes Ray print a C++ stack dump) makes SIGTERM
set a flag and nothing else: no exception is raised in the middle of a Parquet write or an
MLflow call.  The run then stops as after Ctrl-C: Tune is told to stop its trials (the
``stopper`` of the fit in progress), no new round starts, the records are flushed, and the
command exits with 143 (128 + SIGTERM) and says how to resume.  A Slurm or ``timeout`` SIGTERM
reaches every process of the job, Ray's too: a local Ray's processes block it (local_ray.ray_init),
so Ray stays up while the driver stops the study.  If the stop takes longer than ``GRACE_S``
(Kubernetes kills at 30 s; a joined cluster's processes are not ablate's to shield), what is
recorded is flushed and the process exits 143 at once: every trial folder keeps its last
checkpoint, so the same command resumes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

GRACE_S = float(os.environ.get("ABLATE_TERM_GRACE_S", "20"))
EXIT_CODE = 128 + signal.SIGTERM


class Termination:
    """SIGTERM's flag, and the grace period's watch.

    The handler runs in the main thread between two bytecodes of whatever it was doing, and a second
    SIGTERM can run it again inside the first (``timeout`` and Slurm send one to the process and one to
    its group, microseconds apart): it takes no lock and starts no thread, or the two would deadlock
    the main thread for good (as ``threading.Event.set`` did, holding its condition's lock:
    tests/orchestrate/test_terminate.py).  It stores the time and sets the stopper's flag, plain
    assignments; a daemon thread, started by ``install``, watches that time and ends the run once the
    grace period is over.
    """

    def __init__(self):
        self._at: float | None = None  # when SIGTERM came (monotonic), or None
        self.stopper = None  # the Tune Stopper of the fit in progress (tuner.fit sets it)
        self.on_expire: Callable[[], None] | None = None  # flushes the records (run_study sets it)
        self._watch: threading.Thread | None = None

    @property
    def requested(self) -> bool:
        return self._at is not None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            signal.signal(signal.SIGTERM, self._handle)
            if self._watch is None:
                self._watch = threading.Thread(target=self._watch_grace, name="ablate-sigterm-grace", daemon=True)
                self._watch.start()

    def _handle(self, signum, frame) -> None:
        if self._at is None:
            self._at = time.monotonic()
        if self.stopper is not None:
            self.stopper.requested = True

    def _watch_grace(self) -> None:
        while True:
            at = self._at
            if at is not None and time.monotonic() - at >= GRACE_S:
                self._expire()
            time.sleep(0.1)

    def _expire(self) -> None:
        try:
            if self.on_expire is not None:
                self.on_expire()
        finally:
            print(f"terminated (SIGTERM): the stop took over {GRACE_S:g} s, so the run ends now; what is recorded "
                  "is kept: run the same command again to resume", file=sys.stderr, flush=True)
            os._exit(EXIT_CODE)

    def reset(self) -> None:
        """For a new run in the same process (tests)."""
        self._at = self.stopper = self.on_expire = None


TERM = Termination()
