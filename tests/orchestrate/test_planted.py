"""Planted variants with known answers, through real Ray Tune trials and the report's own verdicts:
a change that cannot alter the training (channels_last on CPU) is never judged better or worse, a
learning rate 30x too high is judged worse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.results.aggregate import factor_paths, load_frames, variant_summary

pytestmark = pytest.mark.slow

STUDIES = Path(__file__).parents[2] / "studies"

NO_OP = "train.channels_last=true"
BAD = "train.optimizer.lr=0.48"  # 30x the baseline's 0.016


def test_a_planted_no_op_is_never_better_or_worse_and_a_planted_bad_lr_is_worse(tmp_path):
    # the shipped studies' baseline at 96 px and 4 epochs: it learns to ~0.06 mAP, far enough above
    # the ~0.01 of a model that learned nothing for a bad variant to show
    study = {"name": "planted", "_base_": str(STUDIES / "_base_" / "tiny_shapes.yaml"), "design": "one_at_a_time",
             "data": {"image_size": 96, "shapes": {"train_images": 384, "val_images": 32, "seed": 0}},
             "train": {"epochs": 4}, "seeds": [0, 1, 2], "scheduler": {"name": "none"},
             "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
             "factors": {"train.channels_last": [True], "train.optimizer.lr": [0.48]}}
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    result = CliRunner().invoke(app, ["run", str(path), "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output

    trials, epochs = load_frames(tmp_path / "results" / "planted")
    assert (trials.status == "completed").all(), trials[["variant_name", "status", "reason"]]
    base = trials[trials.variant_name == "baseline"].final_mAP
    assert (base > 0.03).all(), base  # the baseline really learns on every seed, or nothing is tested
    rows = variant_summary(trials, factors=factor_paths(trials), epochs=epochs).set_index("variant_name")
    assert rows.loc[NO_OP, "verdict"] in {"equivalent", "unresolved"}, rows.loc[NO_OP]
    assert abs(rows.loc[NO_OP, "dmAP"]) < 0.01, rows.loc[NO_OP]
    assert rows.loc[BAD, "verdict"] == "worse", rows.loc[BAD]
    assert rows.loc[BAD, "dmAP_hi"] < 0, rows.loc[BAD]
    # the page and the table say the same as the statistics
    md = (Path("reports") / "planted" / "table.md").read_text()
    assert "| worse |" in md and "Holm" in (Path("reports") / "planted" / "index.html").read_text()
