"""The loss catalogue: classification and box regression losses by name.

``CLS_LOSSES`` modules map ``logits [N, C]``, one-hot ``targets [N, C]`` to a
per-anchor loss ``[N]`` and have ``scores(logits) -> [N, C]`` for inference.
``BOX_LOSSES`` modules map ``pred [N, 4]``, ``target [N, 4]`` to ``[N]``; their
class attribute ``space`` ("delta" or "box") says whether they take encoded
deltas or decoded xyxy boxes.  No loss reduces over N: the detector normalises.
The modules live in ``cls.py`` and ``box.py``, imported when a trial builds one.

The ``QUALITY_LOSSES`` (their modules say ``wants_quality = True``) learn soft
targets: one-hot with each positive's 1 replaced by the IoU of its decoded
predicted box with its GT box, which only ``QUALITY_DETECTORS`` give
(``models/common.py``); ``quality_problem`` says why a pair does not fit.
"""

from ablate.tricks.losses.params import (
    BalancedL1Params,
    BoxParams,
    ClsParams,
    FocalEIoUParams,
    FocalParams,
    GHMCParams,
    GHMRParams,
    HardNegativeParams,
    QualityFocalParams,
    SmoothL1Params,
    VarifocalParams,
)
from ablate.tricks.registry import Lazy, Trick


def _cls():  # imported when a trial builds one of its entries
    from ablate.tricks.losses import cls

    return cls


def _box():  # imported when a trial builds one of its entries
    from ablate.tricks.losses import box

    return box


CLS_LOSSES: dict[str, Trick] = {
    "focal": Trick(Lazy(lambda: _cls().FocalLoss), FocalParams, "sigmoid focal loss (RetinaNet): down-weights easy negatives"),
    "bce": Trick(Lazy(lambda: _cls().BCELoss), ClsParams, "per-class sigmoid binary cross-entropy, no focusing"),
    "ce": Trick(Lazy(lambda: _cls().CELoss), ClsParams, "softmax cross-entropy over C classes plus an implicit background logit 0"),
    "hard_negative": Trick(Lazy(lambda: _cls().HardNegativeBCELoss), HardNegativeParams, "BCE on positives and the hardest negatives, neg_pos_ratio per positive (OHEM-style mining as SSD, Liu et al. 2016)"),
    "ghm_c": Trick(Lazy(lambda: _cls().GHMCLoss), GHMCParams, "GHM-C (Li et al. 2019, Gradient Harmonized Single-stage Detector): BCE over gradient density"),
    "quality_focal": Trick(Lazy(lambda: _cls().QualityFocalLoss), QualityFocalParams, "quality focal loss (Li et al. 2020, Generalized Focal Loss): learns the IoU as score"),
    "varifocal": Trick(Lazy(lambda: _cls().VarifocalLoss), VarifocalParams, "varifocal loss (Zhang et al. 2021, VarifocalNet): IoU targets, IoU-weighted positives"),
}

BOX_LOSSES: dict[str, Trick] = {
    "l1": Trick(Lazy(lambda: _box().L1Loss), BoxParams, "L1 on encoded deltas"),
    "smooth_l1": Trick(Lazy(lambda: _box().SmoothL1Loss), SmoothL1Params, "smooth L1 on encoded deltas (torchvision RetinaNet default)"),
    "balanced_l1": Trick(Lazy(lambda: _box().BalancedL1Loss), BalancedL1Params, "balanced L1 on deltas (Libra R-CNN): boosts inliers"),
    "iou": Trick(Lazy(lambda: _box().IoULoss), BoxParams, "1 - IoU on decoded boxes"),
    "giou": Trick(Lazy(lambda: _box().GIoULoss), BoxParams, "generalized IoU loss: gradient even for non-overlapping boxes"),
    "diou": Trick(Lazy(lambda: _box().DIoULoss), BoxParams, "distance IoU loss: GIoU-like, penalises centre distance"),
    "ciou": Trick(Lazy(lambda: _box().CIoULoss), BoxParams, "complete IoU loss: DIoU plus an aspect-ratio term"),
    "eiou": Trick(Lazy(lambda: _box().EIoULoss), BoxParams, "efficient IoU loss: DIoU plus width and height gaps"),
    "focal_eiou": Trick(Lazy(lambda: _box().FocalEIoULoss), FocalEIoUParams, "focal-EIoU: EIoU weighted by IoU^gamma, favours good boxes"),
    "ghm_r": Trick(Lazy(lambda: _box().GHMRLoss), GHMRParams, "GHM-R (Li et al. 2019, Gradient Harmonized Single-stage Detector): ASL1 on deltas over gradient density"),
}

QUALITY_LOSSES = frozenset({"quality_focal", "varifocal"})  # CLS_LOSSES whose targets are IoUs at positives
QUALITY_DETECTORS = ("retinanet", "fcos", "atss")  # the detectors that give those IoUs


def quality_problem(cls_loss: str, detector: str) -> str | None:
    """Why ``loss.cls: cls_loss`` cannot train with ``model.detector: detector``, or None when it can.

    Example:
        >>> quality_problem("varifocal", "ssd")[:31]
        'loss.cls: varifocal learns each'
    """
    if cls_loss not in QUALITY_LOSSES or detector in QUALITY_DETECTORS:
        return None
    others = ", ".join(name for name in CLS_LOSSES if name not in QUALITY_LOSSES)
    return (f"loss.cls: {cls_loss} learns each positive's IoU with its box, which model.detector: {detector} does "
            f"not give; choose model.detector {', '.join(QUALITY_DETECTORS)} or another loss.cls ({others})")
