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


class GHMRParams(BoxParams):
    """GHM-R parameters: mu, bins and momentum of mmdetection's GHM RetinaNet config (the paper's); its
    ``loss_weight=10`` on a mean over the 4 coordinates is ``weight: 2.5`` here (``box.ghm_r_loss``)."""

    mu: float = Field(0.02, gt=0.0, description="authentic smooth L1 sqrt(d^2 + mu^2) - mu, in delta units, > 0")
    bins: int = Field(10, ge=1, le=1000, description="gradient-norm bins on [0, 1), 1..1000")
    momentum: float = Field(
        0.7, ge=0.0, lt=1.0,
        description="moving average of the bin densities over calls, in [0, 1); 0: each call alone",
    )


class ClsParams(Params):
    """Parameters shared by every classification loss."""

    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="label smoothing eps, in [0, 1); 0 keeps hard targets"
    )
    weight: float = Field(1.0, ge=0.0, description="multiplier of this loss in the total, >= 0")


class HardNegativeParams(ClsParams):
    neg_pos_ratio: float = Field(3.0, gt=0, le=100, description="negatives kept per positive, the highest-loss ones "
                                 "(3 as SSD); per image (RetinaNet, ATSS) or per batch (FCOS)")


class FocalParams(ClsParams):
    """Focal loss parameters; defaults are RetinaNet's."""

    gamma: float = Field(2.0, ge=0.0, description="focusing exponent on (1 - p_t), >= 0; 0 is alpha-weighted BCE")
    alpha: float = Field(0.25, ge=0.0, le=1.0, description="weight of the positive class, in [0, 1]")


class GHMCParams(ClsParams):
    """GHM-C parameters; the paper's best is 30 bins, momentum 0.75 (mmdetection's config)."""

    bins: int = Field(10, ge=1, le=1000, description="gradient-norm bins on [0, 1], 1..1000")
    momentum: float = Field(
        0.75, ge=0.0, lt=1.0,
        description="moving average of the bin densities over calls, in [0, 1); 0: each call alone",
    )


class QualityFocalParams(ClsParams):
    """Quality focal loss parameters; default is the GFL paper's."""

    beta: float = Field(2.0, ge=0.0, description="exponent of |IoU target - p|, >= 0; 2 in the paper")


class VarifocalParams(ClsParams):
    """Varifocal loss parameters; defaults are the VarifocalNet paper's."""

    alpha: float = Field(0.75, ge=0.0, description="weight of the negatives' alpha p^gamma, >= 0")
    gamma: float = Field(2.0, ge=0.0, description="focusing exponent on the negatives' p, >= 0")
