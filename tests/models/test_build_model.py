"""Every detector x backbone x neck builds, trains one step and predicts in the contract."""

import math

import pytest
import torch
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.ssd import SSD

from ablate.models import Detector
from ablate.models.build import BUILDERS
from ablate.study import config as study_config
from ablate.tricks.necks import NECKS

NUM_CLASSES = 3
DETECTORS = list(study_config.DETECTORS)  # every detector a study can name
# tiny with every neck (where the detector has one); the torchvision backbones with fpn at 64 px
VARIANTS = [("tiny", neck, 96) for neck in NECKS] + [("resnet18", "fpn", 64), ("mobilenet_v3", "fpn", 64)]
COMBOS = [(d, *v) for d in DETECTORS for v in VARIANTS
          if v[1] == "fpn" or "model.neck" in study_config.DETECTORS[d].takes]
LOSS_KEYS = {"retinanet": {"loss_cls", "loss_box"}, "fcos": {"loss_cls", "loss_box", "loss_ctr"},
             "atss": {"loss_cls", "loss_box", "loss_ctr"}, "ssd": {"loss_cls", "loss_box"},
             "faster_rcnn": {"loss_cls", "loss_box", "loss_objectness", "loss_rpn_box"},
             "detr": {"loss_cls", "loss_box", "loss_l1"}}
TORCHVISION_CLASS = {"retinanet": RetinaNet, "fcos": FCOS, "atss": RetinaNet, "ssd": SSD, "faster_rcnn": FasterRCNN,
                     "detr": torch.nn.Module}  # DETR-style: ablate's own
DENSE_PARTS = ("model.backbone.body.", "model.backbone.neck.", "model.head.classification_head.",
               "model.head.regression_head.")
PARTS = {"retinanet": DENSE_PARTS, "fcos": DENSE_PARTS, "atss": DENSE_PARTS,  # each must receive a gradient
         # SSD's extra stages: in the graph (checked above) but their maps may hold no positive or mined negative
         "ssd": ("model.backbone.body.", "model.head.classification_head.", "model.head.regression_head."),
         "faster_rcnn": ("model.backbone.body.", "model.backbone.neck.", "model.rpn.", "model.roi_heads."),
         "detr": ("model.backbone.body.", "model.backbone.neck.", "model.transformer.", "model.class_embed.",
                  "model.bbox_embed.")}


def test_every_detector_a_study_can_name_has_a_builder():
    assert set(BUILDERS) == set(study_config.DETECTORS)


def check_detections(detections, images):
    assert len(detections) == len(images)
    for det, image in zip(detections, images):
        h, w = image.shape[-2:]
        assert set(det) == {"boxes", "scores", "labels"}
        k = len(det["scores"])
        assert det["boxes"].shape == (k, 4) and det["labels"].shape == (k,)
        assert det["labels"].dtype == torch.int64
        if k:
            assert det["labels"].min() >= 0 and det["labels"].max() < NUM_CLASSES
            boxes = det["boxes"]
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= w + 1e-3).all() and (boxes[:, 3] <= h + 1e-3).all()
            assert (boxes[:, 2:] >= boxes[:, :2]).all()
            assert (det["scores"][:-1] >= det["scores"][1:]).all()  # sorted, best first


@pytest.mark.parametrize(("detector", "backbone", "neck", "size"), COMBOS)
def test_train_step_and_prediction(detector, backbone, neck, size, make_config, make_detector, make_batch):
    config = make_config(
        model={"detector": detector, "backbone": backbone, "neck": neck},
        data={"image_size": size}, eval={"score_thresh": 0.0, "max_dets": 20},
    )
    model = make_detector(config)
    assert isinstance(model, Detector)
    assert isinstance(model.model, TORCHVISION_CLASS[detector])

    images, targets = make_batch(sizes=((size, size), (size, size)))
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS[detector]
    for name, value in losses.items():
        assert value.ndim == 0 and math.isfinite(value.item()), name
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters outside the loss: {no_grad[:5]}"
    for part in PARTS[detector]:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert grads and any(g.abs().sum() > 0 for g in grads), part

    model.eval()
    with torch.no_grad():
        detections = model(images)
    check_detections(detections, images)
    assert all(0 < len(d["scores"]) <= 20 for d in detections)  # threshold 0: the cap binds


@pytest.mark.parametrize("detector", ["retinanet", "fcos", "atss"])
def test_backbone_returns_p3_to_p7_with_configured_channels(detector, make_config, make_detector):
    model = make_detector(make_config(model={"detector": detector, "channels": 24}))
    assert model.model.backbone.out_channels == 24
    levels = model.model.backbone(torch.rand(1, 3, 128, 128))
    assert list(levels) == ["p3", "p4", "p5", "p6", "p7"]
    assert [tuple(f.shape[1:]) for f in levels.values()] == [(24, s, s) for s in (16, 8, 4, 2, 1)]


@pytest.mark.parametrize("detector", DETECTORS)
def test_images_without_boxes_train(detector, make_config, make_detector, make_batch):
    model = make_detector(make_config(model={"detector": detector})).train()
    images, targets = make_batch(empty=(0,))
    losses = model(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    images, targets = make_batch(empty=(0, 1))  # a batch with no object at all
    losses = model(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_box"].item() == 0.0


def input_sizes(model, run):
    """The (H, W) of every batch the backbone sees while ``run()`` executes."""
    seen = []
    hook = model.model.backbone.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        run()
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("detector", DETECTORS)
def test_resize_only_at_evaluation(detector, make_config, make_detector, make_batch):
    model = make_detector(make_config(model={"detector": detector}, data={"image_size": 96}))
    images, targets = make_batch(sizes=((64, 64), (64, 64)))
    model.train()
    assert input_sizes(model, lambda: model(images, targets)) == [(64, 64)]  # as the data pipeline sized them
    model.eval()
    with torch.no_grad():
        # shorter side to image_size, then padded to a multiple of 32: 48x64 -> 96x128
        assert input_sizes(model, lambda: model([torch.rand(3, 48, 64)])) == [(96, 128)]
        # max_size = 96 * 1333 // 800 = 159 caps the long side: 32x320 -> 16x159 -> padded 32x160
        assert input_sizes(model, lambda: model([torch.rand(3, 32, 320)])) == [(32, 160)]


@pytest.mark.parametrize(("detector", "tta"), [(d, tta) for d in DETECTORS for tta in ("none", "hflip")
                                               if tta == "none" or "eval.tta" in study_config.DETECTORS[d].takes])
def test_images_of_different_sizes_map_back_to_their_own_size(detector, tta, make_config, make_detector):
    config = make_config(model={"detector": detector}, eval={"score_thresh": 0.0, "max_dets": 300, "tta": tta})
    model = make_detector(config).eval()
    images = [torch.rand(3, 40, 150), torch.rand(3, 120, 60)]  # both resized to shorter side 96, then back
    with torch.no_grad():
        detections = model(images)
    check_detections(detections, images)
    for det, image in zip(detections, images):
        h, w = image.shape[-2:]
        # with 300 boxes some reach the border of their own image, not of the resized or the other one
        assert det["boxes"][:, 2].max() > 0.9 * w and det["boxes"][:, 3].max() > 0.9 * h


def test_train_mode_needs_targets(make_config, make_detector, make_batch):
    model = make_detector(make_config()).train()
    images, _ = make_batch()
    with pytest.raises(ValueError, match="needs targets"):
        model(images)


def test_anchor_sizes_follow_anchor_scale(make_config, make_detector):
    model = make_detector(make_config(model={"detector": {"name": "retinanet", "anchor_scale": 3.0}}))
    generator = model.model.anchor_generator
    assert generator.num_anchors_per_location() == [9] * 5
    for sizes, stride in zip(generator.sizes, (8, 16, 32, 64, 128)):
        assert sizes == pytest.approx([3.0 * stride * 2 ** (i / 3) for i in range(3)])
    assert all(ratios == (0.5, 1.0, 2.0) for ratios in generator.aspect_ratios)
    fcos = make_detector(make_config(model={"detector": "fcos"}))
    assert fcos.model.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))


def test_unknown_sizes_and_classes_rejected(make_config):
    from ablate.models import build_model

    with pytest.raises(ValueError, match="num_classes"):
        build_model(make_config(), num_classes=0)


def test_head_convs_sets_the_depth_of_both_head_branches():
    from ablate.models import build_model
    from ablate.study.config import TrialConfig

    for detector in ("retinanet", "fcos", "atss"):
        deep = build_model(TrialConfig.model_validate({"model": {"detector": detector}}), num_classes=3)
        shallow = build_model(TrialConfig.model_validate({"model": {"detector": {"name": detector, "head_convs": 2}}}),
                              num_classes=3)
        def convs(model, branch):
            return sum(isinstance(m, torch.nn.Conv2d) for m in getattr(model.model.head, branch).conv.modules())

        for branch in ("classification_head", "regression_head"):
            assert (convs(deep, branch), convs(shallow, branch)) == (4, 2), (detector, branch)
