"""Environment variables in ``data.root``: kept as written in the config, expanded where the data is read."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from ablate.data.build import build_data
from ablate.study import StudyError, load_study, trials
from ablate.study.config import TrialConfig
from ablate.study.loader import env_vars, expand_env, require_env

VAR = "ABLATE_TEST_DATA_ROOT"  # not ABLATE_COCO_ROOT: a user's own setting must not leak in
COCO = {"dataset": "coco", "root": f"${{{VAR}}}", "train_ann": "ann.json", "train_images": "imgs",
        "val_ann": "ann.json", "val_images": "imgs", "image_size": 64}


@pytest.fixture(autouse=True)
def unset(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)


@pytest.fixture
def dataset(tmp_path):
    """A one-image COCO set under tmp_path/coco."""
    root = tmp_path / "coco"
    (root / "imgs").mkdir(parents=True)
    Image.new("RGB", (48, 32), (200, 30, 30)).save(root / "imgs" / "a.png")
    ann = {"images": [{"id": 1, "file_name": "a.png", "width": 48, "height": 32}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [4, 4, 10, 8], "iscrowd": 0}],
           "categories": [{"id": 4, "name": "thing"}]}
    (root / "ann.json").write_text(json.dumps(ann))
    return root


def test_env_vars_reads_both_spellings():
    assert env_vars("${A}/x/$B_2/y") == ["A", "B_2"]
    assert env_vars("/data/coco") == [] and env_vars("/data/${}") == []


def test_expand_env_replaces_set_variables(monkeypatch):
    monkeypatch.setenv(VAR, "/data/coco")
    assert expand_env(f"${{{VAR}}}", key="data.root") == "/data/coco"
    assert expand_env(f"${VAR}/extra", key="data.root") == "/data/coco/extra"
    assert expand_env("~/coco", key="data.root") == "~/coco"  # no variable: unchanged (~ is the loader's)
    assert expand_env("/data/${}", key="data.root") == "/data/${}"


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_an_unset_variable_names_the_file_the_key_and_the_variable(monkeypatch, value):
    if value is not None:
        monkeypatch.setenv(VAR, value)
    with pytest.raises(StudyError) as err:
        expand_env(f"${{{VAR}}}/x", key="data.root", file="studies/coco/_base_/r50_coco.yaml")
    text = str(err.value)
    assert text.startswith("studies/coco/_base_/r50_coco.yaml: data.root: ")
    assert f"environment variable {VAR}, which is not set" in text and f"export {VAR}=" in text
    assert len(text.splitlines()) == 1  # a failed trial records the last line only


def test_two_unset_variables_are_both_named():
    with pytest.raises(StudyError, match=r"variables A_UNSET_1 and A_UNSET_2, which are not set"):
        expand_env("$A_UNSET_1/$A_UNSET_2", key="data.root")


def test_plan_needs_neither_the_variable_nor_the_data(write, monkeypatch):
    path = write("s.yaml", {"name": "s", "data": COCO, "factors": {"loss.box": ["giou"]}})
    study = load_study(path)  # unset: loads and expands without touching the filesystem
    assert study.data.root == f"${{{VAR}}}" and study.baseline().data.root == f"${{{VAR}}}"
    ids = [t.trial_id for t in trials(study)]
    for where in ("/data/coco", "/mnt/other"):
        monkeypatch.setenv(VAR, where)
        assert [t.trial_id for t in trials(load_study(path))] == ids  # ids do not depend on the machine


def test_require_env_names_the_file_that_set_data_root(write, monkeypatch):
    write("base/coco.yaml", {"data": COCO})
    path = write("s.yaml", {"name": "s", "_base_": "base/coco.yaml"})
    study = load_study(path)
    with pytest.raises(StudyError, match=rf"base/coco\.yaml: data\.root: .*{VAR}"):
        require_env(study)
    monkeypatch.setenv(VAR, "/anywhere")
    require_env(study)
    require_env(load_study(write("plain.yaml", {"name": "plain"})))  # no root: nothing to check


def test_build_data_reads_the_expanded_root(dataset, monkeypatch):
    monkeypatch.setenv(VAR, str(dataset))
    bundle = build_data(TrialConfig.model_validate({"data": COCO, "augment": []}), seed=0, device=torch.device("cpu"))
    assert bundle.classes == ["thing"] and bundle.num_train == bundle.num_val == 1


def test_build_data_without_the_variable_says_what_to_set():
    with pytest.raises(StudyError, match=rf"data\.root: '\${{{VAR}}}' needs the environment variable {VAR}"):
        build_data(TrialConfig.model_validate({"data": COCO}), seed=0, device=torch.device("cpu"))
