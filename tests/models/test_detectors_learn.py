"""Every detector learns: a few images, fitted for some dozens of steps, come back as detections.

A short learning test that can fail: a detector whose loss does not fall, or whose inference does
not return the boxes it was fitted on (a wrong label shift, a box decoded with the wrong coder, scores
from the wrong function), fails it.  Real models, one CPU thread, a few seconds each.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from ablate.models import build_model
from ablate.study import config as study_config

DETECTORS = list(study_config.DETECTORS)
# what each needs to fit 4 images in STEPS steps (the defaults where nothing is said): its own keys, other sections
OWN = {"faster_rcnn": {"rpn_proposals": 100, "roi_batch": 32, "representation": 64},  # the CPU-sized heads
       # DETR's shapes settings (its catalogue doc), ffn 4 x channels; the paper's defaults learn far slower
       "detr": {"anchors": "encoder", "encoder_repeat": 6, "cost_class": 4.0, "pre_norm": True, "level": "p3",
                "queries": 30, "encoder_layers": 1, "decoder_layers": 3, "heads": 4, "ffn": 64, "dropout": 0.0}}
SETTINGS = {"ssd": {"loss": {"cls": "ce"}}}
STEPS, LR = 60, 2e-3


def fit(model, images, targets, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    totals = []
    model.train()
    for _ in range(steps):
        total = sum(model(images, targets).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    return totals


@pytest.mark.parametrize("detector", DETECTORS)
def test_each_detector_fits_a_few_images_and_finds_their_boxes(detector, make_config, make_batch):
    config = make_config(model={"detector": {"name": detector, **OWN.get(detector, {})}},
                         eval={"score_thresh": 0.05, "max_dets": 20}, **SETTINGS.get(detector, {}))
    torch.manual_seed(0)
    model = build_model(config, num_classes=3)
    images, targets = make_batch(sizes=((96, 96),) * 4, seed=1)
    totals = fit(model, images, targets, STEPS)
    assert sum(totals[-5:]) < 0.6 * sum(totals[:5]), totals[::10]  # measured 0.08-0.36 (ATSS: centerness BCE > 0)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    found = 0
    for det, target in zip(detections, targets):
        for box, label in zip(target["boxes"], target["labels"]):
            same = det["labels"] == label
            found += bool(same.any() and box_iou(box[None], det["boxes"][same]).max() > 0.5)
    assert found >= 6, f"{found} of 8 fitted boxes come back with IoU > 0.5 and their label"  # 8 fitted, 0 before
