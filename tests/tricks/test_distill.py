"""Distillation losses on tiny exact cases, and where train.distill is refused."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from ablate.study.config import TrialConfig
from ablate.tricks.distill import DISTILL, distill_problem
from ablate.tricks.distill.losses import FeaturesDistill, LogitsDistill, features_distill, logits_distill
from ablate.tricks.registry import build


def _bce(p: float, q: float) -> float:
    return -(p * math.log(q) + (1 - p) * math.log(1 - q))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_logits_kl_is_zero_when_the_student_agrees_and_bce_is_then_the_teachers_entropy():
    z = torch.tensor([[0.0, 2.0, -1.0], [3.0, -2.0, 0.5]])  # [N=2, C=3]
    assert logits_distill(z, z, temperature=1.0, loss="kl").item() == 0.0
    entropy = sum(_bce(_sig(x), _sig(x)) for x in z.flatten().tolist()) / 2  # summed over C, mean over N
    assert logits_distill(z, z, temperature=1.0, loss="bce").item() == pytest.approx(entropy, rel=1e-6)


def test_logits_values_by_hand_with_temperature():
    s, t = torch.tensor([[0.0]]), torch.tensor([[2.0]])
    T = 2.0
    p, q = _sig(2.0 / T), _sig(0.0 / T)  # teacher 0.7311, student 0.5
    bce = _bce(p, q) * T * T
    kl = (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))) * T * T
    assert logits_distill(s, t, temperature=T, loss="bce").item() == pytest.approx(bce, rel=1e-6)
    assert logits_distill(s, t, temperature=T, loss="kl").item() == pytest.approx(kl, rel=1e-5)
    assert kl == pytest.approx(0.4438, abs=1e-4)  # 4 x (0.7311 ln 1.4621 + 0.2689 ln 0.5379) = 4 x 0.11094
    # the agreeing student is the minimum: any move away costs more
    for other in (-1.0, 0.5, 1.5, 3.0):
        assert logits_distill(torch.tensor([[other]]), t, temperature=T).item() > 0.0


def test_logits_gradient_reaches_only_the_student():
    s = torch.tensor([[0.0, 1.0]], requires_grad=True)
    t = torch.tensor([[1.0, 1.0]], requires_grad=True)
    logits_distill(s, t).backward()
    assert s.grad[0, 0] < 0 and s.grad[0, 1] == 0  # pulled up towards the teacher; the agreeing class not moved
    assert t.grad is None


def test_features_mse_per_level_then_mean_and_the_module_weight():
    a = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 1, 1)]
    b = [torch.ones(1, 2, 2, 2), torch.full((1, 2, 1, 1), 3.0)]
    assert features_distill(a, a).item() == 0.0
    assert features_distill(a, b).item() == pytest.approx((1.0 + 9.0) / 2)
    loss = FeaturesDistill(teacher="baseline", weight=0.5)
    assert loss({"features": a}, {"features": b}).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="model.channels"):
        features_distill([torch.zeros(1, 2, 2, 2)], [torch.zeros(1, 3, 2, 2)])


def test_catalogue_builds_each_entry_and_the_logits_module_flattens_anchors():
    assert build(DISTILL, "none", "distill") is None
    module = build(DISTILL, "logits", "distill", {"teacher": "baseline", "weight": 2.0, "temperature": 1.0})
    assert isinstance(module, LogitsDistill) and module.needs == "head"
    s, t = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)  # [B, HWA, C]
    t[0, 0, 0] = 2.0
    expected = 2.0 * logits_distill(s[0, 0:1], t[0, 0:1], temperature=1.0).item() / 6  # one anchor of 6 differs
    assert module({"cls_logits": s}, {"cls_logits": t}).item() == pytest.approx(expected, rel=1e-6)
    assert build(DISTILL, "features", "distill", {"teacher": "x"}).needs == "features"


def test_distill_with_a_detector_that_has_no_dense_head_is_refused_naming_both_keys():
    assert distill_problem("none", "ssd") is None and distill_problem("logits", "atss") is None
    with pytest.raises(ValidationError, match=r"train.distill: features .* model.detector: detr .* retinanet, fcos, atss"):
        TrialConfig.model_validate({"model": {"detector": "detr"}, "train": {"distill": "features"}})
    config = TrialConfig.model_validate({"train": {"distill": {"teacher": "model.neck=pan"}}})
    assert config.train.distill.name == "logits" and config.train.distill.teacher == "model.neck=pan"
