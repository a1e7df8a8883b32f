"""Every mistake the issue lists is an error naming the file, the key path and what is valid."""

from __future__ import annotations

import pytest

from ablate.study import StudyError, load_study

BASE = {"train": {"epochs": 4}}

CASES = {
    # case: (study keys, expected key path, expected message fragment)
    "unknown key": ({"train": {"optimzer": {"lr": 0.1}}}, "train.optimzer", "did you mean 'optimizer'"),
    "unknown top-level key": ({"factor": {"loss.box": ["giou"]}}, "factor", "did you mean 'factors'"),
    "unknown trick": ({"loss": {"box": "gio"}}, "loss.box.name", "did you mean 'giou'"),
    "unknown trick in a list": ({"augment": ["hflip", "mosiac"]}, "augment[1].name", "did you mean 'mosaic'"),
    "param of another trick": ({"loss": {"box": {"name": "giou", "beta": 0.1}}}, "loss.box.beta", "valid keys here: weight"),
    "unknown literal": ({"model": {"backbone": "resnet19"}}, "model.backbone", "did you mean 'resnet18'"),
    "wrong type": ({"train": {"epochs": "twelve"}}, "train.epochs", "valid integer"),
    "negative lr": ({"train": {"optimizer": {"lr": -0.1}}}, "train.optimizer.lr", "greater than 0"),
    "probability above 1": ({"augment": [{"name": "mixup", "p": 1.5}]}, "augment[0].p", "less than or equal to 1"),
    "empty factor list": ({"factors": {"loss.box": []}}, "factors.loss.box", "has no levels"),
    "duplicate levels": ({"factors": {"loss.box": ["giou", {"name": "giou"}]}}, "factors.loss.box", "same configuration"),
    "bad factor level": ({"factors": {"loss.box": ["giou", "ciuo"]}}, "factors.loss.box[1]", "did you mean 'ciou'"),
    "factor path missing": ({"factors": {"loss.boxx": ["giou"]}}, "factors.loss.boxx", "did you mean 'loss.box'"),
    "factor on a study key": ({"factors": {"seeds": [[1]]}}, "factors.seeds", "not part of a trial"),
    "exclude of a non-factor": ({"factors": {"loss.box": ["giou"]}, "exclude": [{"loss.cls": "bce"}]},
                                "exclude[0].loss.cls", "is not a factor"),
    "grace_period > max_t": ({"scheduler": {"grace_period": 5, "max_t": 4}}, "scheduler.grace_period",
                             "grace_period (5) must be <= max_t (4)"),
    "max_seeds below the seeds listed": ({"seeds": [0, 1, 2], "decision": {"max_seeds": 2}}, "decision.max_seeds",
                                         "2 is below the 3 seeds listed"),
    "race for optuna": ({"design": "optuna", "search": {"space": {"train.optimizer.lr": {"type": "float", "low": 0.001,
                                                                                         "high": 0.1}}},
                         "scheduler": {"name": "race"}}, "scheduler.name", "use scheduler asha or none"),
    "unknown pairing": ({"scheduler": {"name": "asha", "pairing": "variant"}}, "scheduler.pairing", "seed"),
    "max_t below epochs": ({"scheduler": {"max_t": 2}}, "scheduler.max_t", "would stop every trial"),
    "grace_period beyond epochs": ({"scheduler": {"grace_period": 9}}, "scheduler.grace_period", "must be <= max_t (4"),
    "metric never reported": ({"scheduler": {"metric": "mAP_50"}}, "scheduler.metric", "did you mean 'AP50'"),
    "mode against the metric": ({"scheduler": {"metric": "loss", "mode": "max"}}, "scheduler",
                                "loss is better lower; set mode: min"),
    "reduction factor 1": ({"scheduler": {"reduction_factor": 1}}, "scheduler.reduction_factor", "greater than 1"),
    "duplicate seeds": ({"seeds": [0, 0]}, "seeds", "duplicate seeds [0]"),
    "unsafe name": ({"name": "../../x"}, "name", "lowercase letters"),
    "search without optuna": ({"search": {"space": {}}}, "", "only used by design optuna"),
    "optuna without a space": ({"design": "optuna"}, "", "needs search.space"),
    "search low above high": ({"design": "optuna", "search": {"space": {
        "train.optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}}}}, "search", "low (0.1) must be below high"),
    "search path missing": ({"design": "optuna", "search": {"space": {
        "train.optimizer.lrr": {"type": "float", "low": 0.01, "high": 0.1}}}}, "search.space.train.optimizer.lrr",
        "did you mean 'train.optimizer.lr'"),
    "search choice invalid": ({"design": "optuna", "search": {"space": {
        "loss.box": {"type": "categorical", "choices": ["giou", "gio"]}}}}, "search.space.loss.box.choices[1]",
        "did you mean 'giou'"),
    "nesterov without momentum": ({"train": {"optimizer": {"momentum": 0, "nesterov": True}}},
                                  "train.optimizer", "needs momentum > 0"),
    "milestone past the end": ({"train": {"epochs": 4, "schedule": {"milestones": [2, 6]}}}, "train", "below epochs (4)"),
    "fractional gpus above 1": ({"resources": {"gpu": 1.5}}, "resources.gpu", "whole number"),
    "coco without annotations": ({"data": {"dataset": "coco"}}, "data", "needs data.train_ann"),
    # a key that does not apply to the chosen detector names the key, the detector and those it applies to
    "anchor key for fcos": ({"model": {"detector": {"name": "fcos", "anchor_scale": 2}}}, "model.detector",
                            "'anchor_scale' does not apply to detector fcos: it is a key of retinanet, atss"),
    "rpn key for a one-stage model": ({"model": {"detector": {"name": "retinanet", "rpn_batch": 128}}},
                                      "model.detector", "it is a key of faster_rcnn"),
    "assigner for ssd": ({"model": {"detector": "ssd", "assigner": "atss"}}, "",
                         "model.assigner: atss does not apply to detector ssd; model.assigner applies to retinanet, "
                         "fcos, atss"),
    "nms for detr": ({"model": {"detector": "detr"}, "eval": {"nms": "soft_nms"}}, "",
                     "eval.nms: soft_nms does not apply to detector detr"),
    "neck for ssd": ({"model": {"detector": "ssd", "neck": "pan"}}, "", "model.neck: pan does not apply to detector ssd"),
    "assigner in a factor level": ({"factors": {"model.detector": ["ssd"]}, "model": {"assigner": "atss"}},
                                   "factors.model.detector[0]", "does not apply to detector ssd"),
    "caffe style on tiny": ({"model": {"style": "caffe"}}, "model", "style: caffe applies to backbones resnet18"),
    "ssd300 vgg16 too small": ({"model": {"detector": "ssd", "backbone": "vgg16"}, "data": {"image_size": 192}}, "",
                               "needs data.image_size >= 268"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_error_names_file_key_and_fix(write, case):
    keys, key, fragment = CASES[case]
    path = write("study.yaml", {"name": "s", **BASE, **keys})
    with pytest.raises(StudyError) as info:
        load_study(path)
    problems = info.value.problems
    assert any(fragment in p.message or fragment in str(p) for p in problems), problems
    matching = [p for p in problems if fragment in str(p)]
    assert matching[0].file.endswith("study.yaml")
    assert matching[0].key == key or (key and matching[0].key.startswith(key)), matching[0]


def test_missing_base_file_names_the_including_file(write):
    write("_base_/retinanet_shapes.yaml", {"train": {"epochs": 2}})
    path = write("s.yaml", {"name": "s", "_base_": "_base_/retinanet_shape.yaml"})
    with pytest.raises(StudyError) as info:
        load_study(path)
    text = str(info.value)
    assert "s.yaml: _base_: no such file '_base_/retinanet_shape.yaml'" in text
    assert "did you mean 'retinanet_shapes.yaml'" in text


def test_circular_base_shows_the_chain(write):
    write("a.yaml", {"name": "a", "_base_": "b.yaml"})
    write("b.yaml", {"_base_": "c.yaml"})
    write("c.yaml", {"_base_": "a.yaml"})
    with pytest.raises(StudyError, match=r"circular inheritance: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"):
        load_study(write("a.yaml", {"name": "a", "_base_": "b.yaml"}))


def test_error_in_a_base_names_the_base_file(write):
    write("base.yaml", {"train": {"epochs": 4, "optimizer": {"momentun": 0.9}}})
    with pytest.raises(StudyError) as info:
        load_study(write("s.yaml", {"name": "s", "_base_": "base.yaml"}))
    (problem,) = info.value.problems
    assert problem.file.endswith("base.yaml") and problem.key == "train.optimizer.momentun"
    assert "did you mean 'momentum'" in problem.message


def test_error_from_an_override_names_the_override(write):
    with pytest.raises(StudyError) as info:
        load_study(write("s.yaml", {"name": "s"}), ["loss.box=gio"])
    (problem,) = info.value.problems
    assert problem.file == "-o loss.box=gio" and "did you mean 'giou'" in problem.message


def test_all_problems_are_reported_at_once(write):
    with pytest.raises(StudyError) as info:
        load_study(write("s.yaml", {"name": "s", "train": {"epochs": 0, "batch_size": "x"}, "modle": {}}))
    assert {p.key for p in info.value.problems} == {"train.epochs", "train.batch_size", "modle"}


@pytest.mark.parametrize(("content", "fragment"), [
    ("", "file is empty"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("name: [unclosed\n", "invalid YAML at line"),
    ("name: !!python/object/apply:os.system ['echo hi']\n", "YAML tags that build objects are not allowed"),
])
def test_unreadable_files_are_explained(write, content, fragment):
    with pytest.raises(StudyError, match=fragment):
        load_study(write("s.yaml", content))


def test_binary_garbage_and_missing_file(tmp_path):
    garbage = tmp_path / "g.yaml"
    garbage.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(StudyError, match="not a UTF-8 text file"):
        load_study(garbage)
    with pytest.raises(StudyError, match="file not found"):
        load_study(tmp_path / "nope.yaml")
