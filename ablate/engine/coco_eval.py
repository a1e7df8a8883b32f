"""COCO box AP with pycocotools, exactly as the field reports it.

pycocotools prints its summary and cannot load an empty result list (an early
epoch often has no detection above the score threshold); both are handled here
without copying any of its code.
"""

from __future__ import annotations

import contextlib
import io
import math

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats order (its summarize() for iouType "bbox").
STAT_NAMES = ("mAP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def to_coco_results(image_ids: list[int], detections: list[dict], cat_ids: list[int]) -> list[dict]:
    """Detections in original image coordinates -> COCO results records (bbox as x, y, w, h)."""
    records = []
    for image_id, det in zip(image_ids, detections, strict=True):
        boxes = det["boxes"].detach().cpu().to(torch.float64)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()  # [K, 4]
        for box, score, label in zip(xywh, det["scores"].tolist(), det["labels"].tolist(), strict=True):
            records.append({"image_id": int(image_id), "category_id": int(cat_ids[label]),
                            "bbox": [round(v, 3) for v in box], "score": round(float(score), 5)})
    return records


def coco_summary(coco_gt: COCO, results: list[dict]) -> dict[str, float]:
    """The twelve COCO numbers; 0 for every one when there is no detection at all.

    pycocotools marks a number it cannot define (e.g. APs with no small object in
    the ground truth) as -1; that becomes NaN here so no table averages it in.
    """
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds keys to the records it is given
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: (math.nan if value < 0 else float(value)) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}
