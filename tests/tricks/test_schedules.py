"""Schedules and warmups: exact values at chosen iterations, checked against torch's schedulers."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from ablate.tricks import registry
from ablate.tricks.schedules import SCHEDULES, STEP_PRESETS, WARMUPS, step_milestones

BASE_LR = 0.1


def schedule(name: str, epochs: int = 4, iters_per_epoch: int = 5, base_lr: float = BASE_LR, **params):
    return registry.build(
        SCHEDULES, name, "schedule", params, epochs=epochs, iters_per_epoch=iters_per_epoch, base_lr=base_lr
    )


def warmup(name: str, **params):
    return registry.build(WARMUPS, name, "warmup", params)


def torch_lrs(make_scheduler, steps: int, base_lr: float = BASE_LR) -> list[float]:
    """The lr torch uses at iterations 0..steps-1, its scheduler stepped once per iteration."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


# ---- catalogue hygiene --------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_builds_with_defaults_and_starts_positive(name):
    s = schedule(name)
    values = [s(it) for it in range(20)]
    assert all(v > 0 and math.isfinite(v) for v in values)


# ---- step -----------------------------------------------------------------------


@pytest.mark.parametrize(("epochs", "expected"), [(12, [8, 11]), (24, [16, 22]), (36, [24, 33])])
def test_step_usual_milestones(epochs, expected):
    assert step_milestones(epochs, None, None) == expected


@pytest.mark.parametrize(("preset", "epochs", "milestones"), [("1x", 12, [8, 11]), ("2x", 24, [16, 22]), ("3x", 36, [28, 34])])
def test_step_presets(preset, epochs, milestones):
    assert STEP_PRESETS[preset] == (epochs, milestones)
    assert step_milestones(epochs, None, preset) == milestones
    s = schedule("step", epochs=epochs, iters_per_epoch=3, preset=preset)
    a, b = milestones
    assert s(a * 3 - 1) == 1.0
    assert s(a * 3) == pytest.approx(0.1)
    assert s(b * 3 - 1) == pytest.approx(0.1)
    assert s(b * 3) == pytest.approx(0.01)


def test_step_milestones_in_epochs_become_iterations():
    s = schedule("step", epochs=6, iters_per_epoch=10, milestones=[2, 5], gamma=0.5)
    expected = {0: 1.0, 19: 1.0, 20: 0.5, 49: 0.5, 50: 0.25, 59: 0.25}
    assert {it: s(it) for it in expected} == expected


def test_step_default_is_usual_points_of_12_epochs():
    s = schedule("step", epochs=12, iters_per_epoch=2)
    assert [s(it) for it in (15, 16, 21, 22)] == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_step_equals_torch_multistep():
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[8, 14], gamma=0.3), 20)
    s = schedule("step", epochs=4, iters_per_epoch=2, milestones=[4, 7], gamma=0.3)
    assert [BASE_LR * s(it) for it in range(20)] == pytest.approx(ref, rel=1e-9)


# ---- cosine ---------------------------------------------------------------------


@pytest.mark.parametrize("min_lr", [0.0, 0.01])
def test_cosine_equals_torch_cosine_annealing(min_lr):
    epochs, ipe = 3, 4
    total = epochs * ipe
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=min_lr), total + 1)
    s = schedule("cosine", epochs=epochs, iters_per_epoch=ipe, min_lr=min_lr)
    for it in (0, 1, 5, 6, 11, 12):
        assert BASE_LR * s(it) == pytest.approx(ref[it], rel=1e-9, abs=1e-12), it
    assert BASE_LR * s(total // 2) == pytest.approx((BASE_LR + min_lr) / 2)
    assert BASE_LR * s(total) == pytest.approx(min_lr, abs=1e-12)


@pytest.mark.parametrize(("period", "mult", "min_lr"), [(1, 1, 0.0), (1, 2, 0.005), (2, 3, 0.0)])
def test_cosine_restarts_equals_torch_warm_restarts(period, mult, min_lr):
    ipe, steps = 3, 40
    ref = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            o, T_0=period * ipe, T_mult=mult, eta_min=min_lr
        ),
        steps,
    )
    s = schedule("cosine_restarts", epochs=20, iters_per_epoch=ipe, period=period, mult=mult, min_lr=min_lr)
    assert [BASE_LR * s(it) for it in range(steps)] == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_cosine_restarts_restarts_at_one():
    s = schedule("cosine_restarts", epochs=8, iters_per_epoch=5, period=2, mult=2)
    assert s(0) == s(10) == s(30) == 1.0
    assert s(9) < 0.1 and s(29) < 0.1


# ---- onecycle -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "ipe", "pct_start", "div_factor", "final_div_factor"),
    [(2, 10, 0.3, 25.0, 1e4), (1, 10, 0.25, 10.0, 100.0), (1, 5, 0.9, 4.0, 10.0), (1, 2, 0.3, 25.0, 1e4),
     (1, 10, 0.1, 25.0, 1e4), (1, 20, 0.05, 25.0, 1e4)],
)
def test_onecycle_equals_torch_onecycle(epochs, ipe, pct_start, div_factor, final_div_factor):
    total = epochs * ipe
    s = schedule("onecycle", epochs=epochs, iters_per_epoch=ipe, pct_start=pct_start,
                 div_factor=div_factor, final_div_factor=final_div_factor)
    ours = [BASE_LR * s(it) for it in range(total)]
    if pct_start * total == 1:  # torch divides 0 by 0 in its rising phase; ablate starts at lr / div_factor
        with pytest.raises(ZeroDivisionError):
            torch_onecycle(total, pct_start, div_factor, final_div_factor)
        assert ours[0] == pytest.approx(BASE_LR / div_factor)
        assert ours[-1] == pytest.approx(BASE_LR / div_factor / final_div_factor)
        return
    ref = torch_onecycle(total, pct_start, div_factor, final_div_factor)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-15)


def torch_onecycle(total, pct_start, div_factor, final_div_factor):
    return torch_lrs(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=BASE_LR, total_steps=total, pct_start=pct_start, div_factor=div_factor,
            final_div_factor=final_div_factor, anneal_strategy="cos", three_phase=False,
        ),
        total,
    )


def test_onecycle_endpoints():
    s = schedule("onecycle", epochs=1, iters_per_epoch=11, pct_start=0.5, div_factor=20.0, final_div_factor=50.0)
    peak = 0.5 * 11 - 1
    assert s(0) == pytest.approx(1 / 20)
    assert s(10) == pytest.approx(1 / 1000)
    assert max(s(it) for it in range(11)) <= 1.0
    assert s(math.floor(peak)) > s(0) and s(math.ceil(peak)) > s(10)


# ---- constant and plateau ----------------------------------------------------------


def test_constant_is_one():
    s = schedule("constant")
    assert [s(it) for it in (0, 1, 7, 10_000)] == [1.0] * 4
    s.observe({"mAP": 0.0})
    assert s(3) == 1.0


def test_plateau_decays_after_patience_epochs_without_improvement():
    s = schedule("plateau", metric="mAP", patience=2, factor=0.5)
    seen = []
    for value in [0.1, 0.2, 0.2, 0.15, 0.19, 0.3, 0.3, 0.3, 0.3, 0.1, 0.1]:
        s.observe({"mAP": value, "loss": 1.0})
        seen.append(s(0))
    #        0.1  0.2  =    bad2 bad3->decay  best  bad1  bad2  bad3->decay bad1 bad2
    assert seen == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_plateau_equals_torch_reduce_on_plateau():
    metrics = [0.5, 0.4, 0.45, 0.45, 0.3, 0.31, 0.32, 0.33, 0.34, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=1,
                                                     threshold=0.0, min_lr=0.0005)
    s = schedule("plateau", metric="loss", patience=1, factor=0.1, min_lr=0.0005)
    for m in metrics:
        ref.step(m)
        s.observe({"loss": m})
        assert BASE_LR * s(0) == pytest.approx(opt.param_groups[0]["lr"])


def test_plateau_lower_is_better_for_loss():
    s = schedule("plateau", metric="loss", patience=0, factor=0.1)
    for value, expected in [(2.0, 1.0), (1.0, 1.0), (0.5, 1.0), (0.6, 0.1), (0.4, 0.1), (0.4, 0.01)]:
        s.observe({"loss": value})
        assert s(0) == pytest.approx(expected), value


def test_plateau_respects_min_lr():
    s = schedule("plateau", base_lr=0.1, metric="mAP", patience=0, factor=0.1, min_lr=0.002)
    values = []
    for _ in range(5):
        s.observe({"mAP": 0.0})
        values.append(0.1 * s(0))
    assert values == pytest.approx([0.1, 0.01, 0.002, 0.002, 0.002])


def test_plateau_state_dict_round_trips():
    params = {"metric": "AP50", "patience": 1, "factor": 0.5}
    s = schedule("plateau", **params)
    for value in [0.3, 0.2, 0.2, 0.4, 0.35]:  # ends one bad epoch after a decay and a new best
        s.observe({"AP50": value})
    state = s.state_dict()
    assert state == {"best": 0.4, "bad_epochs": 1, "scale": 0.5}

    resumed = schedule("plateau", **params)
    assert resumed(0) == 1.0
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    seen = []
    for value in [0.1, 0.5, 0.5, 0.5]:
        s.observe({"AP50": value})
        resumed.observe({"AP50": value})
        assert resumed(0) == s(0)
        seen.append(s(0))
    assert seen == [0.25, 0.25, 0.25, 0.125]


def test_plateau_missing_metric_names_it():
    s = schedule("plateau", metric="AP50")
    with pytest.raises(KeyError, match="AP50"):
        s.observe({"mAP": 0.1})


# ---- warmups -----------------------------------------------------------------------


def test_linear_warmup():
    w = warmup("linear", iters=100, ratio=0.1)
    assert [w(0), w(50), w(100), w(101), w(5000)] == pytest.approx([0.1, 0.55, 1.0, 1.0, 1.0])


def test_constant_warmup():
    w = warmup("constant", iters=100, ratio=0.1)
    assert [w(0), w(50), w(99), w(100), w(5000)] == [0.1, 0.1, 0.1, 1.0, 1.0]


def test_exp_warmup():
    w = warmup("exp", iters=100, ratio=0.01)
    assert [w(0), w(50), w(100), w(101)] == pytest.approx([0.01, 0.1, 1.0, 1.0])
    assert w(25) == pytest.approx(0.01 ** 0.75)


@pytest.mark.parametrize("name", ["linear", "constant", "exp"])
def test_zero_iters_means_no_warmup(name):
    w = warmup(name, iters=0, ratio=0.5)
    assert [w(0), w(1)] == [1.0, 1.0]


def test_none_warmup_is_always_one():
    w = warmup("none")
    assert [w(it) for it in (0, 1, 50, 10_000)] == [1.0] * 4


@pytest.mark.parametrize("name", ["linear", "exp"])
def test_warmups_are_increasing(name):
    w = warmup(name, iters=20, ratio=0.001)
    values = [w(it) for it in range(22)]
    assert all(a < b for a, b in zip(values[:20], values[1:21]))


# ---- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("step", {"milestones": [8, 8]}, "strictly increasing"),
        ("step", {"milestones": [11, 8]}, "strictly increasing"),
        ("step", {"milestones": [0, 8]}, "positive"),
        ("step", {"gamma": 0}, "greater than 0"),
        ("step", {"preset": "4x"}, "1x"),
        ("plateau", {"metric": "mAP_50"}, "did you mean 'AP50'"),
        ("plateau", {"factor": 1.0}, "less than 1"),
        ("onecycle", {"pct_start": 1.0}, "less than 1"),
        ("onecycle", {"pct_start": 0.0}, "greater than 0"),
        ("cosine_restarts", {"period": 0}, "greater than or equal to 1"),
        ("cosine", {"min_lr": -1e-3}, "greater than or equal to 0"),
        ("cosine", {"eta_min": 0.0}, "eta_min"),
    ],
)
def test_invalid_schedule_params_raise(name, params, match):
    with pytest.raises(ValidationError, match=match):
        schedule(name, **params)


def test_unknown_schedule_suggests_a_name():
    with pytest.raises(registry.UnknownTrick, match="did you mean 'cosine'"):
        schedule("cosin")


@pytest.mark.parametrize("params", [{"ratio": 0.0}, {"ratio": 1.5}, {"iters": -1}])
def test_invalid_warmup_params_raise(params):
    with pytest.raises(ValidationError):
        warmup("linear", **params)
