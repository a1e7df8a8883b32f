"""The training-loop options: EMA and SWA (``AveragedModel``), gradient clipping, AMP."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema(*, enabled: bool, decay: float, model: nn.Module) -> AveragedModel | None:
    """An EMA copy of ``model`` (buffers averaged too), or None when off."""
    if not enabled:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def swa(*, enabled: bool, epochs: int, lr: float | None, model: nn.Module) -> AveragedModel | None:
    """An equal-weight average of ``model`` (buffers averaged too), or None when off."""
    return AveragedModel(model, use_buffers=True) if enabled else None


def clip_grad(*, max_norm: float | None, norm_type: float) -> Callable[[Iterable[torch.Tensor]], float | None]:
    """A function that clips the gradients in place and returns their norm before clipping."""

    def clip(params: Iterable[torch.Tensor]) -> float | None:
        if max_norm is None:
            return None
        return float(nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type))

    return clip


@dataclass
class Amp:
    """What the loop needs for mixed precision; ``notice`` says why it is off."""

    autocast: Callable[[], contextlib.AbstractContextManager]
    scaler: torch.amp.GradScaler
    active: bool
    notice: str | None


def amp(*, enabled: bool, dtype: str, device: torch.device | str) -> Amp:
    device = torch.device(device)
    if not enabled:
        return Amp(contextlib.nullcontext, torch.amp.GradScaler("cpu", enabled=False), False, None)
    if device.type != "cuda":
        notice = f"AMP requested but the device is {device.type}: running in fp32 (AMP is a no-op off CUDA)"
        return Amp(contextlib.nullcontext, torch.amp.GradScaler("cpu", enabled=False), False, notice)
    torch_dtype = torch.float16 if dtype == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == "fp16")
    return Amp(lambda: torch.autocast("cuda", dtype=torch_dtype), scaler, True, None)
