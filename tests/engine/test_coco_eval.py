"""Our COCO numbers are pycocotools' numbers; no detection at all scores 0 instead of crashing."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ablate.engine.coco_eval import STAT_NAMES, coco_summary, to_coco_results


def _gt() -> COCO:
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}],
        "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [50, 50, 60, 60], "area": 3600, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 150, 120], "area": 18000, "iscrowd": 0},
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def test_to_coco_results_maps_labels_and_boxes():
    det = {"boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    (record,) = to_coco_results([5], [det], cat_ids=[7, 9])
    assert record == {"image_id": 5, "category_id": 9, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.9}


def test_summary_equals_pycocotools_on_the_same_detections():
    gt = _gt()
    dets = [
        {"boxes": torch.tensor([[11.0, 9.0, 31.0, 30.0], [52.0, 48.0, 108.0, 112.0], [0.0, 0.0, 30.0, 30.0]]),
         "scores": torch.tensor([0.9, 0.8, 0.3]), "labels": torch.tensor([0, 1, 1])},
        {"boxes": torch.tensor([[5.0, 0.0, 150.0, 110.0]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([0])},
    ]
    records = to_coco_results([1, 2], dets, cat_ids=[7, 9])
    ours = coco_summary(gt, records)
    with contextlib.redirect_stdout(io.StringIO()):
        reference = COCOeval(gt, gt.loadRes(records), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    for name, value in zip(STAT_NAMES, reference.stats, strict=True):
        assert ours[name] == pytest.approx(value) if value >= 0 else ours[name] != ours[name]  # -1 -> NaN
    assert 0 < ours["mAP"] < 1


def test_no_detections_scores_zero():
    assert coco_summary(_gt(), []) == dict.fromkeys(STAT_NAMES, 0.0)


def test_evaluation_prints_nothing(capsys):
    records = to_coco_results([1], [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "scores": torch.tensor([0.5]),
                                     "labels": torch.tensor([0])}], cat_ids=[7, 9])
    coco_summary(_gt(), records)
    assert capsys.readouterr().out == ""
