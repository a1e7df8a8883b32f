"""train.compile: the backbone and head compiled in place (same parameter names, same losses), or eager
with a notice where there is no compiler."""

from __future__ import annotations

import copy

import pytest
import torch

from ablate.engine.compile import compile_model, compiler_missing
from ablate.models.build import build_model
from ablate.study.config import TrialConfig


def _detector():
    torch.manual_seed(0)
    config = TrialConfig.model_validate({"model": {"detector": {"name": "fcos", "head_convs": 1},
                                                   "backbone": "tiny", "channels": 16}, "data": {"image_size": 64}})
    return build_model(config, num_classes=3)


def _batch():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0], [2.0, 2.0, 12.0, 14.0]]), "labels": torch.tensor([0, 2])}]
    return images, targets


def test_without_a_compiler_the_model_stays_eager_and_the_trial_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, c++ or clang++
    monkeypatch.delenv("CXX", raising=False)
    detector = _detector()
    notices = compile_model(detector, torch.device("cpu"))
    assert notices == ["train.compile: no C++ compiler (g++, c++, clang++) on PATH, which torch.compile needs on "
                       "cpu: training eagerly"]
    assert detector.model.backbone._compiled_call_impl is None and detector.model.head._compiled_call_impl is None


@pytest.mark.slow
@pytest.mark.skipif(compiler_missing(torch.device("cpu")) is not None, reason="no C++ compiler for torch.compile")
def test_a_compiled_detector_keeps_its_parameter_names_and_gives_the_eager_losses_and_gradients():
    eager = _detector().train()
    compiled = copy.deepcopy(eager)
    assert compile_model(compiled, torch.device("cpu")) == []
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints, EMA and resume unchanged
    images, targets = _batch()
    losses = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        out = model(images, targets)
        sum(out.values()).backward()
        losses[name] = ({k: v.item() for k, v in out.items()},
                        {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    (eager_loss, eager_grad), (compiled_loss, compiled_grad) = losses["eager"], losses["compiled"]
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4, abs=1e-5)
    assert eager_grad.keys() == compiled_grad.keys()
    for k, g in eager_grad.items():
        torch.testing.assert_close(compiled_grad[k], g, rtol=1e-3, atol=1e-5, msg=k)
