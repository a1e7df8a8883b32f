"""Merging raw detections: NMS variants, weighted boxes fusion, and test-time flips.

Every ``POSTPROCESS`` entry builds a pure function
``fn(boxes [N, 4] xyxy pixels, scores [N], labels [N] int64, image_size (h, w))
-> (boxes, scores, labels)`` sorted by score, descending.  All are class-aware:
boxes with different labels never suppress or fuse with each other.
``postprocess`` wraps one with the score threshold and the detection cap.

Every ``TTA`` entry builds ``tta(predict, images) -> list[dict]`` (``images``: a
batch ``[B, 3, H, W]`` or a list of ``[3, H_i, W_i]``) that returns the raw detections
of all views, mapped back to the original image; the merge is left to ``postprocess``
(nms or wbf).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import torch
from ensemble_boxes import weighted_boxes_fusion
from pydantic import Field
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, distance_box_iou

from ablate.tricks.registry import NoParams, Params, Trick

Detections = tuple[Tensor, Tensor, Tensor]  # boxes [N, 4], scores [N], labels [N]


# ---- methods ----------------------------------------------------------------


def nms(boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *, iou: float) -> Detections:
    """Greedy per-class NMS (torchvision's ``batched_nms``)."""
    keep = batched_nms(boxes, scores, labels, iou)  # already sorted by score
    return boxes[keep], scores[keep], labels[keep]


def soft_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *,
    iou: float, sigma: float, method: Literal["gaussian", "linear"], min_score: float,
) -> Detections:
    """Soft-NMS (Bodla et al., 2017): decay overlapping scores instead of dropping boxes.

    Repeatedly takes the highest remaining score and multiplies the scores of the
    remaining same-label boxes by ``exp(-iou^2 / sigma)`` (gaussian) or by
    ``1 - iou`` where ``iou >= iou`` (linear); boxes that fall below ``min_score``
    are dropped.
    """
    scores = scores.clone()
    remaining = torch.arange(len(scores), device=scores.device)
    keep = []
    while len(remaining) > 0:
        best = remaining[scores[remaining].argmax()]
        keep.append(best)
        remaining = remaining[remaining != best]
        overlap = box_iou(boxes[best][None], boxes[remaining])[0]  # [R]
        overlap = overlap * (labels[remaining] == labels[best])
        if method == "gaussian":
            decay = torch.exp(-overlap**2 / sigma)
        else:
            decay = torch.where(overlap >= iou, 1 - overlap, torch.ones_like(overlap))
        scores[remaining] *= decay
        remaining = remaining[scores[remaining] >= min_score]
    # picks come out in non-increasing score order: decays only lower the rest
    keep = torch.stack(keep) if keep else remaining
    return boxes[keep], scores[keep], labels[keep]


def diou_nms(boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *, iou: float) -> Detections:
    """DIoU-NMS (Zheng et al., 2020): greedy NMS that suppresses when ``IoU - d^2/c^2 > iou``.

    ``d`` is the distance between box centres and ``c`` the diagonal of their
    enclosing box, so overlapping boxes with far-apart centres (often two objects
    side by side) survive.
    """
    order = scores.argsort(descending=True)
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    suppressed = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    keep = []
    for i in range(len(scores)):
        if suppressed[i]:
            continue
        keep.append(i)
        diou = distance_box_iou(boxes[i][None], boxes[i + 1:])[0]  # [N - i - 1]
        suppressed[i + 1:] |= (diou > iou) & (labels[i + 1:] == labels[i])
    keep = torch.tensor(keep, dtype=torch.long, device=scores.device)
    return boxes[keep], scores[keep], labels[keep]


def wbf(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *,
    iou: float, skip_box_thr: float, conf_type: str,
) -> Detections:
    """Weighted boxes fusion (Solovyev et al.) through ``ensemble_boxes``.

    Clusters same-label boxes with IoU > ``iou`` and replaces each cluster by the
    score-weighted mean box.  The library wants [0, 1] coordinates, so boxes are
    divided by the image size, clipped, and scaled back.
    """
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    norm = (boxes.detach() / scale).clamp(0, 1)
    # the library warns about and skips zero-area boxes; drop them quietly here
    ok = (norm[:, 2] > norm[:, 0]) & (norm[:, 3] > norm[:, 1])
    fused, fused_scores, fused_labels = weighted_boxes_fusion(
        [norm[ok].cpu().numpy()], [scores[ok].detach().cpu().numpy()], [labels[ok].cpu().numpy()],
        iou_thr=iou, skip_box_thr=skip_box_thr, conf_type=conf_type,
    )
    as_tensor = partial(torch.as_tensor, device=boxes.device)
    return (
        as_tensor(np.asarray(fused, dtype=np.float32), dtype=boxes.dtype).reshape(-1, 4) * scale,
        as_tensor(np.asarray(fused_scores, dtype=np.float32), dtype=scores.dtype),
        as_tensor(np.asarray(fused_labels), dtype=torch.long),
    )


def postprocess(
    boxes: Tensor, scores: Tensor, labels: Tensor, *,
    method: Callable[..., Detections], score_thresh: float, max_dets: int, image_size: tuple[int, int],
) -> Detections:
    """Drop scores <= ``score_thresh`` and collapsed boxes, merge with ``method``, keep the best ``max_dets``.

    A box of zero width or height matches nothing, and two of them have IoU 0/0 = NaN
    inside the NMS variants (an untrained FCOS predicts points; clipping flattens boxes
    that lie off the image), so they never reach ``method``.
    """
    wh = boxes[:, 2:] - boxes[:, :2]  # [N, 2]
    keep = (scores > score_thresh) & (wh > 0).all(dim=1)
    boxes, scores, labels = method(boxes[keep], scores[keep], labels[keep], image_size)
    return boxes[:max_dets], scores[:max_dets], labels[:max_dets]


# ---- test-time augmentation -----------------------------------------------------

Predict = Callable[[list[Tensor] | Tensor], list[dict[str, Tensor]]]


def no_tta(predict: Predict, images: list[Tensor] | Tensor) -> list[dict[str, Tensor]]:
    """The plain prediction."""
    return predict(images)


def hflip_tta(predict: Predict, images: list[Tensor] | Tensor) -> list[dict[str, Tensor]]:
    """Predict on the images and their mirror; concatenate both per image.

    ``images`` is a batch ``[B, 3, H, W]`` or a list of ``[3, H_i, W_i]`` of any
    sizes (what torchvision detectors take); each is mirrored about its own width
    and its boxes map back by ``x1' = W_i - x2, x2' = W_i - x1``.
    """
    mirrored = images.flip(-1) if isinstance(images, Tensor) else [image.flip(-1) for image in images]
    merged = []
    for image, plain, flipped in zip(images, predict(images), predict(mirrored)):
        width = image.shape[-1]
        back = flipped["boxes"].clone()
        back[:, 0], back[:, 2] = width - flipped["boxes"][:, 2], width - flipped["boxes"][:, 0]
        merged.append({
            "boxes": torch.cat([plain["boxes"], back]),
            "scores": torch.cat([plain["scores"], flipped["scores"]]),
            "labels": torch.cat([plain["labels"], flipped["labels"]]),
        })
    return merged


# ---- catalogue ----------------------------------------------------------------


def _bind(fn: Callable) -> Callable[..., Callable]:
    """``build(**params)`` for a pure function: the function with its params bound."""
    return lambda **params: partial(fn, **params)


IOU = "overlap (IoU, 0..1) above which a lower-scored box of the same label is suppressed"


class NMSParams(Params):
    iou: float = Field(0.5, ge=0, le=1, description=IOU)


class SoftNMSParams(Params):
    iou: float = Field(0.3, ge=0, le=1, description="linear method only: IoU (0..1) from which scores decay")
    sigma: float = Field(0.5, gt=0, description="gaussian method only: decay exp(-iou^2 / sigma); smaller decays harder")
    method: Literal["gaussian", "linear"] = Field(
        "gaussian", description='"gaussian": score *= exp(-iou^2/sigma); "linear": score *= 1 - iou where iou >= iou'
    )
    min_score: float = Field(0.001, ge=0, le=1, description="boxes whose decayed score falls below this are dropped")


class DIoUNMSParams(Params):
    iou: float = Field(0.5, ge=0, le=1, description="DIoU (IoU - centre distance^2 / enclosing diagonal^2) above which to suppress")


class WBFParams(Params):
    iou: float = Field(0.55, ge=0, le=1, description="IoU (0..1) above which a box joins a cluster")
    skip_box_thr: float = Field(0.0, ge=0, le=1, description="boxes scoring below this are ignored before fusing")
    conf_type: Literal["avg", "max", "box_and_model_avg", "absent_model_aware_avg"] = Field(
        "avg", description="fused score: 'avg' mean of the cluster, 'max' its maximum, or the "
        "library's model-aware averages (equal to 'avg' for a single model)"
    )


POSTPROCESS: dict[str, Trick] = {
    "nms": Trick(_bind(nms), NMSParams, "greedy per-class non-maximum suppression (torchvision)"),
    "soft_nms": Trick(_bind(soft_nms), SoftNMSParams, "Soft-NMS: decay overlapping scores instead of removing boxes"),
    "diou_nms": Trick(_bind(diou_nms), DIoUNMSParams, "DIoU-NMS: suppress by IoU minus normalised centre distance"),
    "wbf": Trick(_bind(wbf), WBFParams, "weighted boxes fusion: average overlapping boxes by score (ensemble-boxes)"),
}

TTA: dict[str, Trick] = {
    "none": Trick(_bind(no_tta), NoParams, "no test-time augmentation"),
    "hflip": Trick(_bind(hflip_tta), NoParams, "also predict on the horizontal mirror and pool both sets of boxes"),
}
