"""The losses' user-facing parameters: typed, documented, closed (no torch here, see ``registry.Trick``)."""

from __future__ import annotations

from pydantic import Field

from ablate.tricks.registry import Params


class BoxParams(Params):
    """Parameters shared by every box loss."""

    weight: float = Field(1.0, ge=0.0, description="multiplier of this loss in the total, >= 0")


class SmoothL1Params(BoxParams):
    """Smooth L1 parameters."""

    beta: float = Field(1 / 9, gt=0.0, description="L1/L2 switch point in delta units, > 0; 1/9 as in RetinaNet")


class BalancedL1Params(BoxParams):
    """Balanced L1 parameters; defaults are Libra R-CNN's."""

    alpha: float = Field(0.5, gt=0.0, description="gradient boost of inliers (diff < beta), > 0")
    gamma: float = Field(1.5, gt=0.0, description="gradient of outliers (diff >= beta), > 0")
    beta: float = Field(1.0, gt=0.0, description="inlier/outlier switch point in delta units, > 0")


class FocalEIoUParams(BoxParams):
    """Focal-EIoU parameters; default is the paper's."""

    gamma: float = Field(0.5, ge=0.0, description="exponent of the IoU re-weighting, >= 0; 0 is plain EIoU")


class ClsParams(Params):
    """Parameters shared by every classification loss."""

    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="label smoothing eps, in [0, 1); 0 keeps hard targets"
    )
    weight: float = Field(1.0, ge=0.0, description="multiplier of this loss in the total, >= 0")


class FocalParams(ClsParams):
    """Focal loss parameters; defaults are RetinaNet's."""

    gamma: float = Field(2.0, ge=0.0, description="focusing exponent on (1 - p_t), >= 0; 0 is alpha-weighted BCE")
    alpha: float = Field(0.25, ge=0.0, le=1.0, description="weight of the positive class, in [0, 1]")
