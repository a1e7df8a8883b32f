"""The loss catalogue: every entry builds, runs and is documented; exact values on tiny cases."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchvision.ops as tvo
from pydantic import ValidationError

from ablate.tricks import registry
from ablate.tricks.detectors import DETECTORS
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES, QUALITY_DETECTORS, QUALITY_LOSSES, quality_problem

N, C = 5, 3
ALL = [("cls", name) for name in CLS_LOSSES] + [("box", name) for name in BOX_LOSSES]
TABLES = {"cls": (CLS_LOSSES, "cls loss"), "box": (BOX_LOSSES, "box loss")}
IOU_FAMILY = ["iou", "giou", "diou", "ciou", "eiou", "focal_eiou"]
D = torch.float64


def make(kind: str, name: str, **params):
    table, what = TABLES[kind]
    return registry.build(table, name, what, params)


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=D) * 10
    wh = torch.rand(n, 2, generator=generator, dtype=D) * 5 + 1
    return torch.cat([xy, xy + wh], dim=1)  # [n, 4] valid xyxy


def inputs(kind: str, loss) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "cls":
        logits = torch.randn(N, C, generator=g, dtype=D)
        targets = torch.zeros(N, C, dtype=D)
        targets[[0, 1, 3], [2, 0, 1]] = 1.0  # rows 2 and 4 are background
        return logits, targets
    if loss.space == "box":
        target = random_boxes(N, g)
        return target + torch.randn(N, 4, generator=g, dtype=D) * 0.3, target  # overlapping pairs
    return torch.randn(N, 4, generator=g, dtype=D), torch.randn(N, 4, generator=g, dtype=D)


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_builds_with_defaults_runs_backward_and_is_documented(kind, name):
    trick = TABLES[kind][0][name]
    assert trick.doc.strip() and "\n" not in trick.doc
    for field, info in trick.params.model_fields.items():
        assert info.description, f"{name}.{field} has no description"
    loss = make(kind, name)
    pred, target = inputs(kind, loss)
    pred.requires_grad_(True)
    out = loss(pred, target)
    assert out.shape == (N,)
    out.sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_weight_scales_the_loss(kind, name):
    base, heavy = make(kind, name), make(kind, name, weight=2.5)
    pred, target = inputs(kind, base)
    plain = base(pred, target)  # once: GHM's momentum makes a second call differ
    assert plain.abs().sum() > 0
    torch.testing.assert_close(heavy(pred, target), 2.5 * plain)


def test_space_says_what_each_box_loss_compares():
    spaces = {name: type(make("box", name)).space for name in BOX_LOSSES}
    deltas = dict.fromkeys(["l1", "smooth_l1", "balanced_l1", "ghm_r"], "delta")
    assert spaces == deltas | dict.fromkeys(IOU_FAMILY, "box")


# ---- classification: exact values -------------------------------------------------


def test_focal_hand_computed():
    # class 0: logit ln 3 -> p = 3/4, target 1: alpha_t (1 - p)^2 (-ln p) = 0.25 * 1/16 * ln(4/3)
    # class 1: logit 0 -> p = 1/2, target 0: (1 - alpha) p^2 (-ln(1 - p)) = 0.75 * 1/4 * ln 2
    # total = ln(4/3) / 64 + 3 ln 2 / 16 = 0.004495 + 0.129965 = 0.134460
    logits = torch.tensor([[math.log(3), 0.0]], dtype=D)
    out = make("cls", "focal")(logits, torch.tensor([[1.0, 0.0]], dtype=D))
    assert out.item() == pytest.approx(0.134460, abs=1e-6)


def test_bce_label_smoothing_hand_computed():
    # eps 0.2 turns target 1 into 0.9; p = sigmoid(ln 3) = 3/4:
    # -(0.9 ln 0.75 + 0.1 ln 0.25) = 0.9 * 0.287682 + 0.1 * 1.386294 = 0.397543
    logits = torch.tensor([[math.log(3)]], dtype=D)
    out = make("cls", "bce", label_smoothing=0.2)(logits, torch.ones(1, 1, dtype=D))
    assert out.item() == pytest.approx(0.397543, abs=1e-6)


def test_ce_has_an_implicit_background_logit_and_smooths_over_c_plus_1():
    # logits_ext = [0, ln 2, 0]: softmax = [1/4, 1/2, 1/4]
    logits = torch.tensor([[math.log(2), 0.0]], dtype=D)
    ce = make("cls", "ce")
    assert ce(logits, torch.tensor([[1.0, 0.0]], dtype=D)).item() == pytest.approx(math.log(2))  # -ln 1/2
    assert ce(logits, torch.zeros(1, 2, dtype=D)).item() == pytest.approx(math.log(4))  # background: -ln 1/4
    # eps 0.3 over 3 classes: 0.7 * ln 2 + 0.1 * (ln 4 + ln 2 + ln 4) = 1.2 ln 2
    smoothed = make("cls", "ce", label_smoothing=0.3)(logits, torch.tensor([[1.0, 0.0]], dtype=D))
    assert smoothed.item() == pytest.approx(1.2 * math.log(2))


@pytest.mark.parametrize("name", list(CLS_LOSSES))
def test_label_smoothing_changes_the_loss(name):
    plain, smooth = make("cls", name), make("cls", name, label_smoothing=0.1)
    logits, targets = inputs("cls", plain)
    assert not torch.allclose(plain(logits, targets), smooth(logits, targets))


def test_ce_scores_plus_background_sum_to_one():
    logits = torch.randn(N, C, generator=torch.Generator().manual_seed(1), dtype=D)
    scores = make("cls", "ce").scores(logits)
    background = 1 / (1 + logits.exp().sum(dim=1))  # softmax of the fixed 0 logit
    assert scores.shape == (N, C)
    torch.testing.assert_close(scores.sum(dim=1) + background, torch.ones(N, dtype=D))


@pytest.mark.parametrize("name", ["focal", "bce", "ghm_c", "quality_focal", "varifocal"])
def test_sigmoid_losses_score_with_sigmoid(name):
    logits = torch.tensor([[0.0, math.log(3)]], dtype=D)
    torch.testing.assert_close(make("cls", name).scores(logits), torch.tensor([[0.5, 0.75]], dtype=D))


# 4 anchors, 1 class: logits +-ln 3 give p = 3/4 or 1/4, so |p - y| is 1/4 (bin 0 of 2) or 3/4 (bin 1)
GHM_LOGITS = torch.tensor([[math.log(3)], [-math.log(3)], [-math.log(3)], [-math.log(3)]], dtype=D)
GHM_TARGETS = torch.tensor([[1.0], [1.0], [0.0], [0.0]], dtype=D)  # two positives


def test_ghm_c_hand_computed():
    # |p - y| = 1/4, 3/4, 1/4, 1/4: bin 0 holds 3, bin 1 holds 1, 2 bins filled
    # BCE = ln 4/3, ln 4, ln 4/3, ln 4/3; weights 1 / (count x 2) = 1/6, 1/2, 1/6, 1/6
    # mmdetection's GHMC = sum = ln(4/3) / 2 + ln(4) / 2; rows x P = 2 positives
    out = make("cls", "ghm_c", bins=2, momentum=0.0)(GHM_LOGITS, GHM_TARGETS)
    third = math.log(4 / 3) / 3
    torch.testing.assert_close(out, torch.tensor([third, math.log(4), third, third], dtype=D))
    assert out.sum().item() / 2 == pytest.approx((math.log(4 / 3) + math.log(4)) / 2)  # the detector's / P


def test_ghm_c_momentum_moves_the_bin_density():
    ghm, plain = make("cls", "ghm_c", bins=2, momentum=0.75), make("cls", "ghm_c", bins=2, momentum=0.0)
    reference = plain(GHM_LOGITS, GHM_TARGETS)  # divided by the counts 3, 1
    # from 0: 0.25 x (3, 1) = (0.75, 0.25); then 0.75 x (0.75, 0.25) + 0.25 x (3, 1) = (1.3125, 0.4375)
    torch.testing.assert_close(ghm(GHM_LOGITS, GHM_TARGETS), reference * torch.tensor([4.0, 4, 4, 4], dtype=D))
    second = ghm(GHM_LOGITS, GHM_TARGETS)
    torch.testing.assert_close(second, reference * torch.tensor([3 / 1.3125, 1 / 0.4375, 3 / 1.3125, 3 / 1.3125],
                                                                dtype=D))
    ghm(GHM_LOGITS[2:], GHM_TARGETS[2:])  # bin 0 only: bin 1 keeps its density
    torch.testing.assert_close(ghm.density, torch.tensor([0.75 * 1.3125 + 0.25 * 2, 0.4375]))


def test_quality_focal_with_hard_targets_is_the_focal_loss_without_alpha():
    # (1/4)^2 ln(4/3) for the positive at p = 3/4, (1/2)^2 ln 2 for the negative at p = 1/2
    logits, targets = torch.tensor([[math.log(3), 0.0]], dtype=D), torch.tensor([[1.0, 0.0]], dtype=D)
    out = make("cls", "quality_focal")(logits, targets)
    assert out.item() == pytest.approx(math.log(4 / 3) / 16 + math.log(2) / 4)
    logits, targets = inputs("cls", None)
    expected = tvo.sigmoid_focal_loss(logits, targets, alpha=-1, gamma=1.5, reduction="none").sum(dim=1)
    torch.testing.assert_close(make("cls", "quality_focal", beta=1.5)(logits, targets), expected)


@pytest.mark.parametrize("y", [0.3, 0.6, 0.9])
def test_quality_focal_is_least_where_the_score_equals_the_soft_target(y):
    qfl, targets = make("cls", "quality_focal"), torch.tensor([[y]], dtype=D)
    at = torch.tensor([[math.log(y / (1 - y))]], dtype=D, requires_grad=True)  # sigmoid = y
    (grad,) = torch.autograd.grad(qfl(at, targets).sum(), at)
    assert grad.item() == pytest.approx(0.0, abs=1e-12)
    assert qfl(at, targets).item() == pytest.approx(0.0, abs=1e-12)  # |y - p|^beta = 0
    for step in (-0.1, 0.1):
        assert qfl(at.detach() + step, targets).item() > 0


def test_varifocal_hand_computed():
    # positive q = 0.6 at p = 3/4: q x BCE = 0.6 x -(0.6 ln 3/4 + 0.4 ln 1/4)
    # negatives: alpha p^2 (-ln(1 - p)) = 0.75 x 1/4 x ln 2 (p = 1/2, twice) and 0.75 x 1/16 x ln 4/3 (p = 1/4)
    logits = torch.tensor([[math.log(3), 0.0], [0.0, -math.log(3)]], dtype=D)
    targets = torch.tensor([[0.6, 0.0], [0.0, 0.0]], dtype=D)
    positive = 0.6 * -(0.6 * math.log(0.75) + 0.4 * math.log(0.25))
    first, second = 0.75 * 0.25 * math.log(2), 0.75 / 16 * math.log(4 / 3)
    out = make("cls", "varifocal")(logits, targets)
    torch.testing.assert_close(out, torch.tensor([positive + first, first + second], dtype=D))


def test_quality_losses_are_exactly_those_that_want_quality():
    wanting = {name for name in CLS_LOSSES if getattr(make("cls", name), "wants_quality", False)}
    assert wanting == QUALITY_LOSSES


@pytest.mark.parametrize("detector", list(DETECTORS))
@pytest.mark.parametrize("loss", sorted(QUALITY_LOSSES))
def test_quality_losses_name_the_detectors_that_give_the_iou(loss, detector):
    assert set(QUALITY_DETECTORS) <= set(DETECTORS)
    problem = quality_problem(loss, detector)
    if detector in QUALITY_DETECTORS:
        assert problem is None
    else:
        assert f"loss.cls: {loss}" in problem and f"model.detector: {detector}" in problem
        assert "retinanet, fcos, atss" in problem and "focal" in problem
    assert quality_problem("focal", detector) is None


# ---- box: exact values ------------------------------------------------------------

# overlapping, nested, disjoint and differently-shaped pairs
PRED = torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 1, 1], [0, 0, 4, 1]], dtype=D)
TARGET = torch.tensor([[1, 1, 3, 3], [0, 0, 4, 4], [2, 2, 3, 4], [1, -1, 2, 3]], dtype=D)
TORCHVISION_MATRIX = {
    "iou": tvo.box_iou,
    "giou": tvo.generalized_box_iou,
    "diou": tvo.distance_box_iou,
    "ciou": tvo.complete_box_iou,
}


@pytest.mark.parametrize("name", list(TORCHVISION_MATRIX))
def test_iou_family_matches_torchvision_matrices(name):
    expected = 1 - TORCHVISION_MATRIX[name](PRED, TARGET).diagonal()
    torch.testing.assert_close(make("box", name)(PRED, TARGET), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(BOX_LOSSES))
def test_identical_inputs_give_zero(name):
    torch.testing.assert_close(make("box", name)(TARGET, TARGET), torch.zeros(4, dtype=D), rtol=0, atol=1e-6)


def test_eiou_hand_computed():
    # pair 1: pred 2x2 at the origin, target 4x3 at the origin; inter 4, union 4 + 12 - 4 = 12, IoU 1/3
    #   enclosure 4x3 (c^2 = 25), centres (1, 1) and (2, 1.5): rho^2 = 1.25
    #   EIoU = 2/3 + 1.25/25 + (2-4)^2/4^2 + (2-3)^2/3^2 = 2/3 + 1/20 + 1/4 + 1/9 = 97/90
    # pair 2: unit boxes at x = 0 and x = 2; IoU 0, enclosure 3x1 (c^2 = 10), rho^2 = 4, same shape
    #   EIoU = 1 + 4/10 = 1.4
    pred = torch.tensor([[0, 0, 2, 2], [0, 0, 1, 1]], dtype=D)
    target = torch.tensor([[0, 0, 4, 3], [2, 0, 3, 1]], dtype=D)
    out = make("box", "eiou")(pred, target)
    torch.testing.assert_close(out, torch.tensor([97 / 90, 1.4], dtype=D))
    # Focal-EIoU weights by IoU^0.5: sqrt(1/3) * 97/90 = 0.622255, and 0 without overlap
    focal = make("box", "focal_eiou")(pred, target)
    torch.testing.assert_close(focal, torch.tensor([0.622255, 0.0], dtype=D), rtol=0, atol=1e-6)


def test_focal_eiou_does_not_backpropagate_through_its_iou_weight():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=D, requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 4.0, 3.0]], dtype=D)
    (eiou_grad,) = torch.autograd.grad(make("box", "eiou")(pred, target).sum(), pred)
    (focal_grad,) = torch.autograd.grad(make("box", "focal_eiou", gamma=0.5)(pred, target).sum(), pred)
    torch.testing.assert_close(focal_grad, math.sqrt(1 / 3) * eiou_grad)


def test_balanced_l1_hand_computed():
    # alpha 0.5, gamma 1.5, beta 1: b = e^3 - 1 = 19.085537, gamma / b = 0.078594
    # diff 0   -> 0
    # diff 0.5 -> alpha/b (b/2 + 1) ln(b/2 + 1) - alpha/2 = 0.026198 * 10.542768 * 2.355442 - 0.25 = 0.400571
    # diff 1   -> gamma + gamma/b - alpha = 1.078594
    # diff 2   -> 2 gamma + gamma/b - alpha = 2.578594;  total 4.057759
    pred, target = torch.zeros(1, 4, dtype=D), torch.tensor([[0.0, -0.5, 1.0, 2.0]], dtype=D)
    assert make("box", "balanced_l1")(pred, target).item() == pytest.approx(4.057759, abs=1e-5)


def test_balanced_l1_is_continuous_at_beta():
    loss, pred = make("box", "balanced_l1", beta=0.7, alpha=0.4), torch.zeros(1, 4, dtype=D)
    below, at = (loss(pred, torch.full((1, 4), d, dtype=D)).item() for d in (0.7 - 1e-9, 0.7))
    assert below == pytest.approx(at, abs=1e-7)


def test_ghm_r_hand_computed():
    # mu 0.75: d = +-1 gives ASL1 sqrt(1 + 0.5625) - 0.75 = 0.5 and gradient norm 1 / 1.25 = 0.8 (bin 1 of 2);
    # d = 0.4 gives sqrt(0.7225) - 0.75 = 0.1 and 0.4 / 0.85 (bin 0); d = 0 gives 0 (bin 0).
    # bin 0 holds 5 of the 8 coordinates, bin 1 holds 3: weights 8 / (count x 2) = 0.8 and 4/3
    pred, target = torch.zeros(2, 4, dtype=D), torch.tensor([[1.0, 0.0, 0.4, 0.0], [-1.0, 1.0, 0.0, 0.0]], dtype=D)
    out = make("box", "ghm_r", mu=0.75, bins=2, momentum=0.0)(pred, target)
    torch.testing.assert_close(out, torch.tensor([0.5 * 4 / 3 + 0.1 * 0.8, 2 * 0.5 * 4 / 3], dtype=D))


def test_ghm_r_with_one_bin_is_the_authentic_smooth_l1():
    pred, target = inputs("box", make("box", "l1"))
    diff = pred - target
    expected = ((diff**2 + 0.02**2).sqrt() - 0.02).sum(dim=1)
    torch.testing.assert_close(make("box", "ghm_r", bins=1, momentum=0.0)(pred, target), expected)


def test_smooth_l1_uses_retinanet_beta_by_default():
    # beta 1/9: |d| = 0.05 < beta is quadratic, 0.5 * 0.05^2 * 9 = 0.01125; |d| = 1 is 1 - 0.5/9
    pred, target = torch.zeros(1, 4, dtype=D), torch.tensor([[0.05, 0.0, 0.0, -1.0]], dtype=D)
    assert make("box", "smooth_l1")(pred, target).item() == pytest.approx(0.01125 + 1 - 0.5 / 9)


# ---- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "params"),
    [
        ("cls", "focal", {"gamma": -1.0}),
        ("cls", "focal", {"alpha": 1.5}),
        ("cls", "focal", {"label_smoothing": 1.0}),
        ("cls", "ce", {"label_smoothing": -0.1}),
        ("cls", "bce", {"gamma": 2.0}),  # bce has no gamma
        ("box", "giou", {"weight": -1.0}),
        ("box", "smooth_l1", {"beta": 0.0}),
        ("box", "balanced_l1", {"alpha": 0.0}),
        ("box", "focal_eiou", {"gamma": -0.5}),
        ("box", "ghm_r", {"momentum": 1.0}),
        ("cls", "ghm_c", {"bins": 0}),
        ("cls", "quality_focal", {"gamma": 2.0}),  # its exponent is beta
        ("cls", "varifocal", {"alpha": -0.1}),
        ("box", "iou", {"eps": 1e-6}),  # eps is not user-facing
    ],
)
def test_invalid_parameters_are_rejected(kind, name, params):
    with pytest.raises(ValidationError):
        make(kind, name, **params)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(KeyError, match=re.escape("did you mean 'giou'")):
        registry.lookup(BOX_LOSSES, "gio", "box loss")


@pytest.mark.parametrize("name", IOU_FAMILY)
def test_degenerate_predicted_boxes_give_finite_loss_and_gradient(name):
    # FCOS predicts ltrb = 0 at initialisation: zero-size boxes (torchvision's CIoU gave NaN)
    pred = torch.tensor([[10.0, 10.0, 10.0, 10.0], [5.0, 5.0, 25.0, 5.0]], requires_grad=True)
    target = torch.tensor([[8.0, 8.0, 20.0, 24.0], [4.0, 4.0, 30.0, 12.0]])
    loss = make("box", name)(pred, target)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(pred.grad).all()


def test_a_quality_loss_with_a_detector_that_gives_no_iou_is_refused_naming_both_keys():
    from pydantic import ValidationError

    from ablate.study.config import TrialConfig

    with pytest.raises(ValidationError, match="loss.cls: varifocal .* model.detector: faster_rcnn does not give"):
        TrialConfig.model_validate({"model": {"detector": "faster_rcnn"}, "loss": {"cls": "varifocal"}})
    assert TrialConfig.model_validate({"model": {"detector": "atss"}, "loss": {"cls": "quality_focal"}})


def test_hard_negative_keeps_positives_and_the_hardest_negatives_only():
    from ablate.tricks.losses.cls import bce_loss

    logits = torch.tensor([[2.0], [0.5], [3.0], [-1.0], [1.0], [-2.0]])  # row 0 positive, rows 1-5 negatives
    targets = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    loss = registry.build(CLS_LOSSES, "hard_negative", "cls", {"neg_pos_ratio": 2.0})(logits, targets)
    full = bce_loss(logits, targets)
    # negatives' BCE grows with their logit: the two hardest are rows 2 (3.0) and 4 (1.0)
    expected = torch.where(torch.tensor([True, False, True, False, True, False]), full, torch.zeros(()))
    torch.testing.assert_close(loss, expected)
    logits.requires_grad_(True)
    registry.build(CLS_LOSSES, "hard_negative", "cls", {})(logits, targets).sum().backward()
    grad = logits.grad[:, 0]  # default ratio 3: the 3 hardest of 5 negatives train (rows 2, 4, 1)
    assert (grad[[0, 1, 2, 4]] != 0).all() and (grad[[3, 5]] == 0).all()


def test_hard_negative_is_refused_with_ssd_which_mines_already():
    from pydantic import ValidationError

    from ablate.study.config import TrialConfig

    with pytest.raises(ValidationError, match="loss.cls: hard_negative mines negatives, which model.detector: ssd"):
        TrialConfig.model_validate({"model": {"detector": "ssd"}, "loss": {"cls": "hard_negative"}})
