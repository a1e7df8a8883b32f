"""What RetinaNet and FCOS share once their losses and scores come from the catalogue."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def box_loss(
    loss: nn.Module, deltas: Tensor, gt_boxes: Tensor, *,
    encode: Callable[[Tensor], Tensor], decode: Callable[[Tensor], Tensor],
) -> Tensor:
    """Per-pair catalogue box loss ``[F]`` of predicted ``deltas [F, 4]`` against ``gt_boxes [F, 4]``.

    The loss's ``space`` decides what it compares, as torchvision's ``_box_loss``
    does for its built-in names: ``"delta"`` losses see the encoded regression targets
    (``encode(gt_boxes)``), ``"box"`` losses see the decoded predictions (``decode(deltas)``).
    """
    space = getattr(loss, "space", None)
    if space == "delta":
        return loss(deltas, encode(gt_boxes))
    if space == "box":
        return loss(decode(deltas), gt_boxes)
    raise ValueError(f"box loss {type(loss).__name__} has space {space!r}; valid: 'delta', 'box'")


def top_candidates(scores: Tensor, score_thresh: float, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision's per-level candidate selection, on already computed class scores.

    Args:
        scores: ``[A, C]`` scores of one level's anchors.
        score_thresh: candidates must score above this.
        topk: at most this many candidates (torchvision's ``topk_candidates``).

    Returns:
        ``scores [K]``, ``anchor_idxs [K]``, ``labels [K]`` (int64, ``0..C-1``).
    """
    num_classes = scores.shape[-1]
    flat = scores.flatten()  # [A * C], anchor-major as torchvision's
    keep = flat > score_thresh
    idxs = torch.where(keep)[0]
    top, order = flat[keep].topk(min(topk, idxs.numel()))
    idxs = idxs[order]
    return top, torch.div(idxs, num_classes, rounding_mode="floor"), idxs % num_classes


def rename(losses: dict[str, Tensor], names: dict[str, str]) -> dict[str, Tensor]:
    """torchvision's loss names -> ablate's (``loss_cls``, ``loss_box``, ``loss_ctr``)."""
    return {names[k]: v for k, v in losses.items()}


# ImageNet statistics, as every torchvision detector normalises (the torchvision
# backbones were designed, and their checkpoints trained, with these).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
STRIDES = (8, 16, 32, 64, 128)  # P3..P7


def group_count(channels: int) -> int:
    """GroupNorm groups: torchvision's 32 where ``channels`` allows, else the most groups of >= 2 channels.

    One channel per group would be instance norm, which zeroes a 1x1 map (P7 of a small image).
    """
    return max(g for g in range(1, 33) if channels % g == 0 and (channels // g >= 2 or g == 1))
