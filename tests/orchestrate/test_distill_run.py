"""`ablate run` of a study whose variant distils from its baseline: the teacher first, then the student."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ablate.orchestrate.run import run_study

pytestmark = pytest.mark.slow


def test_the_student_starts_after_its_teacher_completed_and_records_loss_distill(study_file, tmp_path):
    path = study_file("kd", factors={"train.distill": [{"name": "logits", "teacher": "baseline"}]},
                      train={"epochs": 1})
    root = tmp_path / "results"
    outcome = run_study(path, [], results_root=root, max_concurrent=2)
    assert outcome.counts["completed"] == 2 and not outcome.interrupted
    table = pd.read_parquet(root / "kd" / "trials.parquet").set_index("variant")
    teacher, student = table.loc[0], table.loc[1]
    assert student.started_at >= teacher.ended_at  # two slots free, yet the student waited for its teacher
    epochs = pd.read_parquet(root / "kd" / "epochs.parquet").set_index("trial_id")
    distilled = epochs.loc[student.trial_id, "loss_distill"]
    assert math.isfinite(distilled) and distilled > 0
    assert pd.isna(epochs.loc[teacher.trial_id, "loss_distill"])
    # run again: everything ended, nothing runs, nothing is lost
    again = run_study(path, [], results_root=root)
    assert again.ran == 0 and again.counts["completed"] == 2
