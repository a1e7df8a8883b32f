"""model.assigner in the detectors: the defaults are torchvision's own matching, and another one really changes it."""

import pytest
import torch
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.retinanet import RetinaNet


def matched_by(spy_on_head, model, images, targets):
    """What ablate's detector passes to its head loss (targets, head outputs, anchors, matched indices)."""
    seen = spy_on_head(model)
    model(images, targets)
    return seen["args"]


def test_retinanet_default_is_torchvision_matcher(make_config, make_detector, make_batch, spy_on_head):
    model = make_detector(make_config()).train()
    images, targets = make_batch(seed=3, empty=(1,))
    tv_targets, head_outputs, anchors, ours = matched_by(spy_on_head, model, images, targets)
    seen = spy_on_head(model)
    RetinaNet.compute_loss(model.model, tv_targets, head_outputs, anchors)  # torchvision's own matching
    theirs = seen["args"][-1]
    assert any(bool((m >= 0).any()) for m in ours) and any(bool((m == -2).any()) for m in ours)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_fcos_default_is_torchvision_centre_sampling(make_config, make_detector, make_batch, spy_on_head):
    model = make_detector(make_config(model={"detector": "fcos"})).train()
    images, targets = make_batch(seed=5, empty=(0,))
    tv_targets, head_outputs, anchors, ours = matched_by(spy_on_head, model, images, targets)
    levels = model.model.anchor_generator.level_counts
    seen = spy_on_head(model)
    FCOS.compute_loss(model.model, tv_targets, head_outputs, anchors, levels)
    theirs = seen["args"][-1]
    assert sum(int((m >= 0).sum()) for m in ours) > 0
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("detector", ["retinanet", "fcos", "atss"])
def test_another_assigner_trains_other_anchors(detector, make_config, make_detector, make_batch, spy_on_head):
    images, targets = make_batch(seed=7)
    own = make_detector(make_config(model={"detector": detector})).train()
    other_name = "fcos_ranges" if detector != "fcos" else "atss"
    other = make_detector(make_config(model={"detector": detector, "assigner": other_name})).train()
    other.load_state_dict(own.state_dict())
    first = matched_by(spy_on_head, own, images, targets)[-1]
    second = matched_by(spy_on_head, other, images, targets)[-1]
    assert all(int((m >= 0).sum()) > 0 for m in second)
    assert any(not torch.equal(a, b) for a, b in zip(first, second))
