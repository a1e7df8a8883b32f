"""What RetinaNet and FCOS share once their losses and scores come from the catalogue."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator

from ablate.tricks.losses.box import paired_iou


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


def wants_quality(cls_loss: nn.Module) -> bool:
    """Whether a catalogue classification loss learns IoU targets at positives (QFL, VFL: losses.QUALITY_LOSSES)."""
    return bool(getattr(cls_loss, "wants_quality", False))


def positive_quality(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """The soft class target ``[F]`` of each positive: the IoU of its decoded predicted box with its GT box.

    Detached, as GFL's and VarifocalNet's code: the target is not pulled towards the score.  Computed
    in float32: under AMP a float16 box area overflows past 256 x 256 px.
    """
    return paired_iou(pred_boxes.detach().float(), gt_boxes.float())


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


STRIDES = (8, 16, 32, 64, 128)  # P3..P7, the default pyramid (model.pyramid: tricks/pyramids.py)


class LevelAnchors(AnchorGenerator):
    """torchvision's anchor generator that also keeps, from its last call, how many anchors each level holds.

    The assigners need the pyramid level of every anchor; torchvision's RetinaNet computes the
    per-level counts only at inference, so the generator that tiles the levels records them.
    """

    level_counts: list[int]

    def forward(self, image_list, feature_maps: list[Tensor]) -> list[Tensor]:
        self.level_counts = [f.shape[-2] * f.shape[-1] * a
                             for f, a in zip(feature_maps, self.num_anchors_per_location())]
        return super().forward(image_list, feature_maps)


def assign_all(assigner: Callable, boxes: list[Tensor], level_counts: list[int],
               targets: list[dict[str, Tensor]], strides: tuple[int, ...] = STRIDES) -> list[Tensor]:
    """Each image's ``matched [A]`` from a catalogue assigner (tricks/assign), given its anchors as boxes ``[A, 4]``.

    ``strides``: each pyramid level's, in the order of ``level_counts``.
    """
    if len(strides) != len(level_counts):
        raise ValueError(f"{len(level_counts)} pyramid levels but {len(strides)} strides {strides}")
    strides = torch.cat([torch.full((n,), float(s), device=boxes[0].device) for n, s in zip(level_counts, strides)])
    return [assigner(image_boxes, strides, level_counts, target["boxes"])
            for image_boxes, target in zip(boxes, targets)]


def group_count(channels: int) -> int:
    """GroupNorm groups: torchvision's 32 where ``channels`` allows, else the most groups of >= 2 channels.

    One channel per group would be instance norm, which zeroes a 1x1 map (P7 of a small image).
    """
    return max(g for g in range(1, 33) if channels % g == 0 and (channels // g >= 2 or g == 1))
