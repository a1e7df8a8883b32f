"""Every detector's trial resumes exactly: killed after epoch 1 and started again, it ends as one never stopped.

test_trial.py checks the whole contract on FCOS; this checks what differs per detector: every piece of
state a detector keeps (SSD's and Faster R-CNN's samplers draw from torch's RNG, DETR's dropout) is in the
checkpoint, and each one's losses reach the records under their own names.
"""

from __future__ import annotations

import pytest

from ablate.engine.trial import run_trial
from ablate.metrics import METRICS
from ablate.study import config as study_config

TIMING = {"imgs_per_s", "epoch_time_s", "train_time_s", "eval_time_s", "peak_mem_mb", "checkpoint_s"}
OWN_LOSSES = {"retinanet": {"loss_cls", "loss_box"}, "fcos": {"loss_cls", "loss_box", "loss_ctr"},
              "atss": {"loss_cls", "loss_box", "loss_ctr"}, "ssd": {"loss_cls", "loss_box"},
              "faster_rcnn": {"loss_cls", "loss_box", "loss_objectness", "loss_rpn_box"},
              "detr": {"loss_cls", "loss_box", "loss_l1"}}
LOSSES = {name for names in OWN_LOSSES.values() for name in names} | {"loss", "loss_distill"}  # distill: students
OWN_KEYS = {"faster_rcnn": {"rpn_proposals": 100, "roi_batch": 32, "representation": 64},  # CPU-sized heads
            "detr": {"queries": 10, "encoder_layers": 1, "decoder_layers": 2, "heads": 4, "ffn": 64}}


def _learning(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.mark.parametrize("detector", list(study_config.DETECTORS))
def test_each_detector_resumes_exactly_and_reports_its_own_losses(detector, tiny, tmp_path):
    config = tiny(model={"detector": {"name": detector, **OWN_KEYS.get(detector, {})}}, train={"epochs": 2},
                  data={"shapes": {"train_images": 32, "val_images": 16, "seed": 0}})
    full = run_trial(config, seed=0, out_dir=tmp_path / "full", log=lambda m: None)
    assert set(full.final) - {"epoch"} == set(METRICS) - (LOSSES - OWN_LOSSES[detector] - {"loss"})
    run_trial(config, seed=0, out_dir=tmp_path / "resumed", stop_after=1, log=lambda m: None)
    resumed = run_trial(config, seed=0, out_dir=tmp_path / "resumed", log=lambda m: None)
    assert _learning(resumed.history) == _learning(full.history)
