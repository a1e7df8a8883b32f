"""Every shipped study plans cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.study import expand, load_study, trials

STUDIES = Path(__file__).resolve().parents[1] / "studies"

SHIPPED = sorted(p for p in STUDIES.glob("*.yaml"))


def test_the_issue_s_studies_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"loss_ablation", "schedule_ablation", "lr_scaling", "augmentation_ablation", "neck_ablation",
            "bag_of_freebies", "optuna_lr_search"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_study_plans(path):
    study = load_study(path)
    assert study.name == path.stem
    variants = expand(study)
    assert variants[0].is_baseline
    assert len(trials(study, variants)) == len(variants) * len(study.seeds)
    if study.design != "optuna":
        assert len(variants) > 1, "a shipped ablation varies something"
