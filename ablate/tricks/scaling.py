"""Scale the learning rate with the total batch size (Goyal et al., 2017).

``lr_effective = lr * f(batch_size * devices * accumulate / base_batch_size)``,
the rule mmdetection applies with ``auto_scale_lr``: 8 devices x 2 images at
lr 0.02 becomes 0.01 on 4 x 2 with the linear rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ablate.tricks.registry import NoParams, Trick, lookup


def linear() -> Callable[[float], float]:
    return lambda ratio: ratio


def sqrt() -> Callable[[float], float]:
    return math.sqrt


def none() -> Callable[[float], float]:
    return lambda ratio: 1.0


LR_SCALING: dict[str, Trick] = {
    "linear": Trick(linear, NoParams, "lr grows in proportion to the total batch (Goyal et al.)."),
    "sqrt": Trick(sqrt, NoParams, "lr grows with the square root of the total batch (for Adam-like optimisers)."),
    "none": Trick(none, NoParams, "lr is used as written, whatever the batch."),
}


def lr_effective(
    lr: float, *, rule: str, base_batch_size: int, batch_size: int, devices: int = 1, accumulate: int = 1
) -> float:
    """The lr the optimiser really uses.

    Args:
        lr: the lr written in the study, meant for ``base_batch_size`` images per step.
        rule: a name in ``LR_SCALING``.
        batch_size: images per device per forward pass; ``devices`` and
            ``accumulate`` multiply it into the images per optimiser step.

    Example:
        >>> lr_effective(0.02, rule="linear", base_batch_size=16, batch_size=2, devices=4)
        0.01
    """
    ratio = batch_size * devices * accumulate / base_batch_size
    return lr * lookup(LR_SCALING, rule, "lr scaling rule").build()(ratio)
