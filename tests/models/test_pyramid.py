"""model.pyramid: a P2 level (stride 4, from the body's C2) for RetinaNet, FCOS and ATSS, and its refusals."""

import math
from collections import OrderedDict

import pytest
import torch
from pydantic import ValidationError

from ablate.models import build_model
from ablate.models.backbones import ALL_LEVELS, build_body, load_weights
from ablate.models.body import PluggedBody
from ablate.study import config as study_config
from ablate.study.config import TrialConfig
from ablate.tricks.assign.ops import fcos_ranges
from ablate.tricks.necks import ANY_LEVELS, NECKS
from ablate.tricks.pyramids import PYRAMIDS, Pyramid
from ablate.tricks.registry import build

DENSE = ("retinanet", "fcos", "atss")
P2_P7 = (4, 8, 16, 32, 64, 128)


def test_pyramid_entries_name_their_levels():
    assert build(PYRAMIDS, "p3_p7", "pyramid") == Pyramid(3, 7)
    p2 = build(PYRAMIDS, "p2_p7", "pyramid")
    assert (p2.body_levels, p2.names, p2.strides, p2.extra_levels) == (
        ALL_LEVELS, ("p2", "p3", "p4", "p5", "p6", "p7"), P2_P7, 2)
    four = build(PYRAMIDS, "p2_p5", "pyramid")  # YOLO's four heads
    assert (four.names, four.strides, four.extra_levels) == (("p2", "p3", "p4", "p5"), (4, 8, 16, 32), 0)
    assert TrialConfig().model.pyramid.name == "p3_p7"
    with pytest.raises(ValueError, match="P2 or P3 to P5"):
        Pyramid(1, 7)


@pytest.mark.parametrize(("detector", "pyramid"), [(d, "p2_p7") for d in DENSE] + [("fcos", "p2_p5")])
def test_dense_detector_with_p2_trains_and_predicts(detector, pyramid, make_config, make_detector, make_batch):
    config = make_config(model={"detector": detector, "pyramid": pyramid}, eval={"score_thresh": 0.0, "max_dets": 20})
    model = make_detector(config)
    images, targets = make_batch()
    model.train()
    losses = model(images, targets)
    assert losses and all(v.ndim == 0 and math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters outside the loss: {no_grad[:5]}"
    c2_lateral = model.model.backbone.neck.fpn.inner_blocks[0][0].weight  # FPN's 1x1 conv on C2
    assert c2_lateral.shape[1] == model.model.backbone.body.channels[0] and c2_lateral.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        detections = model(images)
    for det in detections:
        k = len(det["scores"])
        assert 0 < k <= 20 and det["boxes"].shape == (k, 4) and torch.isfinite(det["boxes"]).all()


@pytest.mark.parametrize("detector", DENSE)
def test_p2_map_has_stride_4(detector, make_config, make_detector):
    model = make_detector(make_config(model={"detector": detector, "pyramid": "p2_p7", "channels": 24}))
    levels = model.model.backbone(torch.rand(1, 3, 128, 128))
    assert list(levels) == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert [tuple(f.shape[1:]) for f in levels.values()] == [(24, s, s) for s in (32, 16, 8, 4, 2, 1)]
    assert model.model.strides == P2_P7
    four = make_detector(make_config(model={"detector": detector, "pyramid": "p2_p5"}))
    assert [f.shape[-1] for f in four.model.backbone(torch.rand(1, 3, 128, 128)).values()] == [32, 16, 8, 4]


def test_anchors_at_p2(make_config, make_detector):
    retina = make_detector(make_config(model={"detector": {"name": "retinanet", "anchor_scale": 4.0},
                                              "pyramid": "p2_p7"})).model.anchor_generator
    assert retina.sizes[0] == pytest.approx((16.0, 20.158736798317967, 25.398416831491197), abs=1e-12)  # 4 x 4 px
    assert retina.sizes[1] == pytest.approx((32.0, 40.31747359663594, 50.79683366298239), abs=1e-12)  # P3 unchanged
    assert [s[0] for s in retina.sizes] == [16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
    assert retina.num_anchors_per_location() == [9] * 6
    # tiled on a 64 px image: P2 holds 16 x 16 locations x 9 anchors; its first ratio-1, 16-px anchor is centred at 0
    image_list = type("Images", (), {"tensors": torch.zeros(1, 3, 64, 64), "image_sizes": [(64, 64)]})()
    maps = [torch.zeros(1, 1, 64 // s, 64 // s) for s in P2_P7[:4]] + [torch.zeros(1, 1, 1, 1)] * 2
    anchors = retina(image_list, maps)[0]
    assert retina.level_counts[0] == 16 * 16 * 9
    assert anchors[3].tolist() == [-8.0, -8.0, 8.0, 8.0]  # ratio-major: index 3 is ratio 1.0 at 16 px
    atss = make_detector(make_config(model={"detector": "atss", "pyramid": "p2_p7"})).model.anchor_generator
    assert atss.sizes == ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,), (1024.0,))  # 8 strides, mmdetection's
    fcos = make_detector(make_config(model={"detector": "fcos", "pyramid": "p2_p7"})).model.anchor_generator
    assert fcos.sizes == ((4,), (8,), (16,), (32,), (64,), (128,))


def _level_of(strides, reach):
    """The level ``fcos_ranges`` puts a square GT of half-side ``reach`` on, one point per level at its centre."""
    boxes = torch.tensor([[49.0, 49.0, 51.0, 51.0]] * len(strides))  # [L, 4], centre (50, 50)
    per_point = torch.tensor(strides, dtype=torch.float32)
    gt = torch.tensor([[50.0 - reach, 50.0 - reach, 50.0 + reach, 50.0 + reach]])
    matched = fcos_ranges(boxes, per_point, [1] * len(strides), gt, center_radius=0.0)
    return [i for i, m in enumerate(matched.tolist()) if m == 0]


def test_fcos_ranges_with_p2():
    # P2 [0, 32], P3 [32, 64], P4 [64, 128], P5 [128, 256], P6 [256, 512], P7 [512, inf): FCOS's ranges shifted down
    reaches = (5, 20, 31, 33, 60, 100, 200, 300, 600, 2000)
    assert [_level_of(P2_P7, r) for r in reaches] == [[0], [0], [0], [1], [1], [2], [3], [4], [5], [5]]
    # without P2, P3 takes everything below 64 (FCOS's (-1, 64))
    assert [_level_of(P2_P7[1:], r) for r in reaches] == [[0], [0], [0], [0], [0], [1], [2], [3], [4], [4]]
    # four heads: P5 takes everything from 128 up
    assert [_level_of(P2_P7[:4], r) for r in reaches] == [[0], [0], [0], [1], [1], [2], [3], [3], [3], [3]]


def test_fcos_with_p2_assigns_a_small_box_to_p2(make_config, make_detector, spy_on_head):
    model = make_detector(make_config(model={"detector": "fcos", "pyramid": "p2_p7"})).train()
    seen = spy_on_head(model)
    images = [torch.rand(3, 96, 96)]
    model(images, [{"boxes": torch.tensor([[40.0, 40.0, 56.0, 56.0]]), "labels": torch.tensor([1])}])
    matched = seen["args"][-1][0]
    p2 = model.model.anchor_generator.level_counts[0]
    assert p2 == 24 * 24
    positives = torch.where(matched >= 0)[0]
    assert len(positives) > 0 and (positives < p2).all()  # a 16-px box (reach <= 8 < 32) lives on P2 only


@pytest.mark.parametrize("backbone", ["tiny", "resnet18", "mobilenet_v3", "vgg16"])
def test_body_c2_has_stride_4_and_the_same_parameters(backbone):
    plain, channels = build_body(backbone, width=0.5)
    with_c2, channels_c2 = build_body(backbone, width=0.5, levels=ALL_LEVELS)
    assert channels_c2[1:] == channels
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in with_c2.state_dict().items()}
    with torch.no_grad():
        out = with_c2.eval()(torch.rand(1, 3, 64, 64))
    assert list(out) == list(ALL_LEVELS)
    assert [tuple(f.shape[1:]) for f in out.values()] == [(c, s, s) for c, s in zip(channels_c2, (16, 8, 4, 2))]


def test_resnet18_state_dict_loads_into_a_p2_body(tmp_path):
    torch.manual_seed(0)
    source, _ = build_body("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    p2_body, _ = build_body("resnet18", levels=ALL_LEVELS)
    load_weights(p2_body, str(path))  # strict: every key, every shape
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = p2_body.eval()(x), source.eval()(x)
    for level in ("c3", "c4", "c5"):
        assert torch.equal(ours[level], theirs[level])
    config = TrialConfig.model_validate({"model": {"detector": "fcos", "backbone": "resnet18", "pyramid": "p2_p7",
                                                   "pretrained": str(path), "channels": 16}})
    detector = build_model(config, num_classes=3)  # the study path: build_body(levels=...) then load_weights
    assert torch.equal(detector.model.backbone.body.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])


def test_plugged_body_passes_c2_through(make_config, make_detector):
    model = make_detector(make_config(model={"detector": "fcos", "pyramid": "p2_p7", "plugins": ["se"],
                                             "context": "sppf"}))
    plugged = model.model.backbone.body
    assert isinstance(plugged, PluggedBody) and set(plugged.after) == {"c3", "c4", "c5"}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out, raw = plugged.eval()(x), plugged.body(x)
    assert list(out) == list(ALL_LEVELS)
    assert torch.equal(out["c2"], raw["c2"]) and not torch.equal(out["c3"], raw["c3"])


@pytest.mark.parametrize("name", sorted(ANY_LEVELS))
def test_necks_that_claim_any_levels_fuse_four(name):
    neck = build(NECKS, name, "neck", {}, in_channels=[4, 8, 16, 32], out_channels=8, extra_levels=2)
    feats = OrderedDict((f"c{k}", torch.randn(1, c, s, s, requires_grad=True))
                        for k, c, s in zip((2, 3, 4, 5), (4, 8, 16, 32), (32, 16, 8, 4)))
    out = neck(feats)
    assert [tuple(f.shape[1:]) for f in out.values()] == [(8, s, s) for s in (32, 16, 8, 4, 2, 1)]
    sum(f.square().mean() for f in out.values()).backward()
    assert feats["c2"].grad is not None and feats["c2"].grad.abs().sum() > 0


def test_every_neck_fuses_any_levels_or_is_refused():
    assert ANY_LEVELS <= set(NECKS)
    for name in NECKS:  # today every neck takes C2 too; one that does not is refused
        if name not in ANY_LEVELS:
            with pytest.raises(ValidationError, match="model.neck"):
                TrialConfig.model_validate({"model": {"neck": name, "pyramid": "p2_p7"}})


def test_a_neck_without_c2_is_refused_naming_both_keys(monkeypatch):
    monkeypatch.setattr(study_config, "ANY_LEVELS", ANY_LEVELS - {"asff"})
    with pytest.raises(ValidationError) as err:
        TrialConfig.model_validate({"model": {"neck": "asff", "pyramid": "p2_p7"}})
    message = str(err.value)
    assert "model.pyramid: p2_p7 adds a P2 level" in message and "model.neck: asff fuses C3-C5 only" in message
    assert "choose a neck that takes C2 too (none, fpn, pan, bifpn) or model.pyramid: p3_p7" in message
    TrialConfig.model_validate({"model": {"neck": "asff"}})  # P3-P7 still fine


@pytest.mark.parametrize("detector", ["ssd", "faster_rcnn", "detr"])
def test_detectors_without_the_key_refuse_p2(detector):
    with pytest.raises(ValidationError, match=f"model.pyramid: p2_p7 does not apply to detector {detector}; "
                       "model.pyramid applies to retinanet, fcos, atss: leave it at its default \\(p3_p7\\)"):
        TrialConfig.model_validate({"model": {"detector": detector, "pyramid": "p2_p7"}})
    TrialConfig.model_validate({"model": {"detector": detector, "pyramid": "p3_p7"}})
