"""The loss catalogue: classification and box regression losses by name.

``CLS_LOSSES`` modules map ``logits [N, C]``, one-hot ``targets [N, C]`` to a
per-anchor loss ``[N]`` and have ``scores(logits) -> [N, C]`` for inference.
``BOX_LOSSES`` modules map ``pred [N, 4]``, ``target [N, 4]`` to ``[N]``; their
class attribute ``space`` ("delta" or "box") says whether they take encoded
deltas or decoded xyxy boxes.  No loss reduces over N: the detector normalises.
"""

from ablate.tricks.losses.box import (
    BalancedL1Loss,
    BalancedL1Params,
    BoxParams,
    CIoULoss,
    DIoULoss,
    EIoULoss,
    FocalEIoULoss,
    FocalEIoUParams,
    GIoULoss,
    IoULoss,
    L1Loss,
    SmoothL1Loss,
    SmoothL1Params,
)
from ablate.tricks.losses.cls import BCELoss, CELoss, ClsParams, FocalLoss, FocalParams
from ablate.tricks.registry import Trick

CLS_LOSSES: dict[str, Trick] = {
    "focal": Trick(FocalLoss, FocalParams, "sigmoid focal loss (RetinaNet): down-weights easy negatives"),
    "bce": Trick(BCELoss, ClsParams, "per-class sigmoid binary cross-entropy, no focusing"),
    "ce": Trick(CELoss, ClsParams, "softmax cross-entropy over C classes plus an implicit background logit 0"),
}

BOX_LOSSES: dict[str, Trick] = {
    "l1": Trick(L1Loss, BoxParams, "L1 on encoded deltas"),
    "smooth_l1": Trick(SmoothL1Loss, SmoothL1Params, "smooth L1 on encoded deltas (torchvision RetinaNet default)"),
    "balanced_l1": Trick(BalancedL1Loss, BalancedL1Params, "balanced L1 on deltas (Libra R-CNN): boosts inliers"),
    "iou": Trick(IoULoss, BoxParams, "1 - IoU on decoded boxes"),
    "giou": Trick(GIoULoss, BoxParams, "generalized IoU loss: gradient even for non-overlapping boxes"),
    "diou": Trick(DIoULoss, BoxParams, "distance IoU loss: GIoU-like, penalises centre distance"),
    "ciou": Trick(CIoULoss, BoxParams, "complete IoU loss: DIoU plus an aspect-ratio term"),
    "eiou": Trick(EIoULoss, BoxParams, "efficient IoU loss: DIoU plus width and height gaps"),
    "focal_eiou": Trick(FocalEIoULoss, FocalEIoUParams, "focal-EIoU: EIoU weighted by IoU^gamma, favours good boxes"),
}
