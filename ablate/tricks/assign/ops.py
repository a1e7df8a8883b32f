"""The assigners as pure functions of anchors and ground truth (see the package doc for the contract)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

Assign = Callable[[Tensor, Tensor, list[int], Tensor], Tensor]
BACKGROUND = -1


def _centres(boxes: Tensor) -> Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2  # [N, 2]


def _inside(points: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Each point's distances to each box's sides ``[A, G, 4]`` (l, t, r, b) and whether it lies inside ``[A, G]``."""
    x, y = points[:, None, 0], points[:, None, 1]  # [A, 1]
    ltrb = torch.stack([x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x, gt_boxes[:, 3] - y], dim=2)
    return ltrb, ltrb.min(dim=2).values > 0  # [A, G, 4], [A, G]


def max_iou(boxes: Tensor, strides: Tensor, level_counts: list[int], gt_boxes: Tensor, *,
            fg_iou: float, bg_iou: float, low_quality: bool) -> Tensor:
    """torchvision's ``Matcher`` on ``box_iou``: exactly RetinaNet's assignment with (0.5, 0.4, True)."""
    if gt_boxes.numel() == 0:
        return torch.full((len(boxes),), BACKGROUND, dtype=torch.int64, device=boxes.device)
    return Matcher(fg_iou, bg_iou, allow_low_quality_matches=low_quality)(box_iou(gt_boxes, boxes))


def atss(boxes: Tensor, strides: Tensor, level_counts: list[int], gt_boxes: Tensor, *, topk: int) -> Tensor:
    """ATSS (Zhang et al. 2020, Algorithm 1), as mmdetection's ``ATSSAssigner``.

    Per GT: on each level the ``topk`` anchors whose centres are nearest the GT's centre are
    candidates; the GT's threshold is the mean plus the (unbiased) standard deviation of the
    candidates' IoUs (0 for a single candidate); a candidate at or above it whose centre lies
    inside the GT is positive.
    An anchor positive for several GTs takes the one it overlaps most.
    """
    num = len(boxes)
    matched = torch.full((num,), BACKGROUND, dtype=torch.int64, device=boxes.device)
    if gt_boxes.numel() == 0:
        return matched
    iou = box_iou(boxes, gt_boxes)  # [A, G]
    centres = _centres(boxes)
    distance = torch.cdist(centres, _centres(gt_boxes))  # [A, G]
    candidates, start = [], 0
    for count in level_counts:
        k = min(topk, count)
        candidates.append(distance[start:start + count].topk(k, dim=0, largest=False).indices + start)  # [k, G]
        start += count
    candidates = torch.cat(candidates)  # [K, G]
    columns = torch.arange(len(gt_boxes), device=boxes.device)
    candidate_iou = iou[candidates, columns]  # [K, G]
    spread = candidate_iou.std(dim=0) if len(candidates) > 1 else torch.zeros_like(candidate_iou[0])  # one: no spread
    threshold = candidate_iou.mean(dim=0) + spread  # [G]
    x, y = centres[candidates].unbind(dim=2)  # [K, G] each: the candidates' centres
    inside = (x > gt_boxes[:, 0]) & (y > gt_boxes[:, 1]) & (x < gt_boxes[:, 2]) & (y < gt_boxes[:, 3])  # [K, G]
    positive = (candidate_iou >= threshold) & inside  # [K, G]
    best = torch.full_like(iou, -1.0)  # [A, G]: the IoU of each (anchor, GT) that is positive
    best[candidates[positive], columns.expand_as(candidates)[positive]] = candidate_iou[positive]
    value, index = best.max(dim=1)
    matched[value >= 0] = index[value >= 0]
    return matched


def fcos_ranges(boxes: Tensor, strides: Tensor, level_counts: list[int], gt_boxes: Tensor, *,
                center_radius: float) -> Tensor:
    """FCOS's assignment, as torchvision's ``FCOS.compute_loss`` (identical results on FCOS's points).

    A point is positive for a GT when it lies inside it, within ``center_radius`` strides of
    its centre (0: anywhere inside), and on the level whose range holds the GT's largest
    distance from the point: ``(4, 8)`` strides, from 0 on the first level and without limit
    on the last.  Of several such GTs the smallest wins.
    """
    if gt_boxes.numel() == 0:
        return torch.full((len(boxes),), BACKGROUND, dtype=torch.int64, device=boxes.device)
    points = _centres(boxes)  # [A, 2]
    ltrb, match = _inside(points, gt_boxes)  # [A, G, 4], [A, G]
    if center_radius > 0:
        match &= (points[:, None, :] - _centres(gt_boxes)[None]).abs().max(dim=2).values < center_radius * strides[:, None]
    lower, upper = strides * 4, strides * 8
    lower[: level_counts[0]] = 0
    upper[-level_counts[-1]:] = float("inf")
    reach = ltrb.max(dim=2).values  # [A, G]
    match &= (reach > lower[:, None]) & (reach < upper[:, None])
    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])  # [G]
    value, matched = (match.to(torch.float32) * (1e8 - areas[None, :])).max(dim=1)
    matched[value < 1e-5] = BACKGROUND
    return matched


def build_max_iou(*, fg_iou: float, bg_iou: float, low_quality: bool) -> Assign:
    return partial(max_iou, fg_iou=fg_iou, bg_iou=bg_iou, low_quality=low_quality)


def build_atss(*, topk: int) -> Assign:
    return partial(atss, topk=topk)


def build_fcos_ranges(*, center_radius: float) -> Assign:
    return partial(fcos_ranges, center_radius=center_radius)
