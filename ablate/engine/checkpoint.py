"""Atomic per-epoch checkpoints with every state needed to resume bit-for-bit on CPU."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.atomic import atomic_path

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
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        sink = _Sink(f)
        try:
            torch.save(payload, sink)
        except RuntimeError:  # torch's zip writer reports a failed write as "unexpected pos": say why
            if sink.error is not None:
                raise sink.error from None
            raise


def save_json(path: Path, data: Any) -> None:
    """JSON written the same atomic way as the checkpoint."""
    with atomic_path(path) as tmp:  # per thread too: a worker's watchdog writes status.json
        tmp.write_text(json.dumps(data))


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are numpy objects
