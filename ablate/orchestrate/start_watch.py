"""A study never waits silently for a worker that Ray cannot start (runs in the driver).

When a worker process dies at start (a missing interpreter, a runtime-env hook that points
it elsewhere, an environment that breaks it), Ray starts another, logs "have not registered
within the timeout" every minute, and Tune waits for ever with every trial PENDING.  The
``StartWatch`` notices: no trial running, some pending, nothing started or reported for
``timeout`` seconds, and (on a cluster that autoscales) the free resources would fit a
trial.  It then raises ``WorkerStartError`` with the cause from Ray's own log (the failed
worker's stderr, which the raylet keeps in ``raylet.err``); nothing is recorded for the
trials, so the same command resumes them once the cause is fixed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ablate.errors import AblateError

TIMEOUT_ENV = "ABLATE_WORKER_START_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0  # Ray's own worker register timeout is 60 s: by then it has logged why


class WorkerStartError(AblateError):
    """Ray could not start a trial's worker process; the study stops, nothing is lost."""

    exit_code = 1


def timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise AblateError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds (default {DEFAULT_TIMEOUT_S:g})") from None


def cause(logs: Path | None) -> str:
    """The last lines a failed worker start left in Ray's logs (its stderr), or '' when there are none."""
    if logs is None:
        return ""
    own = []  # the workers' stderr, in the raylet's error log: lines not in Ray's "[date time ...] " format
    for line in _read(logs / "raylet.err"):
        if line.strip() and not line.startswith("[") and line.strip() not in own:
            own.append(line.strip())
    if own:
        return " / ".join(own[-2:])
    late = [line for line in _read(logs / "raylet.out") if "have not registered within the timeout" in line]
    return late[-1].split(") ", 1)[-1].strip() if late else ""


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return []


def ray_logs() -> Path | None:
    """This node's Ray log folder (``/tmp/ray/session_*/logs``), where the driver runs."""
    try:
        import ray

        return Path(ray._private.worker._global_node.get_logs_dir_path())  # noqa: SLF001 -- no public accessor
    except Exception:  # noqa: BLE001 -- a message without the log line is still a message
        return None


class StartWatch:
    """Raises WorkerStartError once trials wait ``timeout`` seconds for a worker that never starts.

    Args:
        timeout: seconds with trials pending, none running and nothing started or reported.
        waiting_for_resources: True while the cluster cannot fit a trial now (an autoscaler may add nodes).
        logs: Ray's log folder, read for the cause when the time is up.
        clock: seconds, monotonic.
    """

    def __init__(self, timeout: float, *, waiting_for_resources: Callable[[], bool] = lambda: False,
                 logs: Callable[[], Path | None] = ray_logs, clock: Callable[[], float] = time.monotonic):
        self.timeout, self.waiting_for_resources, self.logs, self.clock = timeout, waiting_for_resources, logs, clock
        self.last = clock()

    def alive(self) -> None:
        """A trial started, reported or ended: workers do start."""
        self.last = self.clock()

    def check(self, statuses: Iterable[str]) -> None:
        """Called after each step of Tune's loop with every trial's status (PENDING, RUNNING, ...)."""
        statuses = list(statuses)
        now = self.clock()
        if "RUNNING" in statuses or "PENDING" not in statuses:
            self.last = now
            return
        if now - self.last < self.timeout:
            return
        if self.waiting_for_resources():  # for the autoscaler, not for a broken worker
            self.last = now
            return
        logs = self.logs()
        found = cause(logs)
        where = f" ({logs / 'raylet.err'})" if logs is not None else ""
        said = f"Ray's log{where} says: {found}" if found else f"Ray's logs{where} give no reason"
        raise WorkerStartError(
            f"no Ray worker started in {self.timeout:g} s: {statuses.count('PENDING')} trial(s) waiting and Ray could "
            f"not start a worker process for any. {said}. Ray starts each worker with this interpreter "
            f"({sys.executable}) unless a runtime-env hook changes it (RAY_RUNTIME_ENV_HOOK, or Ray's `uv run` hook: "
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV=1); fix what the log names, then run the same command again to resume "
            "(nothing was recorded for these trials)")
