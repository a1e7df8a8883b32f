"""Atomic per-epoch checkpoints with every state needed to resume bit-for-bit on CPU."""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["data"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "data" in state:
        generator.set_state(state["data"])


def _tmp(path: Path) -> Path:
    """A hidden temporary name next to ``path``, unique per process and thread (a worker's watchdog writes too)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextlib.contextmanager
def _replacing(tmp: Path, path: Path):
    """Rename ``tmp`` over ``path`` once the block wrote it; on any failure (a full disk, Ctrl-C) delete ``tmp``."""
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


class _Sink:
    """A file for torch.save that keeps the OSError of a failed write (ENOSPC: a full disk), which
    torch's zip writer turns into "RuntimeError: unexpected pos" without the errno."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    with _replacing(tmp, path), open(tmp, "wb") as f:
        sink = _Sink(f)
        try:
            torch.save(payload, sink)
        except RuntimeError:  # torch's zip writer reports a failed write as "unexpected pos": say why
            if sink.error is not None:
                raise sink.error from None
            raise


def save_json(path: Path, data: Any) -> None:
    """JSON written the same atomic way as the checkpoint."""
    tmp = _tmp(path)
    with _replacing(tmp, path):
        tmp.write_text(json.dumps(data))


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are numpy objects
