"""DETR's set loss: Hungarian matching of queries to boxes, then the catalogue losses on the pairs.

Each image's queries are matched one-to-one to its boxes by ``scipy.optimize.linear_sum_assignment``
on ``cost_class x class cost + cost_l1 x L1 + cost_giou x (-GIoU)`` (DETR, Carion et al. 2020).  The
class cost follows the classification loss: for a sigmoid loss (focal, bce) the focal-style cost of
Deformable DETR, ``alpha (1-p)^g (-log p) - (1-alpha) p^g (-log(1-p))`` at the box's class (the
focal loss's own ``gamma``/``alpha``, else 2 and 0.25); for the softmax ``ce``, ``-p`` as DETR.
Boxes are compared as normalised ``(cx, cy, w, h)``: fractions of each image's own (unpadded) size.

The three losses, each summed over the batch and divided by its number of boxes (at least 1):
``loss_cls`` the catalogue classification loss over every query (an unmatched query's one-hot row
is all zero: background), ``loss_l1`` ``cost_l1 x`` L1 on the matched pairs' normalised boxes,
``loss_box`` the catalogue box loss on the matched pairs: xyxy pixel boxes for a ``"box"`` loss,
the normalised ``(cx, cy, w, h)`` for a ``"delta"`` loss.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou

from ablate.models.common import box_loss as catalogue_box_loss
from ablate.tricks.losses.cls import CELoss

EPS = 1e-8  # Deformable DETR's guard in the focal cost's logs


def class_cost(cls_loss: nn.Module, logits: Tensor, labels: Tensor) -> Tensor:
    """``[N, G]`` cost of giving each of ``N`` predictions (``logits [N, C]``) the class of each of ``G`` boxes."""
    p = cls_loss.scores(logits)  # [N, C]
    if isinstance(cls_loss, CELoss):
        return -p[:, labels]
    gamma, alpha = getattr(cls_loss, "gamma", 2.0), getattr(cls_loss, "alpha", 0.25)
    positive = alpha * (1 - p) ** gamma * -(p + EPS).log()
    negative = (1 - alpha) * p**gamma * -(1 - p + EPS).log()
    return (positive - negative)[:, labels]


def hungarian(cost: Tensor) -> tuple[Tensor, Tensor]:
    """The one-to-one assignment of least total ``cost [Q, G]``: (query indices, box indices), ``min(Q, G)`` each."""
    from scipy.optimize import linear_sum_assignment  # 0.3 s, here: a trial of another detector never pays it

    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def normalised(boxes: Tensor, scale: Tensor) -> Tensor:
    """xyxy pixel boxes ``[N, 4]`` -> ``(cx, cy, w, h)`` as fractions of ``scale [N or 1, 4]`` = (w, h, w, h)."""
    return box_convert(boxes, "xyxy", "cxcywh") / scale


def pixels(boxes: Tensor, scale: Tensor) -> Tensor:
    """Normalised ``(cx, cy, w, h)`` ``[N, 4]`` -> xyxy pixel boxes; the inverse of ``normalised``."""
    return box_convert(boxes, "cxcywh", "xyxy") * scale


def match(logits: Tensor, boxes: Tensor, targets: list[dict[str, Tensor]], scales: Tensor, *, cls_loss: nn.Module,
          cost_class: float, cost_l1: float, cost_giou: float) -> list[tuple[Tensor, Tensor]]:
    """Per image, (query indices, box indices) of the least-cost matching.

    Args:
        logits: ``[B, Q, C]``; boxes: ``[B, Q, 4]`` normalised ``(cx, cy, w, h)``.
        targets: per image ``boxes [G, 4]`` xyxy pixels and ``labels [G]``.
        scales: ``[B, 4]`` each image's ``(w, h, w, h)`` in pixels.
    """
    matches = []
    with torch.no_grad():
        for image_logits, image_boxes, target, scale in zip(logits, boxes, targets, scales):
            if len(target["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                matches.append((empty, empty))
                continue
            gt = normalised(target["boxes"], scale)  # [G, 4]
            giou = generalized_box_iou(box_convert(image_boxes, "cxcywh", "xyxy"), box_convert(gt, "cxcywh", "xyxy"))
            cost = (cost_class * class_cost(cls_loss, image_logits, target["labels"])
                    + cost_l1 * torch.cdist(image_boxes, gt, p=1) - cost_giou * giou)  # [Q, G]
            matches.append(hungarian(cost))
    return matches


def set_loss(logits: Tensor, boxes: Tensor, targets: list[dict[str, Tensor]], scales: Tensor, *,
             cls_loss: nn.Module, box_loss: nn.Module, cost_class: float, cost_l1: float,
             cost_giou: float, repeat: int = 1) -> dict[str, Tensor]:
    """``{"loss_cls", "loss_box", "loss_l1"}`` of one decoder layer's predictions (see the module doc).

    Args:
        logits: ``[B, Q, C]``; boxes: ``[B, Q, 4]`` normalised ``(cx, cy, w, h)``.
        targets: per image ``boxes [G, 4]`` xyxy pixels and ``labels [G]`` in ``0..C-1``.
        scales: ``[B, 4]`` each image's ``(w, h, w, h)`` in pixels.
        repeat: each box is matched this many times, to as many queries (one-to-many, H-DETR's hybrid branch).
    """
    if repeat > 1:
        targets = [{"boxes": t["boxes"].repeat(repeat, 1), "labels": t["labels"].repeat(repeat)} for t in targets]
    matches = match(logits, boxes, targets, scales, cls_loss=cls_loss, cost_class=cost_class, cost_l1=cost_l1,
                    cost_giou=cost_giou)
    num_boxes = max(1, sum(len(t["labels"]) for t in targets))
    onehot = torch.zeros_like(logits)  # [B, Q, C]; all-zero rows are background
    pred, gt, scale = [], [], []
    for index, (target, (queries, found)) in enumerate(zip(targets, matches)):
        onehot[index, queries.to(logits.device), target["labels"][found]] = 1.0
        pred.append(boxes[index, queries])
        gt.append(target["boxes"][found])
        scale.append(scales[index].expand(len(found), 4))
    pred, gt, scale = torch.cat(pred), torch.cat(gt), torch.cat(scale)  # [F, 4] each
    loss_cls = cls_loss(logits.flatten(0, 1), onehot.flatten(0, 1)).sum()
    loss_l1 = (pred - normalised(gt, scale)).abs().sum()
    loss_box = catalogue_box_loss(box_loss, pred, gt, encode=partial(normalised, scale=scale),
                                  decode=partial(pixels, scale=scale)).sum()
    return {"loss_cls": loss_cls / num_boxes, "loss_box": loss_box / num_boxes,
            "loss_l1": cost_l1 * loss_l1 / num_boxes}
