"""Merging raw detections: NMS variants, weighted boxes fusion, and test-time flips and scales.

Every ``POSTPROCESS`` entry builds a pure function
``fn(boxes [N, 4] xyxy pixels, scores [N], labels [N] int64, image_size (h, w))
-> (boxes, scores, labels)`` sorted by score, descending.  All are class-aware by
default: boxes with different labels never suppress or fuse with each other; the NMS
variants take ``class_agnostic: true`` for one merge over all labels (wbf does not).
``ops.postprocess`` wraps one with the score threshold and the detection cap.

Every ``TTA`` entry builds ``tta(predict, images) -> list[dict]`` (``images``: a
batch ``[B, 3, H, W]`` or a list of ``[3, H_i, W_i]``) that returns the raw detections
of all views, mapped back to the original image; the merge is left to ``postprocess``
(the study's ``eval.nms``).  The functions live in ``ops``, imported when a trial builds one.
"""

from ablate.tricks.postprocess.params import (
    DIoUNMSParams,
    MatrixNMSParams,
    MultiscaleFlipParams,
    NMSParams,
    SoftNMSParams,
    WBFParams,
)
from ablate.tricks.registry import Lazy, NoParams, Trick


def _ops():  # imported when a trial builds one of its entries
    from ablate.tricks.postprocess import ops

    return ops


POSTPROCESS: dict[str, Trick] = {
    "nms": Trick(Lazy(lambda: _ops().build_nms), NMSParams, "greedy non-maximum suppression, per class unless class_agnostic (torchvision)"),
    "soft_nms": Trick(Lazy(lambda: _ops().build_soft_nms), SoftNMSParams, "Soft-NMS: decay overlapping scores instead of removing boxes"),
    "diou_nms": Trick(Lazy(lambda: _ops().build_diou_nms), DIoUNMSParams, "DIoU-NMS: suppress by IoU minus normalised centre distance"),
    "matrix_nms": Trick(Lazy(lambda: _ops().build_matrix_nms), MatrixNMSParams,
                        "Matrix NMS (Wang et al. 2020, SOLOv2; PP-YOLO's box NMS): decay every score at once by "
                        "its IoU with higher-scored boxes"),
    "wbf": Trick(Lazy(lambda: _ops().build_wbf), WBFParams, "weighted boxes fusion: average overlapping boxes by score (ensemble-boxes)"),
}

TTA: dict[str, Trick] = {
    "none": Trick(Lazy(lambda: _ops().build_no_tta), NoParams, "no test-time augmentation"),
    "hflip": Trick(Lazy(lambda: _ops().build_hflip_tta), NoParams, "also predict on the horizontal mirror and pool both sets of boxes"),
    "multiscale_flip": Trick(Lazy(lambda: _ops().build_multiscale_flip_tta), MultiscaleFlipParams,
                             "predict at several scales of the eval resize and their mirrors, pool all boxes for "
                             "eval.nms (multi-scale testing as in Girshick 2015, Fast R-CNN)"),
}
