"""Assigners: which anchors (or points) of a dense detector learn which ground-truth box.

The ATSS paper's finding, and the seeds' note: with the same sample definition RetinaNet
and FCOS perform almost the same, so the assigner is a trick of its own, selected by
``model.assigner`` for ``retinanet``, ``fcos`` and ``atss`` (null: the detector's own).
``ASSIGNERS[name].build(**params)`` returns a pure function

    assign(boxes [A, 4], strides [A], level_counts [L], gt_boxes [G, 4]) -> matched [A] int64

with ``matched`` a GT index, ``-1`` for background or ``-2`` for ignored (trains nothing).
``boxes`` are the anchors as boxes (FCOS tiles a square of 8 strides on each point for
the IoU-based assigners, as the ATSS paper does), ``strides`` each anchor's level stride,
``level_counts`` how many anchors each pyramid level holds (in order).  The functions live
in ``ops``, imported when a trial builds one.
"""

from ablate.tricks.assign.params import AtssParams, FcosRangesParams, MaxIoUParams
from ablate.tricks.registry import Lazy, Trick


def _ops():  # imported when a trial builds one of its entries
    from ablate.tricks.assign import ops

    return ops


ASSIGNERS: dict[str, Trick] = {
    "max_iou": Trick(Lazy(lambda: _ops().build_max_iou), MaxIoUParams,
                     "IoU thresholds (RetinaNet; torchvision's Matcher): positive >= fg_iou, background < bg_iou"),
    "atss": Trick(Lazy(lambda: _ops().build_atss), AtssParams,
                  "adaptive training sample selection (ATSS, Zhang et al. 2020): per GT the topk nearest anchors "
                  "per level, IoU threshold mean + std, centre inside the box"),
    "fcos_ranges": Trick(Lazy(lambda: _ops().build_fcos_ranges), FcosRangesParams,
                         "FCOS (Tian et al. 2019): points inside the GT (near its centre) on the level whose "
                         "range [4, 8] strides holds the GT's largest side; the smallest GT wins"),
}
