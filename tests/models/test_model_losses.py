"""The catalogue losses really replace torchvision's, in value, in gradient and at inference."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead
from torchvision.ops import box_iou


def twin(make_config, make_detector, reference, **sections):
    """A detector built from ``sections`` holding ``reference``'s exact weights."""
    model = make_detector(make_config(**sections))
    model.load_state_dict(reference.state_dict())
    return model.train()


def grad_of(model, images, targets, key, param):
    model.zero_grad()
    losses = model(images, targets)
    losses[key].backward()
    return losses[key].detach(), param(model).grad.clone()


def box_weight(model):
    head = model.model.head
    return head.regression_head.bbox_reg.weight


def cls_weight(model):
    return model.model.head.classification_head.cls_logits.weight


@pytest.mark.parametrize("detector", ["retinanet", "fcos"])
def test_box_loss_choice_changes_value_and_gradient(detector, make_config, make_detector, make_batch):
    images, targets = make_batch(seed=1)
    smooth = make_detector(make_config(model={"detector": detector}, loss={"box": "smooth_l1"})).train()
    giou = twin(make_config, make_detector, smooth, model={"detector": detector}, loss={"box": "giou"})
    value_s, grad_s = grad_of(smooth, images, targets, "loss_box", box_weight)
    value_g, grad_g = grad_of(giou, images, targets, "loss_box", box_weight)
    assert value_s > 0 and value_g > 0
    assert not torch.isclose(value_s, value_g, rtol=1e-3)
    assert grad_s.abs().sum() > 0 and grad_g.abs().sum() > 0
    assert not torch.allclose(grad_s, grad_g, rtol=1e-2, atol=0)


@pytest.mark.parametrize("detector", ["retinanet", "fcos"])
def test_cls_loss_choice_changes_value_and_gradient(detector, make_config, make_detector, make_batch):
    images, targets = make_batch(seed=2)
    focal = make_detector(make_config(model={"detector": detector}, loss={"cls": "focal"})).train()
    bce = twin(make_config, make_detector, focal, model={"detector": detector}, loss={"cls": "bce"})
    value_f, grad_f = grad_of(focal, images, targets, "loss_cls", cls_weight)
    value_b, grad_b = grad_of(bce, images, targets, "loss_cls", cls_weight)
    assert not torch.isclose(value_f, value_b, rtol=1e-3)
    assert not torch.allclose(grad_f, grad_b, rtol=1e-2, atol=0)


@pytest.mark.parametrize(
    ("box", "torchvision_name"), [("giou", "giou"), ("diou", "diou"), ({"name": "smooth_l1", "beta": 1.0}, "smooth_l1")]
)
def test_retinanet_matches_torchvision_own_losses(box, torchvision_name, make_config, make_detector, make_batch, spy_on_head):
    """focal + giou/diou/smooth_l1(beta 1) from the catalogue equal torchvision's built-in RetinaNet losses."""
    model = make_detector(make_config(loss={"cls": "focal", "box": box})).train()
    images, targets = make_batch(seed=3, empty=(1,))
    seen = spy_on_head(model)
    losses = model(images, targets)
    tv_targets, head_outputs, anchors, matched = seen["args"]
    assert sum(int((m >= 0).sum()) for m in matched) > 0  # there is something to regress
    assert any(bool((m == -2).any()) for m in matched)  # and anchors to ignore

    cls_head, reg_head = model.model.head.classification_head, model.model.head.regression_head
    expected_cls = RetinaNetClassificationHead.compute_loss(cls_head, tv_targets, head_outputs, matched)
    reg_head._loss_type = torchvision_name
    expected_box = RetinaNetRegressionHead.compute_loss(reg_head, tv_targets, head_outputs, anchors, matched)
    torch.testing.assert_close(losses["loss_cls"], expected_cls)
    torch.testing.assert_close(losses["loss_box"], expected_box)


def test_retinanet_bce_recomputed_by_hand(make_config, make_detector, make_batch, spy_on_head):
    model = make_detector(make_config(loss={"cls": {"name": "bce", "weight": 2.0}})).train()
    images, targets = make_batch(seed=4)
    seen = spy_on_head(model)
    losses = model(images, targets)
    tv_targets, head_outputs, _, matched = seen["args"]
    per_image = []
    for target, logits, m in zip(tv_targets, head_outputs["cls_logits"], matched):
        onehot = torch.zeros_like(logits)
        fg = m >= 0
        onehot[fg, target["labels"][m[fg]]] = 1
        valid = m != -2  # between the IoU thresholds: ignored
        bce = F.binary_cross_entropy_with_logits(logits[valid], onehot[valid], reduction="sum")
        per_image.append(2.0 * bce / max(1, int(fg.sum())))
    torch.testing.assert_close(losses["loss_cls"], sum(per_image) / len(per_image))


def test_fcos_matches_torchvision_own_losses(make_config, make_detector, make_batch, spy_on_head):
    """focal + giou from the catalogue equal torchvision's FCOS losses, centerness included."""
    model = make_detector(make_config(model={"detector": "fcos"}, loss={"cls": "focal", "box": "giou"})).train()
    images, targets = make_batch(seed=5, empty=(0,))
    seen = spy_on_head(model)
    losses = model(images, targets)
    expected = FCOSHead.compute_loss(model.model.head, *seen["args"])
    assert expected["bbox_regression"] > 0
    torch.testing.assert_close(losses["loss_cls"], expected["classification"])
    torch.testing.assert_close(losses["loss_box"], expected["bbox_regression"])
    torch.testing.assert_close(losses["loss_ctr"], expected["bbox_ctrness"])


def test_fcos_delta_loss_sees_encoded_ltrb(make_config, make_detector, make_batch, spy_on_head):
    model = make_detector(make_config(model={"detector": "fcos"}, loss={"box": "l1"})).train()
    images, targets = make_batch(seed=6)
    seen = spy_on_head(model)
    losses = model(images, targets)
    tv_targets, head_outputs, anchors, matched = seen["args"]
    coder = model.model.head.box_coder
    total, count = 0.0, 0
    for target, deltas, a, m in zip(tv_targets, head_outputs["bbox_regression"], anchors, matched):
        fg = m >= 0
        ltrb = coder.encode(a[fg], target["boxes"][m[fg]])  # distances / stride
        total = total + (deltas[fg] - ltrb).abs().sum()
        count += int(fg.sum())
    torch.testing.assert_close(losses["loss_box"], total / max(1, count))


def test_loss_weight_scales_the_named_loss(make_config, make_detector, make_batch):
    images, targets = make_batch(seed=7)
    plain = make_detector(make_config(loss={"box": "ciou"})).train()
    heavy = twin(make_config, make_detector, plain, loss={"box": {"name": "ciou", "weight": 3.0}})
    torch.testing.assert_close(heavy(images, targets)["loss_box"], 3.0 * plain(images, targets)["loss_box"])


# ---- inference scores -----------------------------------------------------------


def level_outputs(logits, **extra):
    """One level, one image: head outputs as ``postprocess_detections`` receives them.

    Anchor ``i`` is the box ``[16 i, 0, 16 i + 16, 16]`` and the deltas are zero, so a
    candidate's box tells which anchor it came from.
    """
    n = logits.shape[0]
    outputs = {"cls_logits": [logits[None]], "bbox_regression": [torch.zeros(1, n, 4)]}
    outputs.update({k: [v[None]] for k, v in extra.items()})
    anchors = [[torch.tensor([[16.0 * i, 0.0, 16.0 * i + 16, 16.0] for i in range(n)])]]
    return outputs, anchors


def scores_by_anchor(raw, n, num_classes=3):
    """``[n, C]`` table of candidate scores, indexed by (anchor from the box, label)."""
    table = torch.full((n, num_classes), float("nan"))
    for score, label, box in zip(raw["scores"], raw["labels"], raw["boxes"]):
        table[int(box[0]) // 16, int(label)] = score
    return table


LOGITS = torch.tensor([[3.0, 2.0, 1.0], [0.0, -1.0, 4.0]])  # 2 anchors x 3 classes


@pytest.mark.parametrize(("cls", "softmax"), [("ce", True), ("focal", False), ("bce", False)])
def test_retinanet_scores_come_from_the_cls_loss(cls, softmax, make_config, make_detector):
    model = make_detector(make_config(loss={"cls": cls}, eval={"score_thresh": 0.0})).eval()
    outputs, anchors = level_outputs(LOGITS)
    (raw,) = model.model.postprocess_detections(outputs, anchors, [(64, 64)])
    table = scores_by_anchor(raw, 2)
    if softmax:  # C classes plus a background logit fixed at 0
        expected = torch.cat([torch.zeros(2, 1), LOGITS], dim=1).softmax(dim=1)[:, 1:]
    else:
        expected = LOGITS.sigmoid()
    torch.testing.assert_close(table, expected)
    assert bool((table.sum(dim=1) <= 1.0).all()) == softmax  # sigmoid scores of one location exceed 1 here


@pytest.mark.parametrize("detector", ["retinanet", "fcos"])
def test_candidates_respect_score_thresh(detector, make_config, make_detector):
    model = make_detector(make_config(model={"detector": detector}, eval={"score_thresh": 0.9})).eval()
    table = LOGITS.sigmoid()  # focal: sigmoid scores
    extra = {}
    if detector == "fcos":
        extra = {"bbox_ctrness": torch.full((2, 1), 20.0)}
        table = torch.sqrt(table * torch.sigmoid(torch.tensor(20.0)))
    outputs, anchors = level_outputs(LOGITS, **extra)
    (raw,) = model.model.postprocess_detections(outputs, anchors, [(64, 64)])
    above = table > 0.9
    assert 0 < int(above.sum()) < table.numel()
    torch.testing.assert_close(raw["scores"], table[above].sort(descending=True).values)
    torch.testing.assert_close(scores_by_anchor(raw, 2)[above], table[above])


def test_fcos_scores_are_cls_scores_times_centerness(make_config, make_detector):
    model = make_detector(make_config(model={"detector": "fcos"}, loss={"cls": "ce"}, eval={"score_thresh": 0.0}))
    ctrness = torch.tensor([[0.5], [-2.0]])
    outputs, anchors = level_outputs(LOGITS, bbox_ctrness=ctrness)
    (raw,) = model.eval().model.postprocess_detections(outputs, anchors, [(64, 64)])
    softmax = torch.cat([torch.zeros(2, 1), LOGITS], dim=1).softmax(dim=1)[:, 1:]
    torch.testing.assert_close(scores_by_anchor(raw, 2), torch.sqrt(softmax * ctrness.sigmoid()))


# ---- losses that reweight by gradient density or learn the IoU (GHM, QFL, VFL) -------------


@pytest.mark.parametrize("detector", ["retinanet", "fcos", "atss"])
@pytest.mark.parametrize(("cls", "box"), [("ghm_c", "ghm_r"), ("quality_focal", "giou"), ("varifocal", "giou"),
                                          ("hard_negative", "giou")])
def test_new_losses_train_every_dense_detector(cls, box, detector, make_config, make_detector, make_batch):
    model = make_detector(make_config(model={"detector": detector}, loss={"cls": cls, "box": box})).train()
    images, targets = make_batch(seed=8, empty=(1,))
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    for weight in (cls_weight(model), box_weight(model)):
        assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


def spy_on_cls_targets(model):
    """Keep the ``targets [N, C]`` of every call of the classification loss."""
    head = model.model.head
    loss = head.cls_loss if hasattr(head, "cls_loss") else head.classification_head.loss
    seen, original = [], loss.forward

    def spy(logits, targets):
        seen.append(targets.detach().clone())
        return original(logits, targets)

    loss.forward = spy
    return seen


@pytest.mark.parametrize("detector", ["retinanet", "fcos", "atss"])
def test_quality_losses_learn_the_iou_of_each_positive(detector, make_config, make_detector, make_batch, spy_on_head):
    model = make_detector(make_config(model={"detector": detector}, loss={"cls": "varifocal"})).train()
    images, targets = make_batch(seed=9)
    seen, calls = spy_on_head(model), spy_on_cls_targets(model)
    model(images, targets)
    tv_targets, head_outputs, anchors, matched = seen["args"]
    head = model.model.head
    coder = head.box_coder if detector == "fcos" else head.regression_head.box_coder
    expected = []
    for target, deltas, a, m in zip(tv_targets, head_outputs["bbox_regression"], anchors, matched):
        fg = torch.where(m >= 0)[0]
        pred = coder.decode(deltas[fg], a[fg]) if detector == "fcos" else coder.decode_single(deltas[fg], a[fg])
        iou = box_iou(pred, target["boxes"][m[fg]]).diagonal()  # [F]
        soft = torch.zeros(len(m), head_outputs["cls_logits"].shape[-1])
        soft[fg, target["labels"][m[fg]]] = iou
        expected.append(soft[m != -2] if detector != "fcos" else soft)  # RetinaNet, ATSS drop ignored anchors
    got = calls if detector != "fcos" else list(torch.cat(calls).split([len(m) for m in matched]))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e.detach())
    positives = torch.cat([e[e > 0] for e in expected])
    assert len(positives) > 0 and bool((positives < 1).all())  # soft: a decoded box is never exactly its GT
