import math

import pytest
import torch
from pydantic import ValidationError
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import batched_nms

from ablate.study.config import TrialConfig
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.postprocess.ops import postprocess
from ablate.tricks.registry import build

SIZE = (40, 40)  # (h, w)


def dets(boxes, scores, labels):
    return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels, dtype=torch.long))


def method(name, **params):
    return build(POSTPROCESS, name, "postprocess", params)


def test_nms_matches_torchvision_batched_nms():
    boxes, scores, labels = dets(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 10, 10.5]],
        [0.9, 0.8, 0.7, 0.6, 0.5],
        [0, 0, 0, 1, 1],
    )
    out_boxes, out_scores, out_labels = method("nms", iou=0.5)(boxes, scores, labels, SIZE)
    keep = batched_nms(boxes, scores, labels, 0.5)
    assert keep.tolist() == [0, 2, 3]  # box 1 overlaps 0 (IoU 0.68), box 4 overlaps 3
    assert torch.equal(out_boxes, boxes[keep]) and torch.equal(out_scores, scores[keep])
    assert out_labels.tolist() == [0, 0, 1]


@pytest.mark.parametrize("name", list(POSTPROCESS))
def test_class_aware(name):
    boxes, scores, labels = dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 1])
    out_boxes, out_scores, out_labels = method(name)(boxes, scores, labels, SIZE)
    assert out_labels.tolist() == [0, 1]
    assert torch.allclose(out_scores, scores)
    assert torch.allclose(out_boxes, boxes, atol=1e-4)


@pytest.mark.parametrize("name", list(POSTPROCESS))
def test_sorted_by_score_and_typed(name):
    torch.manual_seed(0)
    xy = torch.rand(30, 2) * 30
    boxes = torch.cat([xy, xy + 2 + torch.rand(30, 2) * 8], dim=1)
    scores, labels = torch.rand(30), torch.randint(0, 3, (30,))
    out_boxes, out_scores, out_labels = method(name)(boxes, scores, labels, SIZE)
    assert 0 < len(out_scores) <= 30
    assert out_boxes.shape == (len(out_scores), 4) and out_labels.dtype == torch.long
    assert torch.all(out_scores[:-1] >= out_scores[1:])


@pytest.mark.parametrize("name", list(POSTPROCESS))
def test_empty_input(name):
    out = method(name)(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), SIZE)
    assert [len(t) for t in out] == [0, 0, 0]


def test_soft_nms_gaussian_decays_instead_of_removing():
    # IoU of the two boxes is 50 / 100 = 0.5
    boxes, scores, labels = dets([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], [0, 0])
    _, out_scores, _ = method("soft_nms", sigma=0.5)(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5**2 / 0.5)])
    _, out_scores, _ = method("soft_nms", method="linear", iou=0.3)(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8 * (1 - 0.5)])
    # decayed below min_score: dropped
    _, out_scores, _ = method("soft_nms", sigma=0.01, min_score=0.001)(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9])


def test_diou_nms_keeps_side_by_side_boxes_that_nms_removes():
    # flat boxes shifted by 3: IoU = 7/13 = 0.538 > 0.5, centre distance^2 = 9,
    # enclosing diagonal^2 = 13^2 + 1^2 = 170, so DIoU = 7/13 - 9/170 = 0.486 < 0.5
    boxes, scores, labels = dets([[0, 0, 10, 1], [3, 0, 13, 1]], [0.9, 0.8], [0, 0])
    assert 7 / 13 - 9 / 170 < 0.5 < 7 / 13
    assert len(method("nms", iou=0.5)(boxes, scores, labels, SIZE)[0]) == 1
    kept, _, _ = method("diou_nms", iou=0.5)(boxes, scores, labels, SIZE)
    assert torch.equal(kept, boxes)
    # with a threshold below the DIoU it is suppressed
    assert len(method("diou_nms", iou=0.48)(boxes, scores, labels, SIZE)[0]) == 1


def test_wbf_fuses_into_score_weighted_box():
    # IoU 81 / 119 = 0.68 > 0.55: one cluster, box = (0.9 a + 0.6 b) / 1.5, score = mean
    boxes, scores, labels = dets([[0, 0, 10, 10], [1, 1, 11, 11], [25, 25, 35, 35]], [0.9, 0.6, 0.5], [2, 2, 2])
    out_boxes, out_scores, out_labels = method("wbf")(boxes, scores, labels, (40, 50))
    assert out_boxes.tolist()[0] == pytest.approx([0.4, 0.4, 10.4, 10.4], abs=1e-4)
    assert out_boxes.tolist()[1] == pytest.approx([25, 25, 35, 35], abs=1e-4)
    assert out_scores.tolist() == pytest.approx([0.75, 0.5])
    assert out_labels.tolist() == [2, 2]


def test_postprocess_threshold_then_cap():
    boxes, scores, labels = dets(
        [[0, 0, 5, 5], [10, 10, 15, 15], [20, 20, 25, 25], [30, 30, 35, 35], [0, 0, 5, 5.2]],
        [0.7, 0.05, 0.9, 0.8, 0.6],
        [0, 0, 0, 0, 0],
    )
    out_boxes, out_scores, _ = postprocess(
        boxes, scores, labels, method=method("nms"), score_thresh=0.1, max_dets=2, image_size=SIZE
    )
    assert out_scores.tolist() == pytest.approx([0.9, 0.8])
    assert torch.equal(out_boxes, boxes[[2, 3]])
    for thresh, expected in [(0.1, [0.9, 0.8, 0.7]), (0.0, [0.9, 0.8, 0.7, 0.05])]:
        _, out_scores, _ = postprocess(
            boxes, scores, labels, method=method("nms"), score_thresh=thresh, max_dets=10, image_size=SIZE
        )
        assert out_scores.tolist() == pytest.approx(expected)  # 0.6 is suppressed by 0.7


def bright_spot_predictor(images):
    """Flip-equivariant fake detector: a 3x3 box centred on each image's brightest pixel."""
    out = []
    for image in images:
        y, x = divmod(int(image[0].argmax()), image.shape[-1])
        box = torch.tensor([[x - 1, y - 1, x + 2, y + 2]], dtype=torch.float32)
        out.append({"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])})
    return out


def test_hflip_tta_maps_boxes_back():
    images = torch.zeros(2, 3, 16, 20)  # H != W, so using the wrong side would show
    images[0, 0, 4, 3] = 1
    images[1, 0, 10, 15] = 1
    plain = bright_spot_predictor(images)
    merged = build(TTA, "hflip", "tta")(bright_spot_predictor, images)
    assert len(merged) == 2
    for one, raw in zip(merged, plain):
        assert torch.equal(one["boxes"], raw["boxes"].repeat(2, 1))
        assert one["scores"].tolist() == pytest.approx([0.9, 0.9])
        assert one["labels"].tolist() == [1, 1]


def test_hflip_tta_flips_each_listed_image_about_its_own_width():
    small, wide = torch.zeros(3, 12, 10), torch.zeros(3, 16, 30)  # sizes differ, as a detector's inputs
    small[0, 4, 2] = 1
    wide[0, 9, 21] = 1
    merged = build(TTA, "hflip", "tta")(bright_spot_predictor, [small, wide])
    # a box mapped back with the other image's width would land elsewhere
    assert merged[0]["boxes"].tolist() == [[1, 3, 4, 6]] * 2
    assert merged[1]["boxes"].tolist() == [[20, 8, 23, 11]] * 2


def test_no_tta_is_plain_prediction():
    images = torch.zeros(1, 3, 8, 8)
    images[0, 0, 2, 5] = 1
    (one,) = build(TTA, "none", "tta")(bright_spot_predictor, images)
    assert one["boxes"].tolist() == [[4, 1, 7, 4]]


def test_params_ranges_enforced():
    with pytest.raises(ValidationError):
        method("nms", iou=1.5)
    with pytest.raises(ValidationError):
        method("soft_nms", method="box")
    with pytest.raises(ValidationError):
        method("wbf", conf_type="mean")
    with pytest.raises(ValidationError):
        method("diou_nms", sigma=0.5)
    with pytest.raises(ValidationError):
        method("matrix_nms", kernel="box")
    with pytest.raises(ValidationError):
        method("matrix_nms", sigma=0.0)


@pytest.mark.parametrize("table,name", [(POSTPROCESS, n) for n in POSTPROCESS] + [(TTA, n) for n in TTA])
def test_documented_and_default_constructible(table, name):
    trick = table[name]
    assert trick.doc and "\n" not in trick.doc
    trick.params()
    for field in trick.params.model_fields.values():
        assert field.description
    assert callable(trick.build(**trick.params().model_dump()))


@pytest.mark.parametrize("name", ["nms", "soft_nms", "diou_nms", "matrix_nms", "wbf"])
def test_postprocess_drops_collapsed_boxes_before_any_method(name):
    boxes, scores, labels = dets([[5, 5, 5, 9], [7, 2, 9, 2], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [0, 0, 0])
    out_boxes, out_scores, _ = postprocess(
        boxes, scores, labels, method=method(name), score_thresh=0.1, max_dets=10, image_size=SIZE
    )
    assert torch.isfinite(out_scores).all()
    assert out_scores.tolist() == pytest.approx([0.7]) and out_boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]


# ---- matrix NMS, class-agnostic merges --------------------------------------------

# A scores highest; IoU(A, B) = 50/100 = 0.5, IoU(A, C) = 40/100 = 0.4, IoU(B, C) = 40/50 = 0.8.
# Compensation c_i (box i's largest IoU with a box above it): c_A = 0, c_B = 0.5.
MATRIX = ([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 4]], [0.9, 0.8, 0.7], [0, 0, 0])


def test_matrix_nms_gaussian_decay_by_hand():
    boxes, scores, labels = dets(*MATRIX)
    out_boxes, out_scores, out_labels = method("matrix_nms", kernel="gaussian", sigma=2.0)(boxes, scores, labels, SIZE)
    # B: exp(-2 (0.5^2 - 0)); C: min(exp(-2 (0.4^2 - 0)), exp(-2 (0.8^2 - 0.5^2))) = exp(-0.78)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5), 0.7 * math.exp(-0.78)])
    assert torch.equal(out_boxes, boxes) and out_labels.tolist() == [0, 0, 0]


def test_matrix_nms_linear_decay_by_hand():
    boxes, scores, labels = dets(*MATRIX)
    _, out_scores, _ = method("matrix_nms", kernel="linear")(boxes, scores, labels, SIZE)
    # B: (1 - 0.5) / (1 - 0); C: min((1 - 0.4) / (1 - 0), (1 - 0.8) / (1 - 0.5)) = 0.4
    assert out_scores.tolist() == pytest.approx([0.9, 0.8 * 0.5, 0.7 * 0.4])


def test_matrix_nms_drops_below_min_score_keeps_pre_top_k_and_resorts():
    boxes, scores, labels = dets(*MATRIX)
    # linear: decayed 0.9, 0.4, 0.28
    _, out_scores, _ = method("matrix_nms", kernel="linear", min_score=0.3)(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9, 0.4])
    _, out_scores, _ = method("matrix_nms", kernel="linear", pre_top_k=2)(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9, 0.4])
    # a lone box of another label (0.5) now outranks the decayed B and C
    boxes, scores, labels = dets(MATRIX[0] + [[20, 20, 30, 30]], MATRIX[1] + [0.5], [0, 0, 0, 1])
    _, out_scores, out_labels = method("matrix_nms", kernel="linear")(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9, 0.5, 0.4, 0.28]) and out_labels.tolist() == [0, 1, 0, 0]


def test_matrix_nms_linear_survives_duplicate_suppressors():
    # c = 1 for the second and third copies: (1 - 1) / (1 - 1) must not turn into NaN
    boxes, scores, labels = dets([[0, 0, 10, 10]] * 3, [0.9, 0.8, 0.7], [0, 0, 0])
    _, out_scores, _ = method("matrix_nms", kernel="linear")(boxes, scores, labels, SIZE)
    assert out_scores.tolist() == pytest.approx([0.9])


# params that make each NMS variant drop (not only decay) an identical box
REMOVING = {"nms": {}, "diou_nms": {}, "soft_nms": {"method": "linear"}, "matrix_nms": {"kernel": "linear"}}


@pytest.mark.parametrize("name", list(REMOVING))
def test_class_agnostic_merges_across_labels(name):
    boxes, scores, labels = dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 1])
    _, out_scores, out_labels = method(name, **REMOVING[name])(boxes, scores, labels, SIZE)
    assert out_labels.tolist() == [0, 1] and out_scores.tolist() == pytest.approx([0.9, 0.8])
    _, out_scores, out_labels = method(name, class_agnostic=True, **REMOVING[name])(boxes, scores, labels, SIZE)
    assert out_labels.tolist() == [0] and out_scores.tolist() == pytest.approx([0.9])


def test_wbf_has_no_class_agnostic_option():
    with pytest.raises(ValidationError, match="class_agnostic"):
        method("wbf", class_agnostic=True)


# ---- multi-scale + flip TTA ---------------------------------------------------------


class ScaledStub(torch.nn.Module):
    """A detector with torchvision's eval resize: one box at fixed fractions of the image it sees.

    The box is ``BOX`` times the resized image's (w, h, w, h), mirrored when the input
    is (a mark in the last column, set before resizing), and mapped back by the
    transform's own ``postprocess``: every view should land on ``BOX`` times the
    original size.  ``seen`` keeps each call's resized sizes.
    """

    BOX = (0.1, 0.2, 0.4, 0.6)

    def __init__(self, min_size=40, max_size=100):
        super().__init__()
        self.transform = GeneralizedRCNNTransform(min_size, max_size, [0.0] * 3, [1.0] * 3)
        self.seen = []

    def forward(self, images):
        mirrored = [bool(image[0, 0, -1] > 0) for image in images]
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, _ = self.transform(list(images))
        self.seen.append(list(image_list.image_sizes))
        detections = []
        for (h, w), flipped in zip(image_list.image_sizes, mirrored):
            x1, y1, x2, y2 = self.BOX[0] * w, self.BOX[1] * h, self.BOX[2] * w, self.BOX[3] * h
            if flipped:
                x1, x2 = w - x2, w - x1
            detections.append({"boxes": torch.tensor([[x1, y1, x2, y2]]), "scores": torch.tensor([0.9]),
                               "labels": torch.tensor([1])})
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def tta(name, **params):
    return build(TTA, name, "tta", params)


def test_multiscale_flip_predicts_at_each_scale_and_maps_back():
    image = torch.zeros(3, 40, 60)  # shorter side 40 = the stub's min_size
    image[0, 0, 0] = 1  # marks the mirrored view
    stub = ScaledStub(min_size=40, max_size=100).eval()
    (out,) = tta("multiscale_flip", scales=[0.5, 1.0, 1.5])(stub, [image])
    # per scale: plain then mirrored, each resized to shorter side 40 * scale
    assert [sizes[0] for sizes in stub.seen] == [(20, 30), (20, 30), (40, 60), (40, 60), (60, 90), (60, 90)]
    assert stub.seen[1] != stub.seen[2]  # not the same input twice
    expected = [0.1 * 60, 0.2 * 40, 0.4 * 60, 0.6 * 40]
    assert len(out["boxes"]) == 6
    for box in out["boxes"].tolist():
        assert box == pytest.approx(expected, abs=1e-4)
    assert out["scores"].tolist() == pytest.approx([0.9] * 6) and out["labels"].tolist() == [1] * 6
    assert stub.transform.min_size == (40,) and stub.transform.max_size == 100  # restored


def test_multiscale_without_flip_and_the_longer_side_cap():
    wide = torch.zeros(3, 20, 80)  # shorter side 20 -> 40 would make the longer 160 > max_size 100
    stub = ScaledStub(min_size=40, max_size=100).eval()
    (out,) = tta("multiscale_flip", scales=[1.0, 2.0], flip=False)(stub, [wide])
    # scale 1: capped by 100 / 80; scale 2: min_size 80, max_size 200, capped by 200 / 80
    assert [sizes[0] for sizes in stub.seen] == [(25, 100), (50, 200)]
    for box in out["boxes"].tolist():
        assert box == pytest.approx([8, 4, 32, 12], abs=1e-4)


def test_multiscale_restores_the_resize_after_an_error():
    stub = ScaledStub(min_size=40, max_size=100).eval()

    def boom(*args):
        raise RuntimeError("boom")

    stub.transform.postprocess = boom
    with pytest.raises(RuntimeError, match="boom"):
        tta("multiscale_flip", scales=[2.0])(stub, [torch.zeros(3, 40, 40)])
    assert stub.transform.min_size == (40,) and stub.transform.max_size == 100


def test_multiscale_needs_a_detector_transform():
    with pytest.raises(TypeError, match="GeneralizedRCNNTransform"):
        tta("multiscale_flip")(bright_spot_predictor, torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("scales,problem", [([], "at least 1 item"), ([1.0, 0.0], "greater than 0"),
                                            ([-0.5], "greater than 0")])
def test_multiscale_scales_validated_in_the_study(scales, problem):
    with pytest.raises(ValidationError) as error:
        TrialConfig.model_validate({"eval": {"tta": {"name": "multiscale_flip", "scales": scales}}})
    assert "eval.tta.multiscale_flip.scales" in str(error.value) and problem in str(error.value)
