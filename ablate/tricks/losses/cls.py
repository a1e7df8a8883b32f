"""Classification losses for dense detectors: pure functions plus thin modules.

Every module maps ``logits [N, C]`` and one-hot ``targets [N, C]`` (an all-zero
row is background) to a per-anchor loss ``[N]``, summed over classes and scaled
by ``weight``.  Nothing is reduced over anchors: the detector divides by its
number of positives, as torchvision's RetinaNet does.  ``scores`` turns logits
into the class probabilities used at inference, matching how the loss was
trained (sigmoid or softmax).  Modules with ``wants_quality = True`` (QFL, VFL)
learn soft targets: the detector puts each positive's IoU in place of its 1.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss


def smooth_binary_targets(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """Pull each binary target towards 1/2: ``t * (1 - eps) + eps / 2``."""
    return targets * (1.0 - eps) + eps / 2.0


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017) per anchor: easy negatives fade out.

    Args:
        logits: ``[N, C]`` raw class scores.
        targets: ``[N, C]`` one-hot, all zeros for background.
        gamma: focusing exponent.
        alpha: positive-class weight; negatives get ``1 - alpha``.
        label_smoothing: eps of :func:`smooth_binary_targets`.

    Returns:
        ``[N]`` loss summed over classes.
    """
    targets = smooth_binary_targets(targets, label_smoothing)
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none").sum(dim=1)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-class sigmoid BCE per anchor: the focal loss without focusing.

    Args:
        logits: ``[N, C]``; targets: ``[N, C]`` one-hot, zeros for background.
        label_smoothing: eps of :func:`smooth_binary_targets`.

    Returns:
        ``[N]`` loss summed over classes.
    """
    targets = smooth_binary_targets(targets, label_smoothing)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)


def with_background(logits: torch.Tensor) -> torch.Tensor:
    """Prepend a background logit fixed at 0, so C outputs give C + 1 classes."""
    return torch.cat([logits.new_zeros(logits.shape[0], 1), logits], dim=1)  # [N, C + 1]


def ce_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Softmax cross-entropy with an implicit background class at index 0.

    Classes compete with each other and with background, unlike the sigmoid
    losses; the fixed background logit keeps the head's output at C channels.

    Args:
        logits: ``[N, C]``; targets: ``[N, C]`` one-hot, zeros for background.
        label_smoothing: eps spread over the C + 1 classes, as in
            ``torch.nn.functional.cross_entropy``.

    Returns:
        ``[N]`` loss.
    """
    index = torch.where(targets.sum(dim=1) > 0, targets.argmax(dim=1) + 1, 0)  # [N], 0 = background
    return F.cross_entropy(with_background(logits), index, label_smoothing=label_smoothing, reduction="none")


def ghm_edges(bins: int, last: float) -> torch.Tensor:
    """mmdetection's GHM bin edges ``[bins + 1]`` (float32): ``i / bins``, the last one moved to ``last``."""
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] = last
    return edges


def ghm_bins(g: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The bin (int64, same shape) of each gradient norm ``g``: ``i`` where ``edges[i] <= g < edges[i + 1]``."""
    return torch.bucketize(g.detach().float(), edges.to(g.device), right=True) - 1


def ghm_moved(density: torch.Tensor, index: torch.Tensor, momentum: float) -> torch.Tensor:
    """mmdetection's moving-average density ``[bins]``: a bin that ``index`` fills becomes
    ``momentum * density + (1 - momentum) * count``, an empty one keeps its value."""
    counts = torch.bincount(index.flatten(), minlength=len(density)).to(density)  # [bins]
    return torch.where(counts > 0, momentum * density + (1 - momentum) * counts, density)


def ghm_c_bins(logits: torch.Tensor, targets: torch.Tensor, bins: int) -> torch.Tensor:
    """GHM-C's bin ``[N, C]`` of each element's BCE gradient norm ``|sigmoid(x) - y|`` on [0, 1]."""
    return ghm_bins((logits.detach().sigmoid() - targets).abs(), ghm_edges(bins, 1.0 + 1e-6))


def ghm_weights(
    index: torch.Tensor, bins: int, density: torch.Tensor | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """GHM's ``1 / (density of the element's bin x non-empty bins)`` in ``dtype``, same shape as ``index``.

    Args:
        index: each element's bin (:func:`ghm_bins`).
        bins: number of bins.
        density: ``[bins]`` elements per bin to divide by; None counts this call's (GHM's momentum 0).
            Only the bins this call fills count as non-empty, as mmdetection's.
    """
    counts = torch.bincount(index.flatten(), minlength=bins)  # [bins]
    density = counts if density is None else density
    filled = int((counts > 0).sum())
    return 1.0 / (density.to(dtype)[index] * max(filled, 1))


def ghm_c_loss(
    logits: torch.Tensor, targets: torch.Tensor, bins: int = 10, density: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """GHM-C (Li et al. 2019, Gradient Harmonized Single-stage Detector): BCE over gradient density.

    Each element's BCE is divided by the number of elements whose gradient norm
    ``|sigmoid(x) - y|`` falls in its bin (of ``bins`` equal bins on [0, 1]) and by
    the number of non-empty bins, so every filled bin weighs the same however many
    easy negatives it holds.  The sum of that over the call's ``N x C`` elements is
    mmdetection's ``GHMC``; the density is counted over the rows of one call, which is
    one image's valid anchors for RetinaNet and ATSS, the whole batch for FCOS (mmdetection:
    one pyramid level of the batch).  Each row is then multiplied by the call's positive
    rows ``P`` (at least 1), so the detector's division by its foreground count gives
    mmdetection's value back where that count is the call's ``P`` (RetinaNet, ATSS, FCOS,
    DETR); SSD mines and divides by the batch's positives, Faster R-CNN by its sampled RoIs.

    Args:
        logits: ``[N, C]``; targets: ``[N, C]`` one-hot, zeros for background.
        bins: number of gradient-norm bins.
        density: ``[bins]`` counts to divide by instead of this call's (the moving average).
        label_smoothing: eps of :func:`smooth_binary_targets`.

    Returns:
        ``[N]`` loss summed over classes.
    """
    positives = max(int((targets.sum(dim=1) > 0).sum()), 1)
    targets = smooth_binary_targets(targets, label_smoothing)
    index = ghm_c_bins(logits, targets, bins)  # [N, C]
    # [N, C]; at least float32: under AMP a float16 density of 10^5 elements would overflow
    weights = ghm_weights(index, bins, density, torch.promote_types(logits.dtype, torch.float32))
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return positives * (weights * bce).sum(dim=1)


def quality_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, beta: float = 2.0, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Quality focal loss (Li et al. 2020, Generalized Focal Loss): BCE to a soft ``y`` scaled by ``|y - p|^beta``.

    ``y`` is the positive's IoU at its class and 0 elsewhere; with ``y = 1`` this is the
    focal loss without alpha (gamma = beta).  The minimum over the logit is at ``p = y``.

    Args:
        logits: ``[N, C]``; targets: ``[N, C]`` in [0, 1], zeros for background.
        beta: focusing exponent.
        label_smoothing: eps of :func:`smooth_binary_targets`.

    Returns:
        ``[N]`` loss summed over classes.
    """
    targets = smooth_binary_targets(targets, label_smoothing)
    scale = (logits.sigmoid() - targets).abs().pow(beta)
    return (scale * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")).sum(dim=1)


def varifocal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.75, gamma: float = 2.0, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Varifocal loss (Zhang et al. 2021, VarifocalNet): BCE to a soft target ``q``, positives weighted by ``q``.

    Negatives (``q = 0``) are weighted by ``alpha p^gamma``, positives by their
    target ``q`` (mmdetection's ``iou_weighted``), so high-IoU positives dominate.
    The weights are not differentiated, as in the paper's code.

    Args:
        logits: ``[N, C]``; targets: ``[N, C]`` in [0, 1], zeros for background.
        alpha: weight of the negatives; gamma: their focusing exponent.
        label_smoothing: eps of :func:`smooth_binary_targets`; positives are those
            with a non-zero target before smoothing.

    Returns:
        ``[N]`` loss summed over classes.
    """
    positive = targets > 0
    targets = smooth_binary_targets(targets, label_smoothing)
    weight = torch.where(positive, targets, alpha * logits.sigmoid().pow(gamma))  # differentiated, as the paper's code
    return (weight * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")).sum(dim=1)


class FocalLoss(nn.Module):
    """Module wrapper of :func:`focal_loss`; scores are per-class sigmoids."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.gamma, self.alpha, self.label_smoothing, self.weight = gamma, alpha, label_smoothing, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * focal_loss(logits, targets, self.gamma, self.alpha, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()  # [N, C]


class BCELoss(nn.Module):
    """Module wrapper of :func:`bce_loss`; scores are per-class sigmoids."""

    def __init__(self, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.label_smoothing, self.weight = label_smoothing, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * bce_loss(logits, targets, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()  # [N, C]


def hard_negative_mask(per_anchor: torch.Tensor, positive: torch.Tensor, neg_pos_ratio: float) -> torch.Tensor:
    """Hard negative mining (SSD, Liu et al. 2016): keep the positives and the ``neg_pos_ratio`` x as many
    negatives with the highest loss (at least ``neg_pos_ratio`` when there is no positive).

    Args:
        per_anchor: ``[N]`` loss of each anchor; positive: ``[N]`` bool.

    Returns:
        ``[N]`` bool, the anchors that train.
    """
    keep = int(neg_pos_ratio * max(int(positive.sum()), 1))
    negative_loss = per_anchor.detach().masked_fill(positive, -math.inf)  # positives never count as negatives
    hardest = negative_loss.topk(min(keep, int((~positive).sum()))).indices
    mask = positive.clone()
    mask[hardest] = True
    return mask


class HardNegativeBCELoss(BCELoss):
    """BCE on the positives and the hardest negatives only, ``neg_pos_ratio`` per positive (SSD's 3:1)."""

    def __init__(self, neg_pos_ratio: float = 3.0, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__(label_smoothing, weight)
        self.neg_pos_ratio = neg_pos_ratio

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_anchor = super().forward(logits, targets)  # [N]
        keep = hard_negative_mask(per_anchor, targets.sum(dim=1) > 0, self.neg_pos_ratio)
        return per_anchor * keep


class CELoss(nn.Module):
    """Module wrapper of :func:`ce_loss`; scores are the softmax without background."""

    def __init__(self, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.label_smoothing, self.weight = label_smoothing, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * ce_loss(logits, targets, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return with_background(logits).softmax(dim=1)[:, 1:]  # [N, C]; rows sum to 1 - p(background)


class GHMCLoss(nn.Module):
    """Module wrapper of :func:`ghm_c_loss` keeping the bins' moving-average density; scores are sigmoids.

    With ``momentum > 0`` each filled bin's density is ``momentum * previous + (1 - momentum) * count``,
    starting from 0, as mmdetection's ``GHMC``; empty bins keep theirs.
    """

    def __init__(self, bins: int = 10, momentum: float = 0.75, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.bins, self.momentum, self.label_smoothing, self.weight = bins, momentum, label_smoothing, weight
        # [bins]; not in the state dict, so checkpoints and weight copies between detectors ignore it
        self.register_buffer("density", torch.zeros(bins), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        density = None
        if self.momentum > 0:
            index = ghm_c_bins(logits, smooth_binary_targets(targets, self.label_smoothing), self.bins)  # [N, C]
            density = self.density = ghm_moved(self.density, index, self.momentum)
        return self.weight * ghm_c_loss(logits, targets, self.bins, density, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()  # [N, C]


class QualityFocalLoss(nn.Module):
    """Module wrapper of :func:`quality_focal_loss`; the detector gives IoU targets; scores are sigmoids."""

    wants_quality: ClassVar[bool] = True

    def __init__(self, beta: float = 2.0, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.beta, self.label_smoothing, self.weight = beta, label_smoothing, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * quality_focal_loss(logits, targets, self.beta, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()  # [N, C]: the IoU-aware classification score


class VarifocalLoss(nn.Module):
    """Module wrapper of :func:`varifocal_loss`; the detector gives IoU targets; scores are sigmoids."""

    wants_quality: ClassVar[bool] = True

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.alpha, self.gamma, self.label_smoothing, self.weight = alpha, gamma, label_smoothing, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * varifocal_loss(logits, targets, self.alpha, self.gamma, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()  # [N, C]: the IoU-aware classification score
