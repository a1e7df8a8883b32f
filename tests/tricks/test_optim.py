"""Optimisers, parameter groups and the loop regularisers (EMA, SWA, clipping, AMP) on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from ablate.tricks import registry
from ablate.tricks.optim import OPTIMIZERS, REGULARISERS
from ablate.tricks.optim.optimizers import param_groups

LR_EFFECTIVE = 0.0037  # deliberately unlike every Params default


def tiny() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 0: weight decayed, bias exempt
        nn.BatchNorm2d(4),  # 1: both exempt
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),  # 5: weight decayed, bias exempt
    )


def optimizer(name: str, model: nn.Module, **params) -> torch.optim.Optimizer:
    return registry.build(OPTIMIZERS, name, "optimizer", params, model=model, lr_effective=LR_EFFECTIVE)


def regulariser(name: str, **params_and_context):
    context = {k: params_and_context.pop(k) for k in ("model", "device") if k in params_and_context}
    return registry.build(REGULARISERS, name, "regulariser", params_and_context, **context)


def ids(params) -> set[int]:
    return {id(p) for p in params}


# ---- catalogue hygiene --------------------------------------------------------


# ---- optimisers -------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("norm_bias_decay", [True, False])
def test_optimizer_builds_with_defaults_and_steps(name, norm_bias_decay):
    model = tiny()
    opt = optimizer(name, model, lr=0.5, norm_bias_decay=norm_bias_decay)  # lr is for the base batch only
    assert [g["lr"] for g in opt.param_groups] == [LR_EFFECTIVE] * len(opt.param_groups)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(2, 3, 8, 8)).square().sum()
    loss.backward()
    opt.step()
    # the conv bias before BatchNorm gets no gradient (BN removes the mean): only decay can move it
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.grad.abs().sum() > 1e-6]
    assert len(moved) >= 5 and all(moved)


def test_sgd_passes_momentum_and_nesterov():
    opt = optimizer("sgd", tiny(), momentum=0.8, nesterov=True, weight_decay=3e-4)
    assert isinstance(opt, torch.optim.SGD)
    for g in opt.param_groups:
        assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.8, True, 3e-4)
    defaults = optimizer("sgd", tiny()).param_groups[0]
    assert (defaults["momentum"], defaults["nesterov"], defaults["weight_decay"]) == (0.9, False, 1e-4)


def test_sgd_nesterov_without_momentum_is_invalid():
    with pytest.raises(ValidationError, match="nesterov"):
        optimizer("sgd", tiny(), momentum=0.0, nesterov=True)


def test_adam_passes_betas_and_eps():
    opt = optimizer("adam", tiny(), betas=(0.8, 0.99), eps=1e-6)
    assert type(opt) is torch.optim.Adam
    g = opt.param_groups[0]
    assert (g["betas"], g["eps"], g["weight_decay"]) == ((0.8, 0.99), 1e-6, 0.0)


@pytest.mark.parametrize("betas", [(1.0, 0.999), (0.9, -0.1)])
def test_adam_betas_out_of_range_are_invalid(betas):
    with pytest.raises(ValidationError, match="betas"):
        optimizer("adam", tiny(), betas=betas)


def test_adamw_defaults_to_decoupled_decay_005():
    opt = optimizer("adamw", tiny())
    assert type(opt) is torch.optim.AdamW
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05]


def test_unknown_optimizer_param_is_rejected():
    with pytest.raises(ValidationError, match="momentum"):
        optimizer("adam", tiny(), momentum=0.9)


# ---- parameter groups -------------------------------------------------------------


def test_norm_bias_decay_true_is_one_decayed_group():
    model = tiny()
    groups = param_groups(model, 1e-4, norm_bias_decay=True)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    assert ids(groups[0]["params"]) == ids(model.parameters())


def test_norm_bias_decay_false_exempts_norms_and_biases():
    model = tiny()
    conv, bn, linear = model[0], model[1], model[5]
    decayed, exempt = param_groups(model, 1e-4, norm_bias_decay=False)
    assert decayed["weight_decay"] == 1e-4 and exempt["weight_decay"] == 0.0
    assert ids(decayed["params"]) == ids([conv.weight, linear.weight])
    assert ids(exempt["params"]) == ids([conv.bias, bn.weight, bn.bias, linear.bias])
    everything = decayed["params"] + exempt["params"]
    assert len(everything) == len(ids(everything)) == len(list(model.parameters()))


def test_other_norms_are_exempt_and_frozen_parameters_left_out():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(4 * 2 * 2),
                          nn.Linear(16, 2))
    model[4].bias.requires_grad_(False)
    decayed, exempt = param_groups(model, 0.1, norm_bias_decay=False)
    assert ids(decayed["params"]) == ids([model[0].weight, model[4].weight])
    assert ids(exempt["params"]) == ids([model[1].weight, model[1].bias, model[3].weight, model[3].bias])


def test_optimizer_groups_carry_weight_decay():
    model = tiny()
    opt = optimizer("sgd", model, weight_decay=5e-4, norm_bias_decay=False)
    decayed, exempt = opt.param_groups
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (5e-4, 0.0)
    assert ids(decayed["params"]) == ids([model[0].weight, model[5].weight])
    assert [g["lr"] for g in opt.param_groups] == [LR_EFFECTIVE, LR_EFFECTIVE]


def test_exempt_parameters_do_not_decay():
    """With a zero gradient only weight decay moves a parameter: the exempt ones stay put."""
    model = tiny()
    opt = optimizer("sgd", model, weight_decay=0.5, momentum=0.0, norm_bias_decay=False)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    decayed, exempt = opt.param_groups
    for p in exempt["params"]:
        assert torch.equal(p, before[id(p)])
    for p in decayed["params"]:
        assert torch.allclose(p, before[id(p)] * (1 - LR_EFFECTIVE * 0.5))


# ---- EMA and SWA -------------------------------------------------------------------


class One(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([value]))


def set_to(model: One, value: float) -> None:
    with torch.no_grad():
        model.w.fill_(value)


def test_ema_is_the_hand_computed_average():
    model = One(10.0)
    ema = regulariser("ema", enabled=True, decay=0.75, warmup=0, model=model)
    set_to(model, 2.0)
    ema.update_parameters(model)  # the first update copies the model
    assert ema.module.w.item() == 2.0
    set_to(model, 6.0)
    ema.update_parameters(model)
    assert ema.module.w.item() == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)  # 3.0
    set_to(model, 10.0)
    ema.update_parameters(model)
    assert ema.module.w.item() == pytest.approx(0.75 * 3.0 + 0.25 * 10.0)  # 4.75
    assert model.w.item() == 10.0  # the model itself is untouched


def test_ema_decay_ramps_up_as_yolov5():
    # update t (the first average after the copy is t = 1) decays with 0.75 * (1 - exp(-t / 2))
    model = One(0.0)
    ema = regulariser("ema", enabled=True, decay=0.75, warmup=2, model=model)
    ema.update_parameters(model)  # copies 0.0
    expected = 0.0
    for t, value in enumerate((4.0, 8.0, 2.0), start=1):
        set_to(model, value)
        ema.update_parameters(model)
        d = 0.75 * (1 - math.exp(-t / 2))
        expected = d * expected + (1 - d) * value
        assert ema.module.w.item() == pytest.approx(expected)
    # the constant decay of a long run is reached: after 40,000 updates the ramp is 0.9998 to 1e-6
    from ablate.tricks.optim.regularisers import ema_decay

    assert ema_decay(0.9998, 2000, 40_000) == pytest.approx(0.9998, abs=1e-6)
    assert ema_decay(0.9998, 2000, 1000) == pytest.approx(0.9998 * (1 - math.exp(-0.5)))


def test_swa_is_the_equal_average_of_snapshots():
    model = One(0.0)
    swa = regulariser("swa", enabled=True, epochs=3, model=model)
    for value in (1.0, 2.0, 6.0):
        set_to(model, value)
        swa.update_parameters(model)
    assert swa.module.w.item() == pytest.approx(3.0)
    assert int(swa.n_averaged) == 3


@pytest.mark.parametrize("name", ["ema", "swa"])
def test_disabled_averages_are_none(name):
    assert regulariser(name, model=One(1.0)) is None
    assert regulariser(name, enabled=False, model=One(1.0)) is None


@pytest.mark.parametrize("name", ["ema", "swa"])
def test_averages_include_batchnorm_statistics(name):
    model = tiny()
    avg = regulariser(name, enabled=True, model=model)
    means = []
    for shift in (0.0, 4.0):
        model.train()
        model(torch.randn(4, 3, 8, 8) + shift)
        means.append(model[1].running_mean.clone())
        avg.update_parameters(model)
    got = avg.module[1].running_mean
    if name == "swa":
        assert torch.allclose(got, (means[0] + means[1]) / 2)
    else:
        d = 0.9998 * (1 - math.exp(-1 / 2000))  # the first average, at the start of the ramp
        assert torch.allclose(got, d * means[0] + (1 - d) * means[1])
    avg.module.eval()
    assert avg(torch.randn(1, 3, 8, 8)).shape == (1, 2)


# ---- gradient clipping ---------------------------------------------------------------


def with_grad(*values: float) -> nn.Parameter:
    p = nn.Parameter(torch.zeros(len(values)))
    p.grad = torch.tensor(values)
    return p


def test_clip_off_returns_none_and_leaves_grads():
    p = with_grad(30.0, 40.0)
    clip = regulariser("clip_grad")
    assert clip([p]) is None
    assert torch.equal(p.grad, torch.tensor([30.0, 40.0]))


def test_clip_returns_pre_clip_norm_and_clips_to_max_norm():
    p, q = with_grad(30.0, 40.0), with_grad(0.0)
    clip = regulariser("clip_grad", max_norm=1.0)
    assert clip([p, q]) == pytest.approx(50.0)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, rel=1e-5)
    assert p.grad.tolist() == pytest.approx([0.6, 0.8], rel=1e-5)


def test_clip_leaves_small_gradients():
    p = with_grad(0.3, 0.4)
    assert regulariser("clip_grad", max_norm=1.0)([p]) == pytest.approx(0.5)
    assert p.grad.tolist() == pytest.approx([0.3, 0.4])


def test_clip_norm_type():
    p = with_grad(3.0, -4.0)
    assert regulariser("clip_grad", max_norm=1.0, norm_type=1.0)([p]) == pytest.approx(7.0)
    assert p.grad.abs().sum().item() == pytest.approx(1.0, rel=1e-5)


# ---- AMP ----------------------------------------------------------------------------------


def test_amp_on_cpu_is_a_noop_with_a_notice():
    amp = regulariser("amp", enabled=True, device="cpu")
    assert not amp.active
    assert "cpu" in amp.notice.lower() and "no-op" in amp.notice
    assert not amp.scaler.is_enabled()
    with amp.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_amp_disabled_has_no_notice(device):
    amp = regulariser("amp", device=device)
    assert (amp.active, amp.notice) == (False, None)
    assert not amp.scaler.is_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("dtype", "torch_dtype", "scaled"), [("fp16", torch.float16, True), ("bf16", torch.bfloat16, False)])
def test_amp_on_cuda(dtype, torch_dtype, scaled):
    amp = regulariser("amp", enabled=True, dtype=dtype, device="cuda")
    assert amp.active and amp.notice is None and amp.scaler.is_enabled() == scaled
    with amp.autocast():
        x = torch.ones(2, 2, device="cuda")
        assert (x @ x).dtype == torch_dtype


def test_amp_dtype_is_validated():
    with pytest.raises(ValidationError, match="fp16"):
        regulariser("amp", enabled=True, dtype="fp8", device="cpu")
