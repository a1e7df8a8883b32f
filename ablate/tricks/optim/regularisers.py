"""The training-loop options: EMA and SWA (``AveragedModel``), gradient clipping, AMP."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_decay(decay: float, warmup: int, updates: float) -> float:
    """The decay of update number ``updates`` (1, 2, ...): ``decay * (1 - exp(-updates / warmup))``, or ``decay``.

    The ramp is YOLOv5's ``ModelEMA`` and mmdetection's ``ExpMomentumEMA`` (gamma 2000): early
    averages follow the model instead of holding on to its random initial weights, which a constant
    0.9998 keeps at 80% weight after 1,000 iterations (a short study evaluates little else).
    """
    return decay * (1 - math.exp(-updates / warmup)) if warmup else decay


def ema(*, enabled: bool, decay: float, warmup: int, model: nn.Module) -> AveragedModel | None:
    """An EMA copy of ``model`` (buffers averaged too), its decay ramped up over ``warmup`` updates; None when off."""
    if not enabled:
        return None

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        d = ema_decay(decay, warmup, float(n_averaged))  # n_averaged: updates before this one (the first copies)
        get_ema_multi_avg_fn(d)(averaged, current, n_averaged)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


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
