"""The optimisers' and loop options' user-facing parameters (no torch here, see ``registry.Trick``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ablate.tricks.registry import Params


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


class EmaParams(Params):
    enabled: bool = Field(False, description="keep an exponential moving average of the weights and evaluate it")
    decay: float = Field(0.9998, gt=0, lt=1, description="per-iteration decay of the average, once ramped up")
    warmup: int = Field(2000, ge=0, description="iterations over which the decay ramps up: decay x (1 - exp(-t / "
                        "warmup)) at update t (YOLOv5, mmdetection's ExpMomentumEMA: 2000); 0: constant decay")


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
