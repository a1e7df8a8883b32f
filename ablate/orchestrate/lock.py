"""One `ablate run` per study folder at a time: an advisory file lock.

``fcntl.flock`` is released by the kernel when its holder dies, even by ``kill -9``,
so a crashed driver never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ablate.errors import AblateError

LOCK = ".lock"


class StudyLocked(AblateError):
    """Another driver holds the study's lock."""


@contextlib.contextmanager
def study_lock(folder: Path, study: str):
    """Hold ``folder/.lock`` for the block; raise ``StudyLocked`` naming the holder if it is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    handle = open(path, "a+")  # noqa: SIM115 -- held for the block, closed in finally
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StudyLocked(f"study '{study}' is already running ({holder} holds {path}); wait for it to "
                              "finish or stop it first -- two runs of one study would train the same trials twice") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        yield
    finally:
        handle.close()


def taken(folder: Path) -> bool:
    """Whether another driver holds ``folder/.lock`` now (a probe: ``study_lock`` is what decides)."""
    path = folder / LOCK
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False
