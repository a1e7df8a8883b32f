"""SSD: torchvision's own loss with the paper's losses, hard negative mining's ratio, the VGG16 body, SSDlite."""

import torch
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead


def spy_on_loss(model):
    """Keep the arguments of ``model``'s SSD ``compute_loss`` (it matches in ``forward``, then calls it)."""
    ssd, seen = model.model, {}
    original = ssd.compute_loss

    def spy(*args):
        seen["args"] = args
        return original(*args)

    ssd.compute_loss = spy
    return seen


def test_ce_and_smooth_l1_are_torchvision_ssd_loss(make_config, make_detector, make_batch):
    """The paper's losses from the catalogue equal torchvision's SSD loss, hard negative mining included:
    its C + 1 softmax is ours with the background logit pinned at 0."""
    model = make_detector(make_config(model={"detector": "ssd"}, loss={"cls": "ce", "box": {"name": "smooth_l1",
                                                                                                "beta": 1.0}}))
    images, targets = make_batch(seed=2, empty=(1,))
    seen = spy_on_loss(model)
    losses = model.train()(images, targets)
    tv_targets, head_outputs, anchors, matched = seen["args"]
    logits = head_outputs["cls_logits"]  # [B, A, C]
    shifted = [{**t, "labels": t["labels"] + 1} for t in tv_targets]  # torchvision: 0 is background
    expected = SSD.compute_loss(model.model, shifted, {
        "cls_logits": torch.cat([logits.new_zeros(*logits.shape[:2], 1), logits], dim=2),
        "bbox_regression": head_outputs["bbox_regression"]}, anchors, matched)
    assert sum(int((m >= 0).sum()) for m in matched) > 0
    torch.testing.assert_close(losses["loss_cls"], expected["classification"])
    torch.testing.assert_close(losses["loss_box"], expected["bbox_regression"])


def test_hard_negative_mining_keeps_ratio_negatives_per_positive(make_config, make_detector, make_batch):
    images, targets = make_batch(seed=3)
    per_anchor = {}
    for ratio in (1.0, 3.0):
        model = make_detector(make_config(model={"detector": {"name": "ssd", "neg_pos_ratio": ratio}},
                                          loss={"cls": "ce"})).train()
        seen = spy_on_loss(model)
        calls = []
        model.model.cls_loss.register_forward_hook(lambda _, args, out, calls=calls: calls.append(out.detach()))
        losses = model(images, targets)
        matched = seen["args"][-1]
        positives = [int((m >= 0).sum()) for m in matched]
        # the loss is the positives' and the hardest ratio x positives negatives' per-anchor loss, per positive
        expected = 0.0
        for anchor_loss, m, n in zip(calls, matched, positives):
            negative = anchor_loss.clone()
            negative[m >= 0] = -float("inf")
            expected += anchor_loss[m >= 0].sum() + negative.topk(int(ratio * n)).values.sum()
        torch.testing.assert_close(losses["loss_cls"], expected / sum(positives))
        per_anchor[ratio] = losses["loss_cls"].item()
    assert per_anchor[3.0] > per_anchor[1.0]


def test_vgg16_body_is_torchvision_s_ssd300_and_ssd512(make_config, make_detector):
    ssd512 = make_detector(make_config(model={"detector": "ssd", "backbone": "vgg16"}, data={"image_size": 512}))
    assert ssd512.model.backbone.out_channels == [512, 1024, 512, 256, 256, 256, 256]  # conv12_2 from 512 px
    assert len(ssd512.model.anchor_generator.aspect_ratios) == 7
    ssd300 = make_detector(make_config(model={"detector": "ssd", "backbone": "vgg16"}, data={"image_size": 300}))
    assert len(ssd300.model.anchor_generator.aspect_ratios) == 6
    with torch.no_grad():  # conv4_3 at stride 8, fc7 at 16, then the extra layers: the paper's maps at 300 px
        maps = ssd300.model.backbone(torch.rand(1, 3, 300, 300))
    assert [f.shape[-1] for f in maps.values()] == [38, 19, 10, 5, 3, 1]


def test_lite_is_ssdlite_s_depthwise_separable_head(make_config, make_detector, make_batch):
    model = make_detector(make_config(model={"detector": {"name": "ssd", "lite": True}}))
    assert isinstance(model.model.head, SSDLiteHead)
    groups = [m.groups for m in model.model.head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(groups) > 1  # depthwise convs
    images, targets = make_batch(seed=5)
    sum(model.train()(images, targets).values()).backward()
