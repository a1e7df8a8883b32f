"""Optimisers and the training-loop regularisers: EMA, SWA, clipping, AMP.

Everything here wraps torch: ``torch.optim`` for the optimisers,
``torch.optim.swa_utils.AveragedModel`` for EMA and SWA,
``clip_grad_norm_`` for clipping, ``torch.autocast`` + ``GradScaler`` for AMP.
What ablate adds is the parameter grouping (no weight decay on norm and bias
parameters, as torchvision's classification references allow) and a clear notice
when AMP is asked for on a CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ablate.tricks.registry import Params, Trick

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


class OptimizerParams(Params):
    lr: float = Field(0.01, gt=0, description="base lr for train.lr_scaling.base_batch_size images per step")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty (decoupled for adamw)")
    norm_bias_decay: bool = Field(
        True, description="false exempts normalisation weights and all biases from weight decay"
    )


class SgdParams(OptimizerParams):
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum factor")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SgdParams:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: true needs momentum > 0")
        return self


class AdamParams(OptimizerParams):
    lr: float = Field(1e-3, gt=0, description="base lr for train.lr_scaling.base_batch_size images per step")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")
    betas: tuple[float, float] = Field((0.9, 0.999), description="running-average factors, each in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="added to the denominator for stability")

    @model_validator(mode="after")
    def _betas_range(self) -> AdamParams:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {list(self.betas)}")
        return self


class AdamWParams(AdamParams):
    weight_decay: float = Field(0.05, ge=0, description="decoupled weight decay (Loshchilov & Hutter)")


def param_groups(model: nn.Module, weight_decay: float, norm_bias_decay: bool) -> list[dict]:
    """One group with weight decay and, unless ``norm_bias_decay``, one without it."""
    if norm_bias_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    exempt: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS) or name == "bias":
                exempt.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in exempt], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0},
    ]


def sgd(*, lr, weight_decay, norm_bias_decay, momentum, nesterov, model, lr_effective) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, norm_bias_decay)
    return torch.optim.SGD(groups, lr=lr_effective, momentum=momentum, nesterov=nesterov)


def adam(*, lr, weight_decay, norm_bias_decay, betas, eps, model, lr_effective) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, norm_bias_decay)
    return torch.optim.Adam(groups, lr=lr_effective, betas=betas, eps=eps)


def adamw(*, lr, weight_decay, norm_bias_decay, betas, eps, model, lr_effective) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, norm_bias_decay)
    return torch.optim.AdamW(groups, lr=lr_effective, betas=betas, eps=eps)


OPTIMIZERS: dict[str, Trick] = {
    "sgd": Trick(sgd, SgdParams, "Stochastic gradient descent with (Nesterov) momentum."),
    "adam": Trick(adam, AdamParams, "Adam (Kingma & Ba) with L2 weight decay."),
    "adamw": Trick(adamw, AdamWParams, "AdamW: Adam with decoupled weight decay."),
}


# ---- regularisers and loop options: study sections, one entry each ----------


class EmaParams(Params):
    enabled: bool = Field(False, description="keep an exponential moving average of the weights and evaluate it")
    decay: float = Field(0.9998, gt=0, lt=1, description="per-iteration decay of the average")


class SwaParams(Params):
    enabled: bool = Field(False, description="average the weights over the last `epochs` epochs and evaluate that")
    epochs: int = Field(3, ge=1, description="how many final epochs are averaged (one snapshot per epoch)")
    lr: float | None = Field(None, gt=0, description="constant lr during the SWA epochs; null keeps the schedule")


class ClipParams(Params):
    max_norm: float | None = Field(None, gt=0, description="clip the global gradient norm to this; null: off")
    norm_type: float = Field(2.0, gt=0, description="p of the p-norm (2: Euclidean)")


class AmpParams(Params):
    enabled: bool = Field(False, description="mixed precision on CUDA; a no-op with a notice on CPU")
    dtype: Literal["fp16", "bf16"] = Field("fp16", description="fp16 uses a gradient scaler; bf16 does not need one")


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


REGULARISERS: dict[str, Trick] = {
    "ema": Trick(ema, EmaParams, "Exponential moving average of the weights, evaluated instead of the raw weights."),
    "swa": Trick(swa, SwaParams, "Stochastic weight averaging over the last epochs (Izmailov et al.)."),
    "clip_grad": Trick(clip_grad, ClipParams, "Clip the global gradient norm before each optimiser step."),
    "amp": Trick(amp, AmpParams, "Automatic mixed precision (fp16 with loss scaling, or bf16) on CUDA."),
}
