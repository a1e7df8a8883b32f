"""The loss catalogue: classification and box regression losses by name.

``CLS_LOSSES`` modules map ``logits [N, C]``, one-hot ``targets [N, C]`` to a
per-anchor loss ``[N]`` and have ``scores(logits) -> [N, C]`` for inference.
``BOX_LOSSES`` modules map ``pred [N, 4]``, ``target [N, 4]`` to ``[N]``; their
class attribute ``space`` ("delta" or "box") says whether they take encoded
deltas or decoded xyxy boxes.  No loss reduces over N: the detector normalises.
The modules live in ``cls.py`` and ``box.py``, imported when a trial builds one.
"""

from ablate.tricks.losses.params import (
    BalancedL1Params,
    BoxParams,
    ClsParams,
    FocalEIoUParams,
    FocalParams,
    SmoothL1Params,
)
from ablate.tricks.registry import Trick

CLS = "ablate.tricks.losses.cls:"
BOX = "ablate.tricks.losses.box:"

CLS_LOSSES: dict[str, Trick] = {
    "focal": Trick(CLS + "FocalLoss", FocalParams, "sigmoid focal loss (RetinaNet): down-weights easy negatives"),
    "bce": Trick(CLS + "BCELoss", ClsParams, "per-class sigmoid binary cross-entropy, no focusing"),
    "ce": Trick(CLS + "CELoss", ClsParams, "softmax cross-entropy over C classes plus an implicit background logit 0"),
}

BOX_LOSSES: dict[str, Trick] = {
    "l1": Trick(BOX + "L1Loss", BoxParams, "L1 on encoded deltas"),
    "smooth_l1": Trick(BOX + "SmoothL1Loss", SmoothL1Params, "smooth L1 on encoded deltas (torchvision RetinaNet default)"),
    "balanced_l1": Trick(BOX + "BalancedL1Loss", BalancedL1Params, "balanced L1 on deltas (Libra R-CNN): boosts inliers"),
    "iou": Trick(BOX + "IoULoss", BoxParams, "1 - IoU on decoded boxes"),
    "giou": Trick(BOX + "GIoULoss", BoxParams, "generalized IoU loss: gradient even for non-overlapping boxes"),
    "diou": Trick(BOX + "DIoULoss", BoxParams, "distance IoU loss: GIoU-like, penalises centre distance"),
    "ciou": Trick(BOX + "CIoULoss", BoxParams, "complete IoU loss: DIoU plus an aspect-ratio term"),
    "eiou": Trick(BOX + "EIoULoss", BoxParams, "efficient IoU loss: DIoU plus width and height gaps"),
    "focal_eiou": Trick(BOX + "FocalEIoULoss", FocalEIoUParams, "focal-EIoU: EIoU weighted by IoU^gamma, favours good boxes"),
}
