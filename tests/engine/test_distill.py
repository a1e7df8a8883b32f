"""train.distill in a real trial: a tiny teacher trained, then a student learning from its checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.engine import checkpoint
from ablate.engine.distill import teacher_weights
from ablate.engine.trial import run_trial
from ablate.errors import ConfigError
from ablate.study.config import TrialConfig


def test_a_student_distils_from_a_finished_teacher_and_its_loss_is_recorded(tiny, tmp_path):
    teacher = run_trial(tiny(train={"epochs": 1}), seed=0, out_dir=tmp_path / "teacher", log=lambda m: None)
    assert teacher.status == "completed"
    for mode in ("logits", "features"):
        student = tiny(train={"epochs": 1, "distill": {"name": mode, "teacher": "baseline"}})
        result = run_trial(student, seed=0, out_dir=tmp_path / mode, teacher=tmp_path / "teacher",
                           log=lambda m: None)
        row = result.final
        assert result.status == "completed", mode
        assert math.isfinite(row["loss_distill"]) and row["loss_distill"] > 0, (mode, row["loss_distill"])
        assert row["loss"] == pytest.approx(row["loss_cls"] + row["loss_box"] + row["loss_ctr"] + row["loss_distill"],
                                            rel=1e-4)
        assert math.isfinite(row["mAP"])
        # the student's checkpoint holds only the student: the teacher is read, never saved with it
        saved = checkpoint.load(tmp_path / mode / checkpoint.CHECKPOINT)
        assert set(saved["model"]) == set(checkpoint.load(tmp_path / "teacher" / checkpoint.CHECKPOINT)["model"])


def test_a_student_without_a_usable_teacher_stops_before_training(tiny, tmp_path):
    student = tiny(train={"epochs": 1, "distill": "logits"})
    with pytest.raises(ConfigError, match="needs its teacher's trial folder"):
        run_trial(student, seed=0, out_dir=tmp_path / "a", log=lambda m: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="must have completed"):
        run_trial(student, seed=0, out_dir=tmp_path / "b", teacher=tmp_path / "empty", log=lambda m: None)


def test_teacher_weights_are_the_last_evaluated_ones():
    raw, ema, swa = {"w": torch.zeros(1)}, {"module.w": torch.ones(1), "n_averaged": torch.tensor(3)}, \
        {"module.w": torch.full((1,), 2.0), "n_averaged": torch.tensor(1)}
    saved = {"model": raw, "ema": ema, "swa": swa}
    plain = TrialConfig()
    with_ema = TrialConfig.model_validate({"train": {"ema": {"enabled": True}}})
    with_both = TrialConfig.model_validate({"train": {"epochs": 4, "ema": {"enabled": True},
                                                      "swa": {"enabled": True, "epochs": 2}}})
    assert teacher_weights({**saved, "ema": None, "swa": None}, plain) is raw
    assert teacher_weights(saved, with_ema)["w"].item() == 1.0 and set(teacher_weights(saved, with_ema)) == {"w"}
    assert teacher_weights(saved, with_both)["w"].item() == 2.0  # SWA is what the last epoch evaluated
