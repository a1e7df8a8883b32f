"""The merge and test-time-augmentation functions of the ``ablate.tricks.postprocess`` catalogue.

``postprocess`` wraps a merge with the score threshold and the detection cap.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import torch
from ensemble_boxes import weighted_boxes_fusion
from torch import Tensor
from torchvision.ops import batched_nms, box_iou, distance_box_iou

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


# The catalogue's builders (``ablate.tricks.postprocess``): each returns its function with the params bound.
build_nms, build_soft_nms, build_diou_nms, build_wbf = _bind(nms), _bind(soft_nms), _bind(diou_nms), _bind(wbf)
build_no_tta, build_hflip_tta = _bind(no_tta), _bind(hflip_tta)
