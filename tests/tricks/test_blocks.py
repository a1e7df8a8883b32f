"""Backbone options (model.norm, activation, plugins, context): each built into a real detector and
trained one step, plus the exact properties each is known by."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from ablate.models.backbones import build_body
from ablate.models.body import with_options
from ablate.models.build import build_model
from ablate.study.config import Model, TrialConfig
from ablate.tricks.blocks import ACTIVATIONS, CONTEXT, NORMS, PLUGINS
from ablate.tricks.blocks.context import SPP, SPPF
from ablate.tricks.blocks.surgery import DeformConv, residual_blocks

OPTIONS = ([("norm", n) for n in NORMS] + [("activation", n) for n in ACTIVATIONS]
           + [("plugins", [n]) for n in PLUGINS] + [("context", n) for n in CONTEXT])


def _targets(n: int = 2) -> list[dict]:
    return [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])}] * n


@pytest.mark.parametrize(("key", "value"), OPTIONS, ids=[f"{k}:{v}" for k, v in OPTIONS])
def test_option_trains_a_detector_step(key, value):
    torch.manual_seed(0)
    detector = build_model(TrialConfig.model_validate({"model": {key: value}}), num_classes=2).train()
    losses = detector([torch.rand(3, 128, 128) for _ in range(2)], _targets())
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    body = detector.model.backbone.body
    grads = [p.grad for p in body.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "a trainable body parameter got no gradient"


def _body(backbone: str = "tiny"):
    torch.manual_seed(0)
    return build_body(backbone)


@pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
def test_fresh_dcn_computes_the_conv_it_replaced(backbone):
    # zero offsets (and a mask of 1 for v2) sample the regular grid: the body's output is unchanged
    body, channels = _body(backbone)
    x = torch.rand(2, 3, 96, 96)
    before = body.eval()(x)
    for modulated in (False, True):
        plugged = with_options(body, channels, Model(backbone=backbone, plugins=[{"name": "dcn", "modulated": modulated}]))
        assert sum(isinstance(m, DeformConv) for m in plugged.modules()) == len(list(residual_blocks(body)))
        after = plugged.eval()(x)
        for level in before:
            torch.testing.assert_close(after[level], before[level], rtol=1e-4, atol=1e-5)
        body, channels = _body(backbone)


def test_stochastic_depth_rates_rise_with_depth_and_vanish_in_eval():
    body, channels = _body("resnet18")
    x = torch.rand(2, 3, 64, 64)
    before = body.eval()(x)["c5"]
    with_options(body, channels, Model(backbone="resnet18", plugins=[{"name": "stochastic_depth", "p": 0.3}]))
    rates = [m.p for m in body.modules() if type(m).__name__ == "StochasticDepth"]
    assert rates == pytest.approx([0.3 * i / 6 for i in range(1, 7)])  # resnet18: 2 blocks in each of c3..c5
    torch.testing.assert_close(body.eval()(x)["c5"], before)  # eval: every branch kept, outputs unchanged
    torch.manual_seed(1)
    assert not torch.allclose(body.train()(x)["c5"], body.train()(x)["c5"])  # train: branches drop at random


def test_frozen_bn_keeps_loaded_statistics_and_affine():
    body, channels = _body()
    bn = next(m for m in body.modules() if isinstance(m, nn.BatchNorm2d))
    bn.running_mean.fill_(0.5)
    x = torch.rand(2, 3, 64, 64)
    reference = body.eval()(x)["c5"]
    with_options(body, channels, Model(norm="frozen_bn"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    body.train()(x)  # train mode must neither update nor use batch statistics
    torch.testing.assert_close(body(x)["c5"], reference)


def test_group_norm_groups_divide_the_channels():
    body, channels = _body()
    with_options(body, channels, Model(norm={"name": "gn", "groups": 32}))
    norms = [m for m in body.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert {(m.num_channels, m.num_groups) for m in norms} == {(8, 8), (16, 16), (32, 32), (64, 32), (128, 32)}


@pytest.mark.parametrize(("name", "kind"), [("leaky_relu", nn.LeakyReLU), ("silu", nn.SiLU),
                                            ("hardswish", nn.Hardswish), ("mish", nn.Mish)])
def test_activation_replaces_every_relu(name, kind):
    body, channels = _body("resnet18")
    relus = sum(type(m) is nn.ReLU for m in body.modules())
    with_options(body, channels, Model(backbone="resnet18", activation=name))
    assert sum(type(m) is nn.ReLU for m in body.modules()) == 0
    assert sum(type(m) is kind for m in body.modules()) == relus


def test_sppf_is_spp_with_chained_pools():
    # a 5x5 max-pool applied twice is a 9x9 one, three times a 13x13: same output for the same weights
    torch.manual_seed(0)
    spp, sppf = SPP(pools=[5, 9, 13], channels=16).eval(), SPPF(chain=3, channels=16).eval()
    sppf.load_state_dict({k: v for k, v in spp.state_dict().items()})
    x = torch.randn(2, 16, 15, 15)
    torch.testing.assert_close(sppf(x), spp(x))


@pytest.mark.parametrize("name", ["gc", "non_local"])
def test_added_context_blocks_start_as_identity(name):
    body, channels = _body()
    x = torch.rand(2, 3, 64, 64)
    before = body.eval()(x)
    plugged = with_options(body, channels, Model(plugins=[{"name": name, "levels": ["c4", "c5"]}])).eval()
    after = plugged(x)
    assert set(plugged.after) == {"c4", "c5"}
    for level in before:
        torch.testing.assert_close(after[level], before[level])


def test_defaults_leave_the_body_unchanged():
    body, channels = _body()
    assert with_options(body, channels, Model()) is body


@pytest.mark.parametrize(("model", "message"), [
    ({"backbone": "vgg16", "plugins": ["dcn"]}, "plugins: dcn changes residual blocks, and backbone vgg16 has none"),
    ({"backbone": "mobilenet_v3", "plugins": ["stochastic_depth"]}, "backbone mobilenet_v3 has none"),
    ({"plugins": ["se", {"name": "se", "levels": ["c5"]}]}, "plugins: se listed twice"),
    ({"backbone": "vgg16", "norm": "gn"}, "norm: gn replaces BatchNorm layers, and backbone vgg16 has none"),
    ({"detector": "ssd", "backbone": "vgg16", "context": "spp"}, "which detector ssd with backbone vgg16 does not use"),
    ({"plugins": [{"name": "se", "levels": ["c6"]}]}, "levels"),
    ({"context": {"name": "spp", "pools": [4]}}, "pool sizes must be odd"),
])
def test_options_that_cannot_work_are_refused(model, message):
    with pytest.raises(ValidationError, match=message):
        TrialConfig.model_validate({"model": model})


@pytest.mark.parametrize("detector", ["retinanet", "fcos", "atss"])
@pytest.mark.parametrize("head_conv", ["depthwise", "grouped", "repconv"])
def test_head_conv_replaces_every_tower_conv(detector, head_conv):
    torch.manual_seed(0)
    config = TrialConfig.model_validate({"model": {"detector": detector, "head_conv": head_conv}})
    model = build_model(config, num_classes=2).train()
    towers = [(n, m) for n, m in model.model.head.named_modules() if n.split(".")[1:2] == ["conv"]]
    plain = [n for n, m in towers if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.groups == 1
             and not n.endswith(".conv3")]  # RepConv's own 3x3 branch
    assert not plain, f"tower convs kept as plain 3x3: {plain}"
    assert sum(type(m).__name__ == "RepConv" for _, m in towers) == (8 if head_conv == "repconv" else 0)
    sum(model([torch.rand(3, 128, 128)], _targets(1)).values()).backward()


def test_repconv_fused_eval_equals_the_branches():
    # RepVGG's claim: the fused 3x3 computes the sum of the 3x3, 1x1 and identity branches
    from ablate.tricks.blocks.convs import RepConv

    torch.manual_seed(0)
    for identity in (True, False):
        block = RepConv(16, identity)
        for p in block.parameters():  # weights far from their tiny init, so every branch matters
            nn.init.normal_(p)
        x = torch.randn(2, 16, 9, 11)
        torch.testing.assert_close(block.eval()(x), block.train()(x), rtol=1e-5, atol=1e-5)


def test_head_conv_is_refused_where_it_cannot_apply():
    with pytest.raises(ValidationError, match="model.head_conv: repconv does not apply to detector ssd"):
        TrialConfig.model_validate({"model": {"detector": "ssd", "head_conv": "repconv"}})
    with pytest.raises(ValidationError, match="head_conv: grouped with groups 12 needs model.channels divisible"):
        TrialConfig.model_validate({"model": {"channels": 64, "head_conv": {"name": "grouped", "groups": 12}}})


def test_dilation_widens_the_last_stage_and_keeps_its_stride():
    body, channels = _body("resnet18")
    x = torch.rand(1, 3, 96, 96)
    before = body.eval()(x)
    with_options(body, channels, Model(backbone="resnet18", plugins=[{"name": "dilation", "rate": 2}]))
    convs = [m.conv2 for _, m in residual_blocks(body, ("c5",))]
    assert [(c.dilation, c.padding) for c in convs] == [((2, 2), (2, 2))] * 2
    assert all(m.conv2.dilation == (1, 1) for _, m in residual_blocks(body, ("c3", "c4")))
    after = body(x)
    assert after["c5"].shape == before["c5"].shape  # stride 32 kept
    torch.testing.assert_close(after["c4"], before["c4"])  # earlier stages untouched
    assert not torch.allclose(after["c5"], before["c5"])
