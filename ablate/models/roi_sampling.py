"""Which candidate RoIs train a two-stage detector's box head: three samplers as pure index selections.

Each sampler takes one image's candidate ``labels [N]`` (``>= 1`` an object, ``0`` background,
``-1`` ignored: torchvision's two-stage convention) and returns ``(positive, negative)`` int64
indices into them.  All three keep at most ``int(batch * positive_fraction)`` positives and fill
the rest of ``batch`` with negatives, as torchvision's ``BalancedPositiveNegativeSampler``; they
differ in *which* ones.  Random draws use torch's global RNG (seeded per trial by the engine).

- ``random_sample``: uniformly at random (torchvision, Faster R-CNN).
- ``ohem_sample``: the highest-loss candidates, positives and negatives ranked apart (Shrivastava
  et al. 2016, as mmdetection's ``OHEMSampler``); the caller computes the losses without gradient.
- ``iou_balanced_sample``: positives at random; negatives spread evenly over IoU bins (Libra R-CNN,
  Pang et al. 2019, as mmdetection's ``IoUBalancedNegSampler`` with ``floor_thr=0``, ``num_bins=3``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _split(labels: Tensor, batch: int, positive_fraction: float) -> tuple[Tensor, Tensor, int, int]:
    """Positive and negative indices, and how many of each to keep (torchvision's counts)."""
    positive = torch.where(labels >= 1)[0]
    negative = torch.where(labels == 0)[0]
    num_pos = min(int(batch * positive_fraction), positive.numel())
    num_neg = min(batch - num_pos, negative.numel())
    return positive, negative, num_pos, num_neg


def choose(indices: Tensor, k: int) -> Tensor:
    """``k`` of ``indices`` uniformly at random, or all of them when there are no more than ``k``."""
    if indices.numel() <= k:
        return indices
    return indices[torch.randperm(indices.numel(), device=indices.device)[:k]]


def random_sample(labels: Tensor, batch: int, positive_fraction: float) -> tuple[Tensor, Tensor]:
    """torchvision's balanced sampling: ``(positive, negative)`` indices drawn at random.

    Example:
        >>> pos, neg = random_sample(torch.tensor([1, 0, 0, 2, -1, 0]), batch=4, positive_fraction=0.25)
        >>> len(pos), len(neg)  # one positive (4 x 0.25), three negatives; the ignored one never
        (1, 3)
    """
    positive, negative, num_pos, num_neg = _split(labels, batch, positive_fraction)
    return choose(positive, num_pos), choose(negative, num_neg)


def _hardest(indices: Tensor, losses: Tensor, k: int) -> Tensor:
    return indices[losses[indices].topk(k).indices]


def ohem_sample(labels: Tensor, losses: Tensor, batch: int, positive_fraction: float) -> tuple[Tensor, Tensor]:
    """Online hard example mining: the ``(positive, negative)`` candidates with the highest ``losses [N]``.

    The positives are the hardest positives (at most the positive share), the negatives the hardest
    negatives that fill the batch, as mmdetection's ``OHEMSampler`` mines each side apart.
    """
    positive, negative, num_pos, num_neg = _split(labels, batch, positive_fraction)
    return _hardest(positive, losses, num_pos), _hardest(negative, losses, num_neg)


def _by_bins(indices: Tensor, ious: Tensor, k: int, num_bins: int, top: float) -> Tensor:
    """``k`` of ``indices``, ``k // num_bins`` from each of ``num_bins`` even IoU bins of ``[0, top)``, then any."""
    width, per_bin = top / num_bins, k // num_bins
    values = ious[indices]
    chosen = torch.cat([choose(indices[(values >= i * width) & (values < (i + 1) * width)], per_bin)
                        for i in range(num_bins)])
    rest = indices[~torch.isin(indices, chosen)]  # bins short of their share: fill from the others at random
    return torch.cat([chosen, choose(rest, k - chosen.numel())])


def balanced_negatives(negative: Tensor, ious: Tensor, k: int, num_bins: int = 3) -> Tensor:
    """``k`` of the ``negative`` indices, spread over IoU bins (mmdetection's ``IoUBalancedNegSampler``).

    With ``floor_thr=0``: negatives that overlap some object (IoU > 0) are drawn from ``num_bins``
    even bins of ``[0, max IoU of all candidates)``, ``k // num_bins`` each, and the bins short of
    their share are made up at random from the other overlapping negatives; negatives that overlap
    nothing (IoU 0) only fill what is still missing.

    Args:
        negative: indices of the background candidates.
        ious: ``[N]`` each candidate's highest IoU with an object (0 in an image without objects).
        k: negatives wanted.
        num_bins: IoU bins (3 as Libra R-CNN).
    """
    if negative.numel() <= k:
        return negative
    values = ious[negative]
    overlapping, floor = negative[values > 0], negative[values == 0]
    if overlapping.numel() > k:
        return _by_bins(overlapping, ious, k, num_bins, float(ious.max()))
    return torch.cat([choose(floor, k - overlapping.numel()), overlapping])


def iou_balanced_sample(labels: Tensor, ious: Tensor, batch: int, positive_fraction: float,
                        num_bins: int = 3) -> tuple[Tensor, Tensor]:
    """Libra R-CNN's IoU-balanced sampling: positives at random, negatives by ``balanced_negatives``."""
    positive, negative, num_pos, num_neg = _split(labels, batch, positive_fraction)
    return choose(positive, num_pos), balanced_negatives(negative, ious, num_neg, num_bins)
