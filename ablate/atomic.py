"""Files written whole or not at all: a temporary file next to the target, renamed over it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path`` (``.<name>.<pid>.<thread>.tmp``) to write;
    it replaces ``path`` when the block ends, and is deleted if the block fails (a full disk, Ctrl-C),
    so a reader sees the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
