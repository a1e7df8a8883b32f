"""Faster R-CNN: the RoI samplers on exact cases, the catalogue losses in its RoI head, and that it learns."""

import math

import pytest
import torch
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops import roi_align as torchvision_roi_align

from ablate.models.roi_align import PyramidRoIAlign, roi_align
from ablate.models.roi_sampling import balanced_negatives, iou_balanced_sample, ohem_sample, random_sample
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES, QUALITY_LOSSES
from ablate.tricks.registry import build

LOSS_NAMES = {"loss_cls", "loss_box", "loss_objectness", "loss_rpn_box"}


def frcnn(**detector):
    """The small Faster R-CNN of these tests: few proposals and RoIs, a narrow box head."""
    return {"detector": {"name": "faster_rcnn", "anchor_scale": 2.0, "rpn_proposals": 100, "roi_batch": 32,
                         "representation": 32, **detector}}


# ---- samplers -------------------------------------------------------------------

LABELS = torch.tensor([1] * 10 + [0] * 20 + [-1] * 5)  # 10 objects, 20 background, 5 ignored


def test_random_sample_caps_positives_and_fills_with_negatives():
    torch.manual_seed(0)
    pos, neg = random_sample(LABELS, batch=8, positive_fraction=0.25)
    assert (len(pos), len(neg)) == (2, 6)
    assert bool((LABELS[pos] == 1).all()) and bool((LABELS[neg] == 0).all())
    assert len(set(pos.tolist()) | set(neg.tolist())) == 8  # no index twice
    few = torch.tensor([2, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # one positive: the negatives make up the batch
    assert [len(i) for i in random_sample(few, batch=8, positive_fraction=0.5)] == [1, 7]
    scarce = torch.tensor([1, 3, 0, -1])  # fewer candidates than the batch: all of them, never an ignored one
    pos, neg = random_sample(scarce, batch=8, positive_fraction=0.25)
    assert (sorted(pos.tolist()), neg.tolist()) == ([0, 1], [2])


def test_random_sample_uses_the_global_rng():
    torch.manual_seed(3)
    first = random_sample(LABELS, batch=8, positive_fraction=0.25)
    torch.manual_seed(3)
    again = random_sample(LABELS, batch=8, positive_fraction=0.25)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_ohem_keeps_the_highest_losses_of_each_side():
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0, -1])
    losses = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.05, 0.6, 5.0])  # the ignored one is never mined
    pos, neg = ohem_sample(labels, losses, batch=4, positive_fraction=0.5)
    assert (sorted(pos.tolist()), sorted(neg.tolist())) == ([1, 2], [4, 6])
    pos, neg = ohem_sample(labels, losses, batch=5, positive_fraction=0.25)  # one positive, four negatives
    assert (pos.tolist(), sorted(neg.tolist())) == ([1], [3, 4, 5, 6])


# one positive (IoU 0.9: the bins are [0, 0.3), [0.3, 0.6), [0.6, 0.9)), then 12 easy negatives at
# IoU 0.05, 2 hard ones at 0.4 and 6 that touch nothing
IOUS = torch.tensor([0.9] + [0.05] * 12 + [0.4] * 2 + [0.0] * 6)
BIN_LABELS = torch.tensor([1] + [0] * 20)


def test_iou_balanced_sampling_spreads_negatives_over_bins():
    for seed in range(5):
        torch.manual_seed(seed)
        pos, neg = iou_balanced_sample(BIN_LABELS, IOUS, batch=7, positive_fraction=0.25)  # 1 + 6
        assert pos.tolist() == [0]
        # two per bin: both hard ones, two easy; the empty top bin's two from the rest (easy); none at IoU 0
        assert sorted(IOUS[neg].tolist()) == pytest.approx([0.05] * 4 + [0.4] * 2)
    torch.manual_seed(0)  # random sampling would rarely take both hard negatives
    hard = [int((IOUS[random_sample(BIN_LABELS, 7, 0.25)[1]] == 0.4).sum()) for _ in range(50)]
    assert sum(h == 2 for h in hard) < 10


def test_iou_balanced_negatives_that_touch_nothing_only_fill_up():
    ious = torch.tensor([0.2, 0.1, 0.3] + [0.0] * 10)
    negative = torch.arange(13)
    chosen = balanced_negatives(negative, ious, k=5)
    assert len(set(chosen.tolist())) == 5 and {0, 1, 2} <= set(chosen.tolist())  # all three, two at IoU 0
    assert len(set(balanced_negatives(negative, torch.zeros(13), k=4).tolist())) == 4  # no object: at random
    assert torch.equal(balanced_negatives(negative[:3], ious, k=5), negative[:3])  # too few: all


# ---- RoIAlign: torchvision's values, the separable gradient --------------------------


def random_rois(n, images, side, seed=0):
    """``[n, 5]`` RoIs (image index, x1, y1, x2, y2), some partly off the map, some under a pixel."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * side * 1.2 - side * 0.15
    wh = torch.rand(n, 2, generator=g) * side * 0.6 + 0.2
    return torch.cat([torch.randint(0, images, (n, 1), generator=g).float(), xy, xy + wh], dim=1)


@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
def test_roi_align_value_and_gradient_are_torchvision(sampling_ratio):
    features = torch.randn(2, 5, 12, 10, requires_grad=True)
    rois = random_rois(40, images=2, side=96)
    ours = roi_align(features, rois, (7, 7), 1 / 8, sampling_ratio)
    theirs = torchvision_roi_align(features, rois, 7, 1 / 8, sampling_ratio, aligned=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # the forward is torchvision's own op
    upstream = torch.randn_like(theirs)
    (ours_grad,) = torch.autograd.grad(ours, features, upstream)
    (theirs_grad,) = torch.autograd.grad(theirs, features, upstream)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-5)


def test_pyramid_roi_align_is_torchvision_multiscale_roi_align():
    names, image = ["p3", "p4", "p5", "p6"], (512, 448)
    features = {n: torch.randn(2, 4, image[0] // s, image[1] // s, requires_grad=True)
                for n, s in zip(names, (8, 16, 32, 64))}
    rois = random_rois(40, images=2, side=448, seed=1)
    large = torch.tensor([[0.0, 0, 500, 440], [10, 20, 300, 260], [40, 0, 448, 512]])  # FPN levels 5, 4, 5
    boxes = [torch.cat([rois[rois[:, 0] == i, 1:].clamp(min=0), large[i:]]) for i in range(2)]
    ours = PyramidRoIAlign(names, [8, 16, 32, 64], output_size=7, sampling_ratio=0)
    theirs = MultiScaleRoIAlign(names, 7, 0)
    assert set(ours.map_levels(boxes).tolist()) == {0, 1, 2}  # P3, P4 and P5 pool some each
    out, expected = ours(features, boxes, [image] * 2), theirs(features, boxes, [image] * 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    upstream = torch.randn_like(out)
    for ours_grad, theirs_grad in zip(torch.autograd.grad(out, list(features.values()), upstream),
                                      torch.autograd.grad(expected, list(features.values()), upstream)):
        torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-5)


# ---- the RoI head's losses --------------------------------------------------------


def test_train_mode_returns_the_four_named_losses(make_config, make_detector, make_batch):
    model = make_detector(make_config(model=frcnn())).train()
    losses = model(*make_batch())
    assert set(losses) == LOSS_NAMES
    assert all(v.ndim == 0 and math.isfinite(v.item()) for v in losses.values())


def rois_of(model, images, targets):
    """The sampled RoIs' labels ``[R]`` (0 background, k >= 1 class k - 1) and the losses of one step."""
    heads, seen = model.model.roi_heads, {}
    original = heads.roi_losses

    def spy(*args):
        seen["args"] = args
        return original(*args)

    heads.roi_losses = spy  # instance attribute shadows the method; OHEM calls it twice, the last is the loss
    losses = model(images, targets)
    return seen["args"], losses


@pytest.mark.parametrize("sampler", ["random", "ohem", "iou_balanced"])
def test_each_sampler_fills_the_roi_batch(sampler, make_config, make_detector, make_batch):
    model = make_detector(make_config(model=frcnn(sampler=sampler, roi_batch=16, roi_positive_fraction=0.25)))
    (_, _, _, labels, _), losses = rois_of(model.train(), *make_batch())
    assert len(labels) == 2 * 16  # two images, 16 RoIs each (over 100 candidates)
    for image in labels.split(16):
        assert 1 <= int((image > 0).sum()) <= 4  # the objects themselves are candidates; 16 x 0.25 at most
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_ce_and_smooth_l1_are_torchvision_fastrcnn_loss(make_config, make_detector, make_batch):
    """The catalogue's ce (background logit 0) and smooth L1 (beta 1/9) equal torchvision's, normalised as it."""
    model = make_detector(make_config(model=frcnn(), loss={"cls": "ce", "box": "smooth_l1"})).train()
    (logits, deltas, rois, labels, gt), losses = rois_of(model, *make_batch(seed=2))
    assert int((labels > 0).sum()) > 0
    coder = model.model.roi_heads.box_coder
    cls, box = fastrcnn_loss(torch.cat([torch.zeros(len(logits), 1), logits], 1),  # background first, as torchvision
                             torch.cat([torch.zeros(len(deltas), 4), deltas], 1), [labels],
                             [coder.encode_single(gt, rois)])
    torch.testing.assert_close(losses["loss_cls"], cls)
    torch.testing.assert_close(losses["loss_box"], box)


@pytest.mark.parametrize("cls", [c for c in CLS_LOSSES if c not in QUALITY_LOSSES])  # those need IoU targets
def test_every_cls_loss_trains_the_roi_classifier(cls, make_config, make_detector, make_batch):
    model = make_detector(make_config(model=frcnn(), loss={"cls": cls})).train()
    assert type(model.model.roi_heads.cls_loss) is type(build(CLS_LOSSES, cls, "cls loss"))
    losses = model(*make_batch(seed=1))
    assert losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert model.model.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("box", list(BOX_LOSSES))
def test_every_box_loss_trains_the_roi_regressor(box, make_config, make_detector, make_batch):
    model = make_detector(make_config(model=frcnn(), loss={"box": box})).train()
    assert type(model.model.roi_heads.box_loss) is type(build(BOX_LOSSES, box, "box loss"))
    losses = model(*make_batch(seed=1))
    assert losses["loss_box"].item() > 0 and math.isfinite(losses["loss_box"].item())
    sum(losses.values()).backward()
    grad = model.model.roi_heads.box_predictor.bbox_pred.weight.grad  # [4C, representation]
    assert grad.abs().sum() > 0


def test_box_loss_choice_changes_the_roi_box_loss(make_config, make_detector, make_batch):
    images, targets = make_batch(seed=1)
    values = []
    for box in ("smooth_l1", "giou"):
        torch.manual_seed(0)  # same weights and the same sampled RoIs
        values.append(make_detector(make_config(model=frcnn(), loss={"box": box})).train()(images, targets)["loss_box"])
    assert not torch.isclose(values[0], values[1], rtol=1e-3)


def test_candidates_are_not_suppressed(make_config, make_detector):
    """The raw model keeps overlapping boxes of one class: NMS is the Detector's, after TTA."""
    model = make_detector(make_config(model=frcnn(), eval={"score_thresh": 0.0})).eval()
    with torch.no_grad():
        (raw,) = model.model([torch.rand(3, 96, 96)])
    assert raw["labels"].dtype == torch.int64 and set(raw["labels"].tolist()) <= {0, 1, 2}
    same = raw["boxes"][raw["labels"] == 0]
    iou = box_iou(same, same).fill_diagonal_(0)
    assert iou.max() > 0.5  # torchvision's box NMS (0.5) would have removed one of them
# It learns: tests/models/test_detectors_learn.py fits four images with every detector and finds their boxes.
