"""Evaluation output: the catalogue post-processing and TTA run after the model's raw candidates."""

import pytest
import torch
from torch import nn

from ablate.models import Detector
from ablate.tricks.detectors import DETECTORS
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.registry import build


class Stub(nn.Module):
    """Raw candidates as ``CatalogueRetinaNet`` returns them in eval mode (original coordinates, no NMS).

    Each image gets ``boxes``/``scores``/``labels``; an image whose last column is
    marked (it was mirrored: the mark sits in column 0 of the plain image) gets the
    mirrored boxes, shifted right by ``shift`` so the two views disagree a little.
    """

    def __init__(self, boxes, scores, labels, shift=0.0):
        super().__init__()
        self.boxes, self.scores, self.labels, self.shift = torch.tensor(boxes), torch.tensor(scores), labels, shift
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        out = []
        for image in images:
            boxes = self.boxes.clone()
            if image[0, 0, -1] > 0:  # mirrored view
                w = image.shape[-1]
                boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
                boxes[:, [0, 2]] += self.shift
            out.append({"boxes": boxes, "scores": self.scores.clone(), "labels": torch.tensor(self.labels)})
        return out


def marked_image(h=40, w=60):
    image = torch.zeros(3, h, w)
    image[0, 0, 0] = 1.0  # the mark that tells the stub which view it sees
    return image


def detector(stub, nms="nms", tta="none", score_thresh=0.05, max_dets=100, **nms_params):
    return Detector(
        stub, method=build(POSTPROCESS, nms, "postprocess", nms_params), tta=build(TTA, tta, "tta"),
        score_thresh=score_thresh, max_dets=max_dets,
    ).eval()


# two heavily overlapping boxes of one class, and one far away of another
OVERLAPPING = ([[10.0, 10.0, 30.0, 30.0], [11.0, 11.0, 31.0, 31.0], [40.0, 5.0, 55.0, 20.0]], [0.9, 0.8, 0.3], [1, 1, 2])


def test_score_thresh_and_max_dets():
    stub = Stub(*OVERLAPPING)
    (out,) = detector(stub, score_thresh=0.5)([marked_image()])
    assert out["scores"].tolist() == pytest.approx([0.9])  # 0.8 suppressed, 0.3 under the threshold
    (out,) = detector(stub, score_thresh=0.0, max_dets=1)([marked_image()])
    assert out["scores"].tolist() == pytest.approx([0.9])
    (out,) = detector(stub, score_thresh=0.0)([marked_image()])
    assert out["scores"].tolist() == pytest.approx([0.9, 0.3])
    assert out["labels"].tolist() == [1, 2] and out["labels"].dtype == torch.int64


def test_the_catalogue_method_merges():
    stub = Stub(*OVERLAPPING)
    (hard,) = detector(stub, "nms", score_thresh=0.0)([marked_image()])
    (soft,) = detector(stub, "soft_nms", score_thresh=0.0)([marked_image()])
    assert len(hard["scores"]) == 2
    assert len(soft["scores"]) == 3  # soft-NMS decays the overlapping box instead of dropping it
    (fused,) = detector(stub, "wbf", score_thresh=0.0)([marked_image()])
    assert fused["boxes"][0].tolist() == pytest.approx([10 + 0.8 / 1.7, 10 + 0.8 / 1.7, 30 + 0.8 / 1.7, 30 + 0.8 / 1.7])


@pytest.mark.parametrize("nms", list(POSTPROCESS))
def test_collapsed_boxes_are_dropped_before_merging(nms):
    # two identical points would give IoU 0/0 = NaN inside the NMS variants
    stub = Stub([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0], [10.0, 10.0, 30.0, 10.0], [10.0, 10.0, 30.0, 30.0]],
                [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0])
    (out,) = detector(stub, nms, score_thresh=0.0)([marked_image()])
    assert out["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]
    assert out["scores"].tolist() == pytest.approx([0.6])


def test_hflip_views_are_merged_by_the_catalogue_method():
    one_box = ([[10.0, 10.0, 30.0, 30.0]], [0.9], [0])
    image = marked_image(w=60)
    stub = Stub(*one_box, shift=2.0)  # the mirrored view maps back to [8, 10, 28, 30]
    (plain,) = detector(stub, "wbf", tta="none")([image])
    assert stub.calls == 1 and plain["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]
    (fused,) = detector(stub, "wbf", tta="hflip")([image])
    assert stub.calls == 3  # plain + mirrored
    assert fused["boxes"][0].tolist() == pytest.approx([9.0, 10.0, 29.0, 30.0]) and len(fused["boxes"]) == 1  # the two views averaged
    (kept,) = detector(stub, "nms", tta="hflip")([image])
    assert len(kept["boxes"]) == 1  # nms keeps one of the two views


def test_hflip_uses_each_image_width():
    images = [marked_image(w=60), marked_image(h=30, w=100)]
    stub = Stub([[10.0, 10.0, 30.0, 30.0]], [0.9], [0])
    out = detector(stub, "nms", tta="hflip", iou=0.99)(images)
    for det in out:  # mirrored back exactly onto the plain box, whatever the width
        assert det["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]


@pytest.mark.parametrize("det", ["retinanet", "fcos"])
def test_built_detector_uses_configured_method(det, make_config, make_detector):
    images = [torch.rand(3, 96, 96)]
    counts = {}
    for nms in ("nms", {"name": "soft_nms", "min_score": 0.0}):  # soft-NMS then drops nothing
        model = make_detector(make_config(model={"detector": det}, eval={"nms": nms, "score_thresh": 0.0,
                                                                         "max_dets": 1000})).eval()
        with torch.no_grad():
            counts[model.method.func.__name__] = len(model(images)[0]["scores"])
    assert counts["soft_nms"] > counts["nms"] > 0


def test_built_detector_passes_score_thresh_and_max_dets(make_config, make_detector):
    images = [torch.rand(3, 96, 96)]
    model = make_detector(make_config(eval={"score_thresh": 0.0, "max_dets": 7})).eval()
    with torch.no_grad():
        assert len(model(images)[0]["scores"]) == 7
    # the classification prior (p = 0.01) puts every untrained score far below 0.5
    model = make_detector(make_config(eval={"score_thresh": 0.5})).eval()
    with torch.no_grad():
        assert len(model(images)[0]["scores"]) == 0


def test_multiscale_flip_runs_a_built_detector_at_each_scale(make_config, make_detector):
    # TINY: image_size 96, so the eval resize is shorter side 96, longer side capped at 96 * 1333 // 800 = 159
    config = make_config(eval={"tta": {"name": "multiscale_flip", "scales": [0.5, 1.0, 1.5]}, "score_thresh": 0.0})
    model = make_detector(config).eval()
    transform = model.model.transform
    resized, network = [], []
    transform.register_forward_hook(lambda module, args, out: resized.append(out[0].image_sizes[0]))
    model.model.backbone.register_forward_pre_hook(lambda module, args: network.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        (out,) = model([torch.rand(3, 96, 128)])
    # per scale, plain then mirrored; the network gets them padded to a multiple of 32
    assert resized == [(48, 64), (48, 64), (96, 128), (96, 128), (144, 192), (144, 192)]
    assert network == [(64, 64), (64, 64), (96, 128), (96, 128), (160, 192), (160, 192)]
    assert transform.min_size == (96,) and transform.max_size == 159  # restored after the views
    # merged in the original image's coordinates, not the 1.5x view's
    assert len(out["boxes"]) > 0
    assert out["boxes"][:, [0, 2]].max() <= 128 + 1e-3 and out["boxes"][:, [1, 3]].max() <= 96 + 1e-3


def test_multiscale_flip_views_are_merged_by_the_catalogue_method(make_config, make_detector):
    image = [torch.rand(3, 96, 96)]
    methods = {"nms": "nms", "matrix_nms": {"name": "matrix_nms", "min_score": 0.0, "pre_top_k": 100_000}}  # drops none
    ttas = {"none": "none", "multiscale": {"name": "multiscale_flip", "scales": [0.75, 1.0]}}
    counts = {}
    for m, nms in methods.items():
        for t, tta in ttas.items():
            model = make_detector(make_config(eval={"nms": nms, "tta": tta, "score_thresh": 0.0, "max_dets": 10_000}))
            with torch.no_grad():
                counts[m, t] = len(model.eval()(image)[0]["scores"])
    assert counts["matrix_nms", "multiscale"] > counts["matrix_nms", "none"]  # four views pool more candidates than one
    assert counts["nms", "multiscale"] < counts["matrix_nms", "multiscale"]  # and hard NMS merges them


@pytest.mark.parametrize("det", [d for d in DETECTORS if "eval.tta" in DETECTORS[d].takes])
def test_multiscale_flip_maps_every_detector_back_to_each_image(det, make_config, make_detector):
    tta = {"name": "multiscale_flip", "scales": [0.75, 1.25]}
    model = make_detector(make_config(model={"detector": det}, eval={"score_thresh": 0.0, "max_dets": 300, "tta": tta}))
    images = [torch.rand(3, 40, 150), torch.rand(3, 120, 60)]
    with torch.no_grad():
        detections = model.eval()(images)
    for out, image in zip(detections, images):
        h, w = image.shape[-2:]
        boxes = out["boxes"]
        assert len(boxes) > 0 and torch.isfinite(boxes).all()
        # within this image (not the 1.25x view's), and reaching its far borders
        assert boxes[:, 2].max() <= w + 1e-3 and boxes[:, 3].max() <= h + 1e-3
        assert boxes[:, 2].max() > 0.9 * w and boxes[:, 3].max() > 0.9 * h
