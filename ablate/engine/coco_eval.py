"""COCO box AP, exactly as the field reports it, from one of two implementations.

``faster_coco_eval`` (C++ matching and accumulation; the default) and
``pycocotools`` (the reference) give the same twelve numbers to 1e-4
(bench/coco_eval.py, tests/engine/test_coco_eval.py); the study key
``eval.backend`` picks one.  pycocotools prints its summary and cannot load an
empty result list (an early epoch often has no detection above the score
threshold); both are handled here without copying any of its code.
"""

from __future__ import annotations

import contextlib
import io
import math

import torch
from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ablate.metrics import COCO_METRICS
from ablate.metrics import DEFAULT_EVAL_BACKEND as DEFAULT_BACKEND

# COCOeval.stats order (its summarize() for iouType "bbox").
STAT_NAMES = COCO_METRICS

# eval.backend (its names: ablate.metrics.EVAL_BACKENDS) -> (its COCO index class, its COCOeval class).
BACKENDS = {
    "faster_coco_eval": (FasterCOCO, COCOeval_faster),
    "pycocotools": (COCO, COCOeval),
}


def _quiet(*args, **kwargs) -> None:  # faster_coco_eval logs through this instead of printing
    pass


def _backend(name: str) -> tuple[type, type]:
    if name not in BACKENDS:
        raise ValueError(f"unknown COCO evaluation backend '{name}'; valid: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def coco_index(gt: dict, backend: str = DEFAULT_BACKEND):
    """``backend``'s COCO index over an in-memory COCO dict, without its progress prints."""
    index_cls, _ = _backend(backend)
    index = index_cls()
    index.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "faster_coco_eval":
            index.print_function = _quiet
        index.createIndex()
    return index


def ground_truth(coco_gt, backend: str = DEFAULT_BACKEND):
    """``coco_gt`` (either backend's COCO index) as ``backend``'s index over the same annotation dicts."""
    return coco_gt if isinstance(coco_gt, _backend(backend)[0]) else coco_index(coco_gt.dataset, backend)


def evaluator(coco_gt, results: list[dict], backend: str = DEFAULT_BACKEND):
    """A ``backend`` COCOeval of ``results`` (non-empty) against ``coco_gt``, not yet run.

    ``results`` is left as it is: loadRes adds keys to the records it is given, so it gets copies.
    """
    _, eval_cls = _backend(backend)
    gt = ground_truth(coco_gt, backend)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([dict(r) for r in results])
        if backend == "faster_coco_eval":
            return eval_cls(gt, dt, iouType="bbox", print_function=_quiet)
        return eval_cls(gt, dt, iouType="bbox")


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


def coco_summary(coco_gt, results: list[dict], backend: str = DEFAULT_BACKEND) -> dict[str, float]:
    """The twelve COCO numbers; 0 for every one when there is no detection at all.

    Both backends mark a number they cannot define (e.g. APs with no small object
    in the ground truth) as -1; that becomes NaN here so no table averages it in.
    """
    if not results:
        _backend(backend)  # an unknown name fails the same way with or without detections
        return dict.fromkeys(STAT_NAMES, 0.0)
    evaluation = evaluator(coco_gt, results, backend)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: (math.nan if value < 0 else float(value))
            for name, value in zip(STAT_NAMES, evaluation.stats, strict=True)}
