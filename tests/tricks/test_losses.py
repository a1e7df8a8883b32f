"""The loss catalogue: every entry builds, runs and is documented; exact values on tiny cases."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchvision.ops as tvo
from pydantic import ValidationError

from ablate.tricks import registry
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES

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
    assert base(pred, target).abs().sum() > 0
    torch.testing.assert_close(heavy(pred, target), 2.5 * base(pred, target))


def test_space_says_what_each_box_loss_compares():
    spaces = {name: type(make("box", name)).space for name in BOX_LOSSES}
    assert spaces == {"l1": "delta", "smooth_l1": "delta", "balanced_l1": "delta"} | dict.fromkeys(IOU_FAMILY, "box")


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


@pytest.mark.parametrize("name", ["focal", "bce"])
def test_sigmoid_losses_score_with_sigmoid(name):
    logits = torch.tensor([[0.0, math.log(3)]], dtype=D)
    torch.testing.assert_close(make("cls", name).scores(logits), torch.tensor([[0.5, 0.75]], dtype=D))


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
