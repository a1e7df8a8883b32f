"""Learning-rate schedules and warmups as per-iteration multipliers.

A schedule maps a global iteration to a factor of ``train.lr_effective``; the
warmup multiplies it during the first ``iters`` iterations.  The functions are
pure, so they can be sampled in tests and rebuilt from the config on resume;
only ``plateau`` keeps state (its best metric), exposed as a state dict.
Values match torch's own schedulers (CosineAnnealingLR, CosineAnnealingWarmRestarts,
OneCycleLR) sampled per iteration; the tests check that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from ablate.metrics import HIGHER_IS_BETTER, METRICS, check_metric
from ablate.tricks.registry import NoParams, Params, Trick

# preset -> (epochs, decay epochs), as in mmdetection's 1x/2x/3x configs.
STEP_PRESETS: dict[str, tuple[int, list[int]]] = {
    "1x": (12, [8, 11]),
    "2x": (24, [16, 22]),
    "3x": (36, [28, 34]),
}


class Schedule:
    """A per-iteration LR factor; ``observe`` feeds the validation metric."""

    def __init__(self, fn: Callable[[int], float]):
        self.fn = fn

    def __call__(self, it: int) -> float:
        return self.fn(it)

    def observe(self, metrics: dict[str, float]) -> None:
        """Called after each epoch's evaluation; stateless schedules ignore it."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# ---- parameters -------------------------------------------------------------


class StepParams(Params):
    milestones: list[int] | None = Field(
        None, description="epochs after which the lr is multiplied by gamma; "
        "null: the usual points (2/3 and 11/12 of the epochs, e.g. [8, 11] of 12)"
    )
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor at each milestone")
    preset: Literal["1x", "2x", "3x"] | None = Field(
        None, description="model-zoo schedule: 1x = 12 epochs [8, 11], 2x = 24 [16, 22], "
        "3x = 36 [28, 34]; sets train.epochs and the milestones"
    )

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (any(m <= 0 for m in v) or v != sorted(set(v))):
            raise ValueError(f"milestones must be positive and strictly increasing, got {v}")
        return v


class CosineParams(Params):
    min_lr: float = Field(0.0, ge=0, description="floor of the cosine (absolute lr)")


class CosineRestartsParams(Params):
    period: int = Field(4, ge=1, description="length of the first cosine cycle in epochs")
    mult: int = Field(1, ge=1, description="each cycle is `mult` times longer than the last")
    min_lr: float = Field(0.0, ge=0, description="floor of each cycle (absolute lr)")


class OneCycleParams(Params):
    pct_start: float = Field(0.3, gt=0, lt=1, description="share of iterations spent rising")
    div_factor: float = Field(25.0, gt=1, description="start lr = lr / div_factor")
    final_div_factor: float = Field(1e4, gt=1, description="end lr = start lr / final_div_factor")


class PlateauParams(Params):
    metric: str = Field("mAP", description=f"validation metric watched; one of {', '.join(METRICS)}")
    patience: int = Field(2, ge=0, description="epochs without improvement before decaying")
    factor: float = Field(0.1, gt=0, lt=1, description="multiplier applied at each decay")
    min_lr: float = Field(0.0, ge=0, description="the lr never goes below this (absolute)")

    _known_metric = field_validator("metric")(classmethod(lambda cls, v: check_metric(v)))


class WarmupParams(Params):
    iters: int = Field(500, ge=0, description="warmup length in iterations (0: no warmup)")
    ratio: float = Field(0.001, gt=0, le=1, description="lr factor at iteration 0")


# ---- schedules ----------------------------------------------------------------


def step_milestones(epochs: int, milestones: list[int] | None, preset: str | None) -> list[int]:
    """The decay epochs actually used (a preset's, the given ones, or the usual ones)."""
    if preset is not None:
        return STEP_PRESETS[preset][1]
    if milestones is not None:
        return milestones
    return sorted({m for m in (epochs * 8 // 12, epochs * 11 // 12) if 0 < m < epochs})


def step(*, milestones, gamma, preset, epochs, iters_per_epoch, base_lr) -> Schedule:
    points = [m * iters_per_epoch for m in step_milestones(epochs, milestones, preset)]
    return Schedule(lambda it: gamma ** sum(it >= p for p in points))


def cosine(*, min_lr, epochs, iters_per_epoch, base_lr) -> Schedule:
    total, floor = epochs * iters_per_epoch, min_lr / base_lr
    return Schedule(lambda it: floor + (1 - floor) * (1 + math.cos(math.pi * min(it, total) / total)) / 2)


def cosine_restarts(*, period, mult, min_lr, epochs, iters_per_epoch, base_lr) -> Schedule:
    first, floor = period * iters_per_epoch, min_lr / base_lr

    def fn(it: int) -> float:
        length, t = first, it
        while t >= length:  # walk to the cycle that holds `it`
            t, length = t - length, length * mult
        return floor + (1 - floor) * (1 + math.cos(math.pi * t / length)) / 2

    return Schedule(fn)


def onecycle(*, pct_start, div_factor, final_div_factor, epochs, iters_per_epoch, base_lr) -> Schedule:
    total = epochs * iters_per_epoch
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)
    peak = float(pct_start * total) - 1  # torch.optim.lr_scheduler.OneCycleLR's phase end

    def anneal(a: float, b: float, pct: float) -> float:
        return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2

    def fn(it: int) -> float:
        if it <= peak:  # peak == 0 (pct_start * total == 1): torch divides 0 by 0; start low
            return anneal(start, 1.0, it / peak if peak > 0 else 0.0)
        # total - 1 - peak = total * (1 - pct_start) > 0, as pct_start < 1
        return anneal(1.0, end, min(1.0, (it - peak) / (total - 1 - peak)))

    return Schedule(fn)


class Plateau(Schedule):
    """Decay by ``factor`` when ``metric`` has not improved for ``patience`` epochs."""

    def __init__(self, metric: str, patience: int, factor: float, floor: float):
        super().__init__(lambda it: max(self.scale, floor))
        self.metric, self.patience, self.factor = metric, patience, factor
        self.sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0
        self.best, self.bad_epochs, self.scale = -math.inf, 0, 1.0

    def observe(self, metrics: dict[str, float]) -> None:
        value = self.sign * metrics[self.metric]
        if value > self.best:
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale, self.bad_epochs = self.scale * self.factor, 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs, self.scale = state["best"], state["bad_epochs"], state["scale"]


def plateau(*, metric, patience, factor, min_lr, epochs, iters_per_epoch, base_lr) -> Plateau:
    return Plateau(metric, patience, factor, min_lr / base_lr)


def constant(*, epochs, iters_per_epoch, base_lr) -> Schedule:
    return Schedule(lambda it: 1.0)


# ---- warmups --------------------------------------------------------------------


def linear_warmup(*, iters: int, ratio: float) -> Callable[[int], float]:
    return lambda it: 1.0 if it >= iters else ratio + (1 - ratio) * it / iters


def constant_warmup(*, iters: int, ratio: float) -> Callable[[int], float]:
    return lambda it: 1.0 if it >= iters else ratio


def exp_warmup(*, iters: int, ratio: float) -> Callable[[int], float]:
    return lambda it: 1.0 if it >= iters else ratio ** (1 - it / iters)


def no_warmup() -> Callable[[int], float]:
    return lambda it: 1.0


SCHEDULES: dict[str, Trick] = {
    "step": Trick(step, StepParams, "Multiply the lr by gamma at given epochs (presets 1x/2x/3x)."),
    "cosine": Trick(cosine, CosineParams, "Cosine decay from the lr to min_lr over all iterations."),
    "cosine_restarts": Trick(cosine_restarts, CosineRestartsParams, "Cosine cycles restarting every `period` epochs (SGDR)."),
    "onecycle": Trick(onecycle, OneCycleParams, "One cycle: cosine rise to the lr, then cosine fall far below it."),
    "plateau": Trick(plateau, PlateauParams, "Decay when the validation metric stops improving for `patience` epochs."),
    "constant": Trick(constant, NoParams, "Keep the lr fixed (after warmup)."),
}

WARMUPS: dict[str, Trick] = {
    "linear": Trick(linear_warmup, WarmupParams, "Ramp the lr linearly from ratio x lr to lr over `iters`."),
    "constant": Trick(constant_warmup, WarmupParams, "Hold the lr at ratio x lr for `iters`, then jump to lr."),
    "exp": Trick(exp_warmup, WarmupParams, "Ramp the lr exponentially from ratio x lr to lr over `iters`."),
    "none": Trick(no_warmup, NoParams, "No warmup."),
}
