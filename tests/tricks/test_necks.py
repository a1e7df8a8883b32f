from collections import OrderedDict

import pytest
import torch

from ablate.tricks.necks import NECKS
from ablate.tricks.registry import build, lookup

IN_CHANNELS = [8, 16, 32]
SIZES = [32, 16, 8]


def make_features(batch: int = 2) -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    return OrderedDict(
        (str(i), torch.randn(batch, c, s, s, requires_grad=True)) for i, (c, s) in enumerate(zip(IN_CHANNELS, SIZES))
    )


@pytest.mark.parametrize("name", list(NECKS))
def test_neck_forward_backward(name):
    neck = build(NECKS, name, "neck", {}, in_channels=IN_CHANNELS, out_channels=12, extra_levels=2)
    assert neck.out_channels == 12
    feats = make_features()
    out = neck(feats)
    assert list(out) == ["0", "1", "2", "extra0", "extra1"]
    for f, size in zip(out.values(), SIZES + [4, 2]):
        assert f.shape == (2, 12, size, size)
    sum(f.square().mean() for f in out.values()).backward()
    for key, f in feats.items():
        assert f.grad is not None and f.grad.abs().sum() > 0, f"no gradient reaches input level {key}"
    unused = [n for n, p in neck.named_parameters() if p.grad is None]
    assert not unused, f"parameters never used in forward: {unused}"


@pytest.mark.parametrize("name", list(NECKS))
def test_neck_without_extra_levels(name):
    neck = build(NECKS, name, "neck", {}, in_channels=IN_CHANNELS, out_channels=12)
    assert list(neck(make_features())) == ["0", "1", "2"]


@pytest.mark.parametrize("name", ["fpn", "pan"])
def test_fusing_necks_mix_levels(name):
    # a coarse-level change must reach the finest output (top-down path), unlike "none"
    torch.manual_seed(0)
    neck = build(NECKS, name, "neck", {}, in_channels=IN_CHANNELS, out_channels=12).eval()
    feats = make_features()
    changed = OrderedDict(feats, **{"2": feats["2"] + 1})
    assert not torch.allclose(neck(feats)["0"], neck(changed)["0"])
    plain = build(NECKS, "none", "neck", {}, in_channels=IN_CHANNELS, out_channels=12)
    assert torch.equal(plain(feats)["0"], plain(changed)["0"])


def test_bifpn_weights_are_learnable_and_repeats_count():
    neck = build(NECKS, "bifpn", "neck", {"repeats": 3}, in_channels=IN_CHANNELS, out_channels=12)
    weights = [p for n, p in neck.named_parameters() if n.endswith(".weights")]
    # per cell: 2 top-down nodes + 2 bottom-up nodes for 3 levels
    assert len(weights) == 3 * 4
    assert all(p.requires_grad for p in weights)
    sum(f.sum() for f in neck(make_features()).values()).backward()
    assert all(p.grad is not None for p in weights)


def test_bifpn_two_levels():
    neck = build(NECKS, "bifpn", "neck", {}, in_channels=[8, 16], out_channels=12, extra_levels=1)
    feats = OrderedDict([("0", torch.randn(1, 8, 16, 16)), ("1", torch.randn(1, 16, 8, 8))])
    assert [f.shape[-1] for f in neck(feats).values()] == [16, 8, 4]


def test_bifpn_params_validated():
    with pytest.raises(ValueError):
        build(NECKS, "bifpn", "neck", {"repeats": 0}, in_channels=IN_CHANNELS, out_channels=12)
    with pytest.raises(ValueError):
        build(NECKS, "fpn", "neck", {"repeats": 2}, in_channels=IN_CHANNELS, out_channels=12)


@pytest.mark.parametrize("name", list(NECKS))
def test_neck_documented(name):
    trick = NECKS[name]
    assert trick.doc and "\n" not in trick.doc
    for field in trick.params.model_fields.values():
        assert field.description


def test_unknown_neck_suggests():
    with pytest.raises(KeyError, match="did you mean 'bifpn'"):
        lookup(NECKS, "bipfn", "neck")
