"""Our COCO numbers are pycocotools' numbers, with either backend; no detection at all scores 0 instead of crashing."""

from __future__ import annotations

import contextlib
import io
import logging
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from pydantic import ValidationError

from ablate.engine.coco_eval import BACKENDS, STAT_NAMES, coco_summary, ground_truth, to_coco_results
from ablate.study.config import TrialConfig
from ablate.study.expand import trial_id


def _index(images: list[dict], categories: list[int], annotations: list[dict]) -> COCO:
    gt = COCO()
    gt.dataset = {"images": images, "categories": [{"id": c, "name": f"c{c}"} for c in categories],
                  "annotations": [{"id": k + 1, "iscrowd": 0, "area": a["bbox"][2] * a["bbox"][3], **a}
                                  for k, a in enumerate(annotations)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _gt() -> COCO:
    return _index([{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}], [7, 9], [
        {"image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20]},
        {"image_id": 1, "category_id": 9, "bbox": [50, 50, 60, 60]},
        {"image_id": 2, "category_id": 7, "bbox": [0, 0, 150, 120]},
    ])


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_scores_zero(backend):
    assert coco_summary(_gt(), [], backend) == dict.fromkeys(STAT_NAMES, 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluation_prints_and_logs_nothing(backend, capsys, caplog):
    records = to_coco_results([1], [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "scores": torch.tensor([0.5]),
                                     "labels": torch.tensor([0])}], cat_ids=[7, 9])
    with caplog.at_level(logging.INFO):  # faster_coco_eval logs its summary at INFO unless told otherwise
        coco_summary(_gt(), records, backend)
    assert capsys.readouterr().out == ""
    assert caplog.records == []


# ---- faster_coco_eval against pycocotools --------------------------------------------


def _det(image_id: int, category_id: int, bbox: list[float], score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def _random_case(seed: int) -> tuple[COCO, list[dict]]:
    """12 images, 4 categories (id 4 has no ground truth), all three sizes, crowd boxes, tied scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 320, "height": 240} for i in range(1, 13)]
    anns, dets = [], []
    for image in images[1:]:  # image 1 has no ground truth, only false positives
        for _ in range(rng.integers(1, 6)):
            side = float(rng.choice([12.0, 50.0, 140.0]))
            box = [float(rng.uniform(0, 320 - side)), float(rng.uniform(0, 240 - side)), side, side * 0.8]
            anns.append({"image_id": image["id"], "category_id": int(rng.integers(1, 4)), "bbox": box,
                         "iscrowd": int(rng.random() < 0.1)})
    for a in anns:
        for _ in range(rng.integers(0, 3)):
            x, y, w, h = (v + rng.normal(0, 0.1) * a["bbox"][2] for v in a["bbox"])
            dets.append(_det(a["image_id"], a["category_id"], [x, y, abs(w), abs(h)], round(rng.random(), 2)))
    for _ in range(60):
        dets.append(_det(int(rng.integers(1, 13)), int(rng.integers(1, 5)),
                         [float(v) for v in rng.uniform([0, 0, 4, 4], [250, 180, 70, 60])], round(rng.random(), 2)))
    return _index(images, [1, 2, 3, 4], anns), dets


def _cases() -> dict[str, tuple[COCO, list[dict]]]:
    one = [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}]
    no_small = _index(one, [1, 2], [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 60, 60]},
                                     {"image_id": 2, "category_id": 2, "bbox": [20, 30, 80, 90]}])
    crowd = _index(one, [1, 2], [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 150, 150], "iscrowd": 1},
                                  {"image_id": 1, "category_id": 1, "bbox": [160, 160, 20, 20]},
                                  {"image_id": 2, "category_id": 2, "bbox": [40, 40, 50, 50]}])
    spare = _index(one, [1, 2, 3], [dict(a) for a in no_small.dataset["annotations"]])  # category 3: no gt
    return {
        **{f"random{seed}": _random_case(seed) for seed in range(3)},
        "no small or large gt (-1 -> NaN)": (no_small, [_det(1, 1, [12, 9, 58, 62], 0.9),
                                                         _det(2, 2, [25, 30, 75, 90], 0.6),
                                                         _det(2, 1, [0, 0, 10, 10], 0.7)]),
        "crowd: matches inside it are ignored": (crowd, [_det(1, 1, [10, 10, 30, 30], 0.95),
                                                         _det(1, 1, [100, 20, 40, 40], 0.9),
                                                         _det(1, 1, [161, 159, 20, 21], 0.5),
                                                         _det(2, 2, [42, 38, 50, 52], 0.8)]),
        "a category without gt": (spare, [_det(1, 3, [10, 10, 60, 60], 0.9), _det(1, 1, [10, 12, 60, 58], 0.3)]),
        "detections only for the category without gt": (spare, [_det(2, 3, [20, 30, 80, 90], 0.8)]),
        "all detections on the wrong image": (no_small, [_det(2, 1, [10, 10, 60, 60], 0.9)]),
        "no detections": (no_small, []),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_backends_agree_to_1e4_on_all_twelve_numbers(case):
    gt, records = _cases()[case]
    fast = coco_summary(gt, records, "faster_coco_eval")
    reference = coco_summary(gt, records, "pycocotools")
    for name in STAT_NAMES:
        if math.isnan(reference[name]):
            assert math.isnan(fast[name]), name
        else:
            assert abs(fast[name] - reference[name]) <= 1e-4, (name, fast[name], reference[name])
    if case.startswith("no small"):
        assert math.isnan(reference["APs"]) and math.isnan(reference["APl"]) and reference["APm"] > 0


def test_results_and_ground_truth_left_as_given():
    gt, records = _random_case(0)
    before = [dict(r) for r in records]
    for backend in BACKENDS:
        coco_summary(gt, records, backend)
    assert records == before
    assert ground_truth(gt, "pycocotools") is gt
    converted = ground_truth(gt, "faster_coco_eval")
    assert ground_truth(converted, "faster_coco_eval") is converted
    assert sorted(converted.getAnnIds()) == sorted(gt.getAnnIds())


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="faster_coco_eval, pycocotools"):
        coco_summary(_gt(), [], "pycoco")


def test_backend_is_a_recorded_study_key():
    # the study's choices are the evaluator's, and the choice is part of the trial's identity
    assert set(TrialConfig.model_fields["eval"].annotation.model_fields["backend"].annotation.__args__) == set(BACKENDS)
    assert TrialConfig().eval.backend in BACKENDS
    ids = {trial_id(TrialConfig.model_validate({"eval": {"backend": b}}), 0) for b in BACKENDS}
    assert len(ids) == len(BACKENDS)
    assert TrialConfig.model_validate({"eval": {"backend": "pycocotools"}}).model_dump()["eval"]["backend"] == "pycocotools"
    with pytest.raises(ValidationError, match="faster_coco_eval"):
        TrialConfig.model_validate({"eval": {"backend": "pycoco"}})
