"""Classification losses for dense detectors: pure functions plus thin modules.

Every module maps ``logits [N, C]`` and one-hot ``targets [N, C]`` (an all-zero
row is background) to a per-anchor loss ``[N]``, summed over classes and scaled
by ``weight``.  Nothing is reduced over anchors: the detector divides by its
number of positives, as torchvision's RetinaNet does.  ``scores`` turns logits
into the class probabilities used at inference, matching how the loss was
trained (sigmoid or softmax).
"""

from __future__ import annotations

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


class CELoss(nn.Module):
    """Module wrapper of :func:`ce_loss`; scores are the softmax without background."""

    def __init__(self, label_smoothing: float = 0.0, weight: float = 1.0):
        super().__init__()
        self.label_smoothing, self.weight = label_smoothing, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.weight * ce_loss(logits, targets, self.label_smoothing)  # [N]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return with_background(logits).softmax(dim=1)[:, 1:]  # [N, C]; rows sum to 1 - p(background)
