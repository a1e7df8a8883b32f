"""The COCO studies (studies/coco/) mirror the CPU studies and plan without the data."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.study import StudyError, expand, load_study
from ablate.study.expand import check
from ablate.study.loader import require_env

STUDIES = Path(__file__).resolve().parents[1] / "studies"
COCO = sorted((STUDIES / "coco").glob("*.yaml"))


def factor_paths(study) -> list[str]:
    return list(study.search.space) if study.design == "optuna" else list(study.factors)


@pytest.fixture
def coco_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ABLATE_COCO_ROOT", str(tmp_path))
    return tmp_path


def test_every_cpu_study_has_a_coco_counterpart():
    assert {p.name for p in COCO} == {p.name for p in STUDIES.glob("*.yaml")}


@pytest.mark.parametrize("path", COCO, ids=[p.stem for p in COCO])
def test_coco_study_mirrors_its_cpu_study(path, coco_root):
    study = load_study(path)
    variants = check(study)
    cpu = load_study(STUDIES / path.name)
    assert study.name == cpu.name == path.stem  # same results folder and report
    assert study.design == cpu.design
    # the CPU study asks the COCO study's question, or a slice of it that fits a CPU budget
    assert set(factor_paths(cpu)) <= set(factor_paths(study))
    assert study.data.dataset == "coco" and study.model.backbone == "resnet50"
    assert study.resources.gpu > 0
    assert study.data.root == "${ABLATE_COCO_ROOT}"
    require_env(study)  # the variable is set: training could start
    if study.design != "optuna":
        assert len(variants) > 1
    for v in variants:  # no factor level undoes the GPU set-up (the networks table varies the model and its size)
        kept = (v.config.data.dataset,) if study.name == "networks" else \
            (v.config.data.dataset, v.config.model.backbone, v.config.data.image_size)
        assert kept == ("coco", "resnet50", 800)[: len(kept)]


def test_the_networks_table_has_the_seeds_rows_in_their_zoo_configurations(coco_root):
    import json

    from ablate.results.zoo import zoo_fields
    from ablate.study.expand import config_dict

    rows = [zoo_fields(json.dumps(config_dict(v.config))) for v in check(load_study(STUDIES / "coco" / "networks.yaml"))]
    seen = {(r["Network"], r["Backbone"], r["style"], r["Lr schd"].split("_", 1)[1]) for r in rows}
    # shared/seeds/001's table (ATSS R-101/R-50 1x, FCOS caffe 1x, FCOS_mstrain caffe 2x, SSD300/512 VGG16 2x)
    assert {("ATSS", "R-101", "pytorch", "1x"), ("ATSS", "R-50", "pytorch", "1x"), ("FCOS", "R-50", "caffe", "1x"),
            ("FCOS_mstrain", "R-50", "caffe", "2x"), ("SSD300", "VGG16", "caffe", "2x"),
            ("SSD512", "VGG16", "caffe", "2x")} <= seen
    assert {r["Network"] for r in rows} >= {"RetinaNet", "Faster R-CNN", "DETR"}


def test_the_base_is_the_1x_recipe(coco_root):
    base = load_study(STUDIES / "coco" / "neck_ablation.yaml").baseline()
    t = base.train
    assert (t.epochs, t.schedule.name, t.schedule.preset, t.optimizer.name) == (12, "step", "1x", "sgd")
    assert (t.optimizer.momentum, t.optimizer.weight_decay, t.lr_scaling.base_batch_size) == (0.9, 1e-4, 16)
    assert (t.warmup.name, t.warmup.iters, t.warmup.ratio, t.amp.enabled) == ("linear", 500, 0.001, True)
    assert base.data.num_workers == 4 and base.model.pretrained is None


def test_plan_works_without_the_variable(monkeypatch):
    monkeypatch.delenv("ABLATE_COCO_ROOT", raising=False)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["plan", str(STUDIES / "coco" / "loss_ablation.yaml")])
    assert result.exit_code == 0, result.output
    assert "loss.box=ciou" in result.stdout
    assert "8 variants x 3 seeds = 24 trials" in result.stdout
    assert "paired race on mAP against the baseline's same seeds at epoch(s) 4, from 3 seeds" in result.stdout


def test_training_without_the_variable_is_refused_with_what_to_set(monkeypatch):
    monkeypatch.delenv("ABLATE_COCO_ROOT", raising=False)
    study = load_study(STUDIES / "coco" / "loss_ablation.yaml")
    assert len(expand(study)) == 8
    with pytest.raises(StudyError, match=r"r50_coco\.yaml: data\.root: .*export ABLATE_COCO_ROOT="):
        require_env(study)
