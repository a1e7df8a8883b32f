"""The merge and test-time-augmentation functions of the ``ablate.tricks.postprocess`` catalogue.

``postprocess`` wraps a merge with the score threshold and the detection cap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import batched_nms, box_iou, distance_box_iou
from torchvision.ops import nms as single_nms

Detections = tuple[Tensor, Tensor, Tensor]  # boxes [N, 4], scores [N], labels [N]


# ---- methods ----------------------------------------------------------------


def _groups(labels: Tensor, class_agnostic: bool) -> Tensor:
    """What decides whether two boxes may suppress each other: their labels, or one group for all."""
    return torch.zeros_like(labels) if class_agnostic else labels


def nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *, iou: float, class_agnostic: bool,
) -> Detections:
    """Greedy NMS, per class (torchvision's ``batched_nms``) or over all boxes (``nms``)."""
    keep = single_nms(boxes, scores, iou) if class_agnostic else batched_nms(boxes, scores, labels, iou)
    return boxes[keep], scores[keep], labels[keep]  # already sorted by score


def soft_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *,
    iou: float, sigma: float, method: Literal["gaussian", "linear"], min_score: float, class_agnostic: bool,
) -> Detections:
    """Soft-NMS (Bodla et al., 2017): decay overlapping scores instead of dropping boxes.

    Repeatedly takes the highest remaining score and multiplies the scores of the
    remaining same-label boxes by ``exp(-iou^2 / sigma)`` (gaussian) or by
    ``1 - iou`` where ``iou >= iou`` (linear); boxes that fall below ``min_score``
    are dropped.
    """
    groups = _groups(labels, class_agnostic)
    scores = scores.clone()
    remaining = torch.arange(len(scores), device=scores.device)
    keep = []
    while len(remaining) > 0:
        best = remaining[scores[remaining].argmax()]
        keep.append(best)
        remaining = remaining[remaining != best]
        overlap = box_iou(boxes[best][None], boxes[remaining])[0]  # [R]
        overlap = overlap * (groups[remaining] == groups[best])
        if method == "gaussian":
            decay = torch.exp(-overlap**2 / sigma)
        else:
            decay = torch.where(overlap >= iou, 1 - overlap, torch.ones_like(overlap))
        scores[remaining] *= decay
        remaining = remaining[scores[remaining] >= min_score]
    # picks come out in non-increasing score order: decays only lower the rest
    keep = torch.stack(keep) if keep else remaining
    return boxes[keep], scores[keep], labels[keep]


def diou_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *, iou: float, class_agnostic: bool,
) -> Detections:
    """DIoU-NMS (Zheng et al., 2020): greedy NMS that suppresses when ``IoU - d^2/c^2 > iou``.

    ``d`` is the distance between box centres and ``c`` the diagonal of their
    enclosing box, so overlapping boxes with far-apart centres (often two objects
    side by side) survive.
    """
    order = scores.argsort(descending=True)
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    groups = _groups(labels, class_agnostic)
    suppressed = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    keep = []
    for i in range(len(scores)):
        if suppressed[i]:
            continue
        keep.append(i)
        diou = distance_box_iou(boxes[i][None], boxes[i + 1:])[0]  # [N - i - 1]
        suppressed[i + 1:] |= (diou > iou) & (groups[i + 1:] == groups[i])
    keep = torch.tensor(keep, dtype=torch.long, device=scores.device)
    return boxes[keep], scores[keep], labels[keep]


def matrix_decay(boxes: Tensor, *, kernel: Literal["gaussian", "linear"], sigma: float) -> Tensor:
    """Matrix NMS's decay factor ``[N]`` of boxes ``[N, 4]`` sorted by score, descending, all of one group.

    Box ``j`` is decayed by every higher-scored box ``i``, each penalty relaxed by how
    much ``i`` is itself suppressed (its largest IoU ``c_i`` with a box above it):
    ``decay_j = min_i f(iou_ij) / f(c_i)`` with ``f(x) = exp(-sigma x^2)`` (gaussian) or
    ``1 - x`` (linear), as mmdet's ``mask_matrix_nms`` and Paddle's ``matrix_nms``.
    """
    if len(boxes) == 0:
        return boxes.new_ones(0)
    iou = box_iou(boxes, boxes).triu(diagonal=1)  # [N, N]: iou[i, j] for i < j, i scored higher
    compensate = iou.max(dim=0).values[:, None]  # [N, 1]: c_i, box i's largest IoU with a box above it
    # entries with i >= j hold iou 0 and so a factor >= 1: they never win the min
    if kernel == "gaussian":
        decay = torch.exp(-sigma * (iou**2 - compensate**2))
    else:  # c_i = 1 (a duplicate suppressor) would divide 0 by 0
        decay = (1 - iou) / (1 - compensate).clamp(min=1e-6)
    return decay.min(dim=0).values


def matrix_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *,
    kernel: Literal["gaussian", "linear"], sigma: float, min_score: float, pre_top_k: int, class_agnostic: bool,
) -> Detections:
    """Matrix NMS (Wang et al., SOLOv2, 2020; PP-YOLO's box NMS): every score decayed at once, in parallel.

    Per label (or over all boxes when ``class_agnostic``), the ``pre_top_k`` best boxes
    get their scores multiplied by ``matrix_decay``; the rest, and boxes whose decayed
    score falls below ``min_score``, are dropped.  Result sorted by decayed score.
    """
    groups = _groups(labels, class_agnostic)
    kept, decayed = [], []
    for group in groups.unique():
        members = torch.where(groups == group)[0]
        members = members[scores[members].argsort(descending=True)[:pre_top_k]]
        group_scores = scores[members] * matrix_decay(boxes[members], kernel=kernel, sigma=sigma)
        survive = group_scores >= min_score
        kept.append(members[survive])
        decayed.append(group_scores[survive])
    if not kept:
        return boxes[:0], scores[:0], labels[:0]
    kept, decayed = torch.cat(kept), torch.cat(decayed)
    order = decayed.argsort(descending=True)
    kept = kept[order]
    return boxes[kept], decayed[order], labels[kept]


def wbf(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int], *,
    iou: float, skip_box_thr: float, conf_type: str,
) -> Detections:
    """Weighted boxes fusion (Solovyev et al.) through ``ensemble_boxes``.

    Clusters same-label boxes with IoU > ``iou`` and replaces each cluster by the
    score-weighted mean box.  The library wants [0, 1] coordinates, so boxes are
    divided by the image size, clipped, and scaled back.
    """
    from ensemble_boxes import weighted_boxes_fusion  # with numba, 0.25 s: only a trial that fuses boxes pays it

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


def pool(*views: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Per image, the detections of every view (each a list over the images) concatenated, in view order."""
    return [{key: torch.cat([view[key] for view in per_image]) for key in ("boxes", "scores", "labels")}
            for per_image in zip(*views)]


def hflip_tta(predict: Predict, images: list[Tensor] | Tensor) -> list[dict[str, Tensor]]:
    """Predict on the images and their mirror; concatenate both per image.

    ``images`` is a batch ``[B, 3, H, W]`` or a list of ``[3, H_i, W_i]`` of any
    sizes (what torchvision detectors take); each is mirrored about its own width
    and its boxes map back by ``x1' = W_i - x2, x2' = W_i - x1``.
    """
    mirrored = images.flip(-1) if isinstance(images, Tensor) else [image.flip(-1) for image in images]
    plain, mapped_back = predict(images), []
    for image, flipped in zip(images, predict(mirrored)):
        width = image.shape[-1]
        back = flipped["boxes"].clone()
        back[:, 0], back[:, 2] = width - flipped["boxes"][:, 2], width - flipped["boxes"][:, 0]
        mapped_back.append({**flipped, "boxes": back})
    return pool(plain, mapped_back)


@contextmanager
def resize_scaled(transform: GeneralizedRCNNTransform, scale: float) -> Iterator[None]:
    """Within the block, the detector's eval resize (shorter side ``min_size``, longer capped at ``max_size``) times ``scale``.

    torchvision's transform reads both on every call and its ``postprocess`` maps boxes
    back to each input's own size, so the model really sees the scaled image and still
    answers in the caller's coordinates.  Restored on exit, even on an error.
    """
    min_size, max_size = transform.min_size, transform.max_size
    transform.min_size = (round(min_size[-1] * scale),)  # eval uses min_size[-1]
    transform.max_size = round(max_size * scale)
    try:
        yield
    finally:
        transform.min_size, transform.max_size = min_size, max_size


def multiscale_flip_tta(
    predict: Predict, images: list[Tensor] | Tensor, *, scales: list[float], flip: bool,
) -> list[dict[str, Tensor]]:
    """Predict at every scale of the detector's own resize (and on each mirror); concatenate all views per image.

    ``predict`` must be a detector with a torchvision ``GeneralizedRCNNTransform`` as
    ``transform`` (every ``Catalogue*`` model): resizing the images here would be undone
    by that transform, so its target size is scaled instead (``resize_scaled``).
    """
    transform = getattr(predict, "transform", None)
    if not isinstance(transform, GeneralizedRCNNTransform):
        raise TypeError(f"multiscale_flip needs a detector whose .transform is torchvision's GeneralizedRCNNTransform "
                        f"(its eval resize is what gets scaled); got {type(predict).__name__} "
                        f"with transform {type(transform).__name__}")
    views = []
    for scale in scales:
        with resize_scaled(transform, scale):
            views.append(hflip_tta(predict, images) if flip else predict(images))
    return pool(*views)


# ---- catalogue ----------------------------------------------------------------


def _bind(fn: Callable) -> Callable[..., Callable]:
    """``build(**params)`` for a pure function: the function with its params bound."""
    return lambda **params: partial(fn, **params)


# The catalogue's builders (``ablate.tricks.postprocess``): each returns its function with the params bound.
build_nms, build_soft_nms, build_diou_nms, build_wbf = _bind(nms), _bind(soft_nms), _bind(diou_nms), _bind(wbf)
build_matrix_nms = _bind(matrix_nms)
build_no_tta, build_hflip_tta, build_multiscale_flip_tta = _bind(no_tta), _bind(hflip_tta), _bind(multiscale_flip_tta)
