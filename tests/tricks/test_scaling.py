"""LR scaling with the total batch: mmdetection's auto_scale_lr table and the other rules."""

from __future__ import annotations

import math

import pytest

from ablate.tricks import registry
from ablate.tricks.scaling import LR_SCALING, lr_effective


@pytest.mark.parametrize("name", LR_SCALING)
def test_documented_and_defaults_construct(name):
    trick = LR_SCALING[name]
    assert trick.doc.strip() and "\n" not in trick.doc
    for field, info in trick.params.model_fields.items():
        assert info.description, f"{name}.{field} has no description"
    trick.params()
    assert registry.build(LR_SCALING, name, "lr scaling")(1.0) == 1.0  # the base batch keeps the lr


# mmdetection: lr 0.02 is written for 8 devices x 2 images (base_batch_size 16).
@pytest.mark.parametrize(
    ("devices", "batch_size", "expected"),
    [(8, 2, 0.02), (4, 2, 0.01), (2, 2, 0.005), (4, 1, 0.005), (16, 2, 0.04), (1, 2, 0.0025)],
)
def test_linear_rule_mmdetection_table(devices, batch_size, expected):
    lr = lr_effective(0.02, rule="linear", base_batch_size=16, batch_size=batch_size, devices=devices)
    assert lr == pytest.approx(expected, rel=1e-12)


def test_docstring_example_is_exact():
    assert lr_effective(0.02, rule="linear", base_batch_size=16, batch_size=2, devices=4) == 0.01


@pytest.mark.parametrize(("batch", "factor"), [(64, 2.0), (4, 0.5), (16, 1.0), (32, math.sqrt(2))])
def test_sqrt_rule(batch, factor):
    lr = lr_effective(1e-3, rule="sqrt", base_batch_size=16, batch_size=batch)
    assert lr == pytest.approx(1e-3 * factor, rel=1e-12)


@pytest.mark.parametrize(("batch_size", "devices", "accumulate"), [(1, 1, 1), (2, 8, 1), (64, 4, 8)])
def test_none_rule_keeps_the_lr(batch_size, devices, accumulate):
    lr = lr_effective(0.02, rule="none", base_batch_size=16, batch_size=batch_size, devices=devices,
                      accumulate=accumulate)
    assert lr == 0.02


@pytest.mark.parametrize(("rule", "expected"), [("linear", 0.04), ("sqrt", 0.02 * math.sqrt(2)), ("none", 0.02)])
def test_accumulate_multiplies_the_batch(rule, expected):
    # 4 devices x 2 images x 4 accumulation steps = 32 images per optimiser step, twice the base
    lr = lr_effective(0.02, rule=rule, base_batch_size=16, batch_size=2, devices=4, accumulate=4)
    assert lr == pytest.approx(expected, rel=1e-12)
    same = lr_effective(0.02, rule=rule, base_batch_size=16, batch_size=8, devices=4, accumulate=1)
    assert lr == pytest.approx(same, rel=1e-12)


def test_unknown_rule_lists_the_valid_ones():
    with pytest.raises(KeyError, match="did you mean 'sqrt'.*linear, sqrt, none"):
        lr_effective(0.02, rule="sqr", base_batch_size=16, batch_size=2)
