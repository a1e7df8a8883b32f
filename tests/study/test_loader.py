"""Loading: `_base_` inheritance order, the merge rule, `-o` overrides."""

from __future__ import annotations

import pytest

from ablate.study import StudyError, load_study
from ablate.study.loader import parse_override
from ablate.study.paths import merge


def test_bases_merge_in_order_and_the_file_wins(write):
    write("a.yaml", {"train": {"epochs": 6, "batch_size": 4}, "data": {"image_size": 128}})
    write("b.yaml", {"train": {"epochs": 8}, "loss": {"box": "giou"}})
    study = load_study(write("s.yaml", {"name": "s", "_base_": ["a.yaml", "b.yaml"], "train": {"batch_size": 2}}))
    assert study.train.epochs == 8  # b after a
    assert study.train.batch_size == 2  # the file over both bases
    assert study.data.image_size == 128  # only in a
    assert study.loss.box.name == "giou"


def test_nested_base_and_relative_paths(write):
    write("base/root.yaml", {"train": {"epochs": 5}, "model": {"channels": 32}})
    write("base/mid.yaml", {"_base_": "root.yaml", "train": {"epochs": 6}})
    study = load_study(write("studies/s.yaml", {"name": "s", "_base_": "../base/mid.yaml"}))
    assert (study.train.epochs, study.model.channels) == (6, 32)


def test_a_different_trick_name_replaces_the_section():
    base = {"box": {"name": "smooth_l1", "beta": 0.05, "weight": 2.0}}
    assert merge(base, {"box": {"name": "giou"}}) == {"box": {"name": "giou"}}
    assert merge(base, {"box": {"beta": 0.1}}) == {"box": {"name": "smooth_l1", "beta": 0.1, "weight": 2.0}}
    assert merge({"augment": ["hflip", "mixup"]}, {"augment": ["vflip"]}) == {"augment": ["vflip"]}


def test_base_section_params_do_not_leak_into_another_trick(write):
    write("base.yaml", {"loss": {"box": {"name": "smooth_l1", "beta": 0.05}}})
    study = load_study(write("s.yaml", {"name": "s", "_base_": "base.yaml", "loss": {"box": {"name": "giou"}}}))
    assert study.loss.box.model_dump() == {"name": "giou", "weight": 1.0}


def test_unnamed_mapping_and_bare_name_shorthands(write):
    study = load_study(write("s.yaml", {"name": "s", "loss": {"box": {"beta": 0.05}, "cls": "bce"}}))
    assert (study.loss.box.name, study.loss.box.beta, study.loss.cls.name) == ("smooth_l1", 0.05, "bce")


@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("train.optimizer.lr=0.02", ("train", "optimizer", "lr"), 0.02),
        ("train.epochs=3", ("train", "epochs"), 3),
        ("seeds=[0, 1]", ("seeds",), [0, 1]),
        ("train.ema.enabled=true", ("train", "ema", "enabled"), True),
        ("tracking.uri=", ("tracking", "uri"), None),
        ("loss.box={name: giou, weight: 2}", ("loss", "box"), {"name": "giou", "weight": 2}),
        ("factors.loss.box=[giou, ciou]", ("factors", "loss.box"), ["giou", "ciou"]),
        ("search.space.train.optimizer.lr={type: float, low: 0.001, high: 0.1}",
         ("search", "space", "train.optimizer.lr"), {"type": "float", "low": 0.001, "high": 0.1}),
    ],
)
def test_override_values_are_yaml_typed(text, parts, value):
    assert parse_override(text) == (parts, value)


def test_overrides_apply_after_the_files(write):
    path = write("s.yaml", {"name": "s", "train": {"epochs": 6}, "factors": {"loss.box": ["giou"]}})
    study = load_study(path, ["train.epochs=4", "train.optimizer.lr=0.05", "factors.loss.box=[ciou, diou]", "seeds=[3]"])
    assert study.train.epochs == 4
    assert study.train.optimizer.lr == 0.05
    assert study.factors == {"loss.box": ["ciou", "diou"]}
    assert study.seeds == [3]


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3"])
def test_malformed_override_is_explained(text):
    with pytest.raises(StudyError, match=r"dotted\.key=value"):
        parse_override(text)


def test_lr_effective_follows_the_scaling_rule(write):
    study = load_study(write("s.yaml", {
        "name": "s", "train": {"batch_size": 2, "devices": 4, "optimizer": {"lr": 0.02},
                               "lr_scaling": {"rule": "linear", "base_batch_size": 16}}}))
    assert study.baseline().lr_effective == pytest.approx(0.01)


def test_step_preset_sets_epochs_and_milestones(write):
    study = load_study(write("s.yaml", {"name": "s", "train": {"schedule": {"name": "step", "preset": "2x"}}}))
    assert study.train.epochs == 24
    with pytest.raises(StudyError, match=r"train.*epochs: 12 contradicts schedule preset 2x"):
        load_study(write("t.yaml", {"name": "t", "train": {"epochs": 12, "schedule": {"preset": "2x"}}}))
