"""One real trial end to end: it learns, it resumes exactly, and it fails with a reason."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.engine.trial import build_pieces, run_trial
from ablate.errors import TrialFailed
from ablate.metrics import METRICS

TIMING = {"imgs_per_s", "epoch_time_s", "train_time_s", "eval_time_s", "peak_mem_mb", "checkpoint_s"}


def _same_learning(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        assert {k: v for k, v in row_a.items() if k not in TIMING} == {k: v for k, v in row_b.items() if k not in TIMING}


def test_trial_learns_reports_every_metric_and_resumes_exactly(tiny, tmp_path):
    config = tiny(train={"epochs": 5})
    full = run_trial(config, seed=0, out_dir=tmp_path / "full", log=lambda m: None)
    assert full.status == "completed" and len(full.history) == 5
    # every metric, each known to the records: FCOS's losses are loss_cls, loss_box and loss_ctr, not the others'
    assert set(full.final) - {"epoch"} == set(METRICS) - {"loss_objectness", "loss_rpn_box", "loss_l1",
                                                                     "loss_distill"}
    assert full.history[-1]["mAP"] > full.history[0]["mAP"]
    maps = [row["mAP"] for row in full.history]
    assert maps[-1] > 0.01 and maps[-1] > 2 * maps[0], maps  # an untrained detector scores ~0
    assert full.final["loss"] < full.history[0]["loss"]
    assert (tmp_path / "full" / "checkpoint.pt").is_file()
    detections = json.loads((tmp_path / "full" / "detections.json").read_text())
    assert detections and set(detections[0]) == {"image_id", "category_id", "bbox", "score"}

    # "killed" after epoch 1, then started again in the same folder
    part = run_trial(config, seed=0, out_dir=tmp_path / "resumed", stop_after=1, log=lambda m: None)
    assert part.status == "stopped" and len(part.history) == 1
    messages = []
    resumed = run_trial(config, seed=0, out_dir=tmp_path / "resumed", log=messages.append)
    assert any("resuming" in m and "epoch 1" in m for m in messages)
    _same_learning(full.history, resumed.history)

    # a finished trial started again trains nothing and reports the same
    again = run_trial(config, seed=0, out_dir=tmp_path / "full", log=lambda m: None)
    _same_learning(full.history, again.history)


def test_same_seed_same_result_and_a_bad_choice_lowers_map(tiny, tmp_path):
    config = tiny(train={"epochs": 2})
    one = run_trial(config, seed=1, out_dir=tmp_path / "a", log=lambda m: None)
    two = run_trial(config, seed=1, out_dir=tmp_path / "b", log=lambda m: None)
    _same_learning(one.history, two.history)
    bad = run_trial(tiny(train={"epochs": 2, "optimizer": {"lr": 0.8}}), seed=1, out_dir=tmp_path / "bad",
                    log=lambda m: None)
    # ratios to the good run on this machine, not absolute mAPs: after 2 epochs the good run reads 0.011-0.018
    # depending on the CPU's vector unit (AVX2 or AVX-512) and the bad one 0.003-0.005; the ratios measured
    # were <= 0.47 (mAP) and 1.07-1.19 (loss: 1.07 on an AVX-512 machine, 1.818 vs 1.699)
    assert bad.final["mAP"] < 0.6 * one.final["mAP"], (bad.final["mAP"], one.final["mAP"])
    assert bad.final["loss"] > 1.03 * one.final["loss"], (bad.final["loss"], one.final["loss"])


def test_non_finite_loss_fails_the_trial_with_a_recorded_reason(tiny, tmp_path):
    config = tiny(train={"epochs": 2, "optimizer": {"name": "sgd", "lr": 1.0e6, "momentum": 0.9}, "warmup": "none"})
    with pytest.raises(TrialFailed, match=r"non-finite loss\w* \(.*\) at epoch 1, iteration \d+") as info:
        run_trial(config, seed=0, out_dir=tmp_path, log=lambda m: None)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == info.value.reason


def test_a_checkpoint_of_another_trial_is_refused(tiny, tmp_path):
    from ablate.errors import ConfigError

    run_trial(tiny(train={"epochs": 1}), seed=0, out_dir=tmp_path, log=lambda m: None)
    with pytest.raises(ConfigError, match="holds a checkpoint of trial"):
        run_trial(tiny(train={"epochs": 1}), seed=5, out_dir=tmp_path, log=lambda m: None)


def test_channels_last_converts_the_weights_and_learns_the_same(tiny, tmp_path):
    pieces = build_pieces(tiny(train={"channels_last": True}), seed=0, device=torch.device("cpu"))
    convs = [m.weight for m in pieces.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    plain = run_trial(tiny(train={"epochs": 1}), seed=0, out_dir=tmp_path / "nchw", log=lambda m: None)
    nhwc = run_trial(tiny(train={"epochs": 1, "channels_last": True}), seed=0, out_dir=tmp_path / "nhwc",
                     log=lambda m: None)
    assert nhwc.final["loss"] == pytest.approx(plain.final["loss"], rel=1e-2)  # same maths, other rounding
