"""``train.compile``: torch.compile of the detector's backbone (body and neck) and head, in place.

``nn.Module.compile`` compiles a module's ``forward`` where it stands, so parameter names (and so
checkpoints, EMA and resume) are those of the eager model.  The losses (the head's
``compute_loss``), the anchor matching and the post-processing stay eager: they are data-dependent
and would recompile per batch.  Inductor needs a C++ compiler on CPU and Triton on CUDA; without one
the model stays eager and the trial says so, instead of failing at its first batch.
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn


def compiler_missing(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here, or None."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    if not any(shutil.which(n) for n in names):
        return f"no C++ compiler ({', '.join(names)}) on PATH"
    return None


def compile_model(detector: nn.Module, device: torch.device) -> list[str]:
    """Compile the backbone and head of ``detector`` (an ``ablate.models.Detector``); the notices to print."""
    why = compiler_missing(device)
    if why is not None:
        return [f"train.compile: {why}, which torch.compile needs on {device.type}: training eagerly"]
    model = detector.model
    for part in (model.backbone, model.head):
        part.compile()
    return []
