"""Box regression losses: pure functions plus thin modules.

Every module maps matched pairs ``pred [N, 4]``, ``target [N, 4]`` to a per-box
loss ``[N]`` scaled by ``weight``, without reducing over boxes.  Its class
attribute ``space`` tells the detector what to feed it: ``"delta"`` losses
compare encoded regression deltas (and sum over the 4 coordinates), ``"box"``
losses compare decoded absolute ``(x1, y1, x2, y2)`` boxes.  torchvision.ops
provides GIoU, DIoU and CIoU; IoU, EIoU, Focal-EIoU and GHM-R are written here.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_area, complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from ablate.tricks.losses.cls import ghm_bins, ghm_edges, ghm_moved, ghm_weights

EPS = 1e-7  # same guard against 0/0 as torchvision's box losses


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on deltas ``[N, 4]`` -> ``[N]``: constant gradient, robust to outliers."""
    return (pred - target).abs().sum(dim=-1)


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1 / 9) -> torch.Tensor:
    """Smooth L1 on deltas ``[N, 4]`` -> ``[N]``: L2 near zero so gradients vanish at the optimum."""
    return F.smooth_l1_loss(pred, target, beta=beta, reduction="none").sum(dim=-1)


def balanced_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0
) -> torch.Tensor:
    """Balanced L1 (Libra R-CNN, Pang et al. 2019) on deltas ``[N, 4]`` -> ``[N]``.

    Raises the gradient of inliers so accurate boxes are not drowned out by
    outliers; value and gradient are continuous at ``beta``.  Same formula as
    mmdetection's ``balanced_l1_loss``.

    Args:
        alpha: inlier gradient boost; gamma: outlier gradient; beta: switch point.
    """
    diff = (pred - target).abs()  # [N, 4]
    b = math.exp(gamma / alpha) - 1.0
    inlier = alpha / b * (b * diff + 1) * torch.log(b * diff / beta + 1) - alpha * diff
    outlier = gamma * diff + gamma / b - alpha * beta
    return torch.where(diff < beta, inlier, outlier).sum(dim=-1)


def _iou_and_enclosure(pred: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise IoU ``[N]`` of matched xyxy pairs and their enclosing box's ``(w, h)`` ``[N, 2]``."""
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)  # [N]
    iou = inter / (box_area(pred) + box_area(target) - inter + eps)
    enclosure = torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])  # [N, 2]
    return iou, enclosure


def paired_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """IoU ``[N]`` of matched xyxy pairs ``[N, 4]``: the diagonal of ``box_iou`` without its ``[N, N]`` matrix."""
    return _iou_and_enclosure(pred, target, eps)[0]


def iou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``1 - IoU`` of matched xyxy pairs ``[N, 4]`` -> ``[N]``; no gradient once boxes stop overlapping."""
    return 1.0 - paired_iou(pred, target, eps)


def eiou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """EIoU (Zhang et al. 2021) of matched xyxy pairs ``[N, 4]`` -> ``[N]``.

    DIoU plus separate width and height penalties, each normalised by the
    enclosing box, so unlike CIoU's aspect-ratio term it moves w and h directly:
    ``1 - IoU + rho^2(centres) / c^2 + (w - w_gt)^2 / Cw^2 + (h - h_gt)^2 / Ch^2``.
    """
    iou, enclosure = _iou_and_enclosure(pred, target, eps)
    wh, wh_gt = pred[:, 2:] - pred[:, :2], target[:, 2:] - target[:, :2]  # [N, 2]
    centre_gap = (pred[:, :2] + pred[:, 2:] - target[:, :2] - target[:, 2:]) / 2  # [N, 2]
    c2 = enclosure.pow(2)  # [N, 2]: Cw^2, Ch^2
    distance = centre_gap.pow(2).sum(dim=-1) / (c2.sum(dim=-1) + eps)
    shape = ((wh - wh_gt).pow(2) / (c2 + eps)).sum(dim=-1)
    return 1.0 - iou + distance + shape


def focal_eiou_loss(pred: torch.Tensor, target: torch.Tensor, gamma: float = 0.5, eps: float = EPS) -> torch.Tensor:
    """Focal-EIoU: ``IoU^gamma * EIoU``, so well-overlapping boxes dominate the gradient.

    IoU is detached, as in the paper's reference code: it only re-weights.
    Pairs that do not overlap at all get zero loss.
    """
    iou, _ = _iou_and_enclosure(pred, target, eps)
    return iou.detach().pow(gamma) * eiou_loss(pred, target, eps)


def ghm_r_bins(diff: torch.Tensor, mu: float, bins: int) -> torch.Tensor:
    """GHM-R's bin ``[N, 4]`` of each coordinate's ASL1 gradient norm ``|d| / sqrt(d^2 + mu^2)``, the last bin open."""
    diff = diff.detach()
    return ghm_bins(diff.abs() / torch.sqrt(diff * diff + mu * mu), ghm_edges(bins, 1e3))


def ghm_r_loss(
    pred: torch.Tensor, target: torch.Tensor, mu: float = 0.02, bins: int = 10, density: torch.Tensor | None = None
) -> torch.Tensor:
    """GHM-R (Li et al. 2019, Gradient Harmonized Single-stage Detector) on deltas ``[N, 4]`` -> ``[N]``.

    Authentic smooth L1 ``sqrt(d^2 + mu^2) - mu`` per coordinate, whose gradient norm
    ``|d| / sqrt(d^2 + mu^2)`` in [0, 1) is binned as GHM-C's (the last bin open-ended, as
    mmdetection's); each coordinate is weighted by ``4N / (elements in its bin x non-empty
    bins)`` (weights of mean 1 over the call's ``4N`` coordinates without momentum), summed over the 4 as
    the other delta losses.  The density is counted over the pairs of one call (one image's
    positives for RetinaNet, the batch's for FCOS).  mmdetection's ``GHMR`` averages over
    the ``4N`` coordinates instead: its value is this one's mean over pairs divided by 4, so its
    config's ``loss_weight=10`` is ``weight: 2.5`` here.

    Args:
        mu: ASL1 smoothness in delta units; bins: number of gradient-norm bins.
        density: ``[bins]`` counts to divide by instead of this call's (the moving average).
    """
    diff = pred - target  # [N, 4]
    asl1 = torch.sqrt(diff * diff + mu * mu) - mu
    index = ghm_r_bins(diff, mu, bins)  # [N, 4]
    weights = diff.numel() * ghm_weights(index, bins, density, torch.promote_types(pred.dtype, torch.float32))
    return (weights * asl1).sum(dim=-1)


class _BoxLoss(nn.Module):
    """Holds ``weight``; subclasses set ``space`` and ``forward``."""

    space: ClassVar[Literal["delta", "box"]]

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight


class L1Loss(_BoxLoss):
    space = "delta"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * l1_loss(pred, target)  # [N]


class SmoothL1Loss(_BoxLoss):
    space = "delta"

    def __init__(self, beta: float = 1 / 9, weight: float = 1.0):
        super().__init__(weight)
        self.beta = beta

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * smooth_l1_loss(pred, target, self.beta)  # [N]


class BalancedL1Loss(_BoxLoss):
    space = "delta"

    def __init__(self, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0, weight: float = 1.0):
        super().__init__(weight)
        self.alpha, self.gamma, self.beta = alpha, gamma, beta

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * balanced_l1_loss(pred, target, self.alpha, self.gamma, self.beta)  # [N]


class IoULoss(_BoxLoss):
    space = "box"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * iou_loss(pred, target)  # [N]


class GIoULoss(_BoxLoss):
    space = "box"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * generalized_box_iou_loss(pred, target, reduction="none", eps=EPS)  # [N]


class DIoULoss(_BoxLoss):
    space = "box"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * distance_box_iou_loss(pred, target, reduction="none", eps=EPS)  # [N]


class CIoULoss(_BoxLoss):
    space = "box"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # torchvision's aspect term divides w / h without eps: a zero-height predicted box (FCOS
        # at initialisation predicts ltrb = 0) would give NaN, so boxes are at least 1e-3 px wide and
        # high (a float32 coordinate near 1000 px still resolves that).
        pred = torch.cat([pred[:, :2], torch.maximum(pred[:, 2:], pred[:, :2] + 1e-3)], dim=1)  # [N, 4]
        return self.weight * complete_box_iou_loss(pred, target, reduction="none", eps=EPS)  # [N]


class EIoULoss(_BoxLoss):
    space = "box"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * eiou_loss(pred, target)  # [N]


class FocalEIoULoss(_BoxLoss):
    space = "box"

    def __init__(self, gamma: float = 0.5, weight: float = 1.0):
        super().__init__(weight)
        self.gamma = gamma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * focal_eiou_loss(pred, target, self.gamma)  # [N]


class GHMRLoss(_BoxLoss):
    """Module wrapper of :func:`ghm_r_loss` keeping the bins' moving-average density, as ``GHMCLoss``."""

    space = "delta"

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.7, weight: float = 1.0):
        super().__init__(weight)
        self.mu, self.bins, self.momentum = mu, bins, momentum
        self.register_buffer("density", torch.zeros(bins), persistent=False)  # [bins], as GHMCLoss's

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        density = None
        if self.momentum > 0:
            index = ghm_r_bins(pred - target, self.mu, self.bins)  # [N, 4]
            density = self.density = ghm_moved(self.density, index, self.momentum)
        return self.weight * ghm_r_loss(pred, target, self.mu, self.bins, density)  # [N]
