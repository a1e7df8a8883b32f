"""Planted variants with known answers, through real Ray Tune trials, the race and the report's own verdicts:
a change that cannot alter the training (channels_last on CPU) is never stopped and never judged better
or worse, a box loss turned off (weight 0: nothing learns where the objects are) is stopped by the race as
worse; adaptive seeds go only to the
variant whose verdict is open; a driver killed with kill -9 between an added seed's launch and its first
epoch resumes to the same race decisions and the same trials, and a rerun adds nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.orchestrate.seeds import planned_trials
from ablate.results.aggregate import factor_paths, load_frames, variant_summary
from ablate.results.race import race_stops
from ablate.study import load_study
from ablate.study.expand import check

pytestmark = pytest.mark.slow

STUDIES = Path(__file__).parents[2] / "studies"

NO_OP = "train.channels_last=true"
BAD = "loss.box=giou(weight=0.0)"  # no box regression: mAP near 0 on every machine (lr x30 and x50 learned to 0.02-0.04 on an AVX-512 machine, too close for the race with 3 seeds)


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended before {what}:\n{proc.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_planted_variants_the_race_and_adaptive_seeds_through_a_kill_9(tmp_path, statuses):
    # the shipped studies' baseline at 96 px and 4 epochs: it learns to ~0.06 mAP, far enough above
    # the ~0.01 of a model that learned nothing for a bad variant to show.  margin 0.005: with 3 seeds
    # the no-op cannot be shown equivalent, so its verdict stays open and it is given a 4th seed
    study = {"name": "planted", "_base_": str(STUDIES / "_base_" / "tiny_shapes.yaml"), "design": "one_at_a_time",
             "data": {"image_size": 96, "shapes": {"train_images": 384, "val_images": 32, "seed": 0}},
             "train": {"epochs": 4}, "seeds": [0, 1, 2], "scheduler": {"name": "race", "grace_period": 1},
             "decision": {"margin": 0.005, "max_seeds": 4},
             "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
             "factors": {"train.channels_last": [True], "loss.box": [{"name": "giou", "weight": 0.0}]}}
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    root = tmp_path / "results"
    folder = root / "planted"

    driver = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(root)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:  # kill -9 once an added seed's trial has trained an epoch
        _wait(lambda: (folder / "seeds.json").is_file(), 900, "seeds were added", driver)
        added = json.loads((folder / "seeds.json").read_text())["added"]
        stops = race_stops(folder)
        ids = {t.trial_id for t in planned_trials(load_study(path), check(load_study(path)), folder) if t.seed == 3}
        # kill -9 between an added seed's launch and its first epoch: its folder exists, no epoch is done
        _wait(lambda: any(t in ids for t in statuses(root, "planted")), 300, "an added seed's launch", driver)
        launched = {t: s["epochs_done"] for t, s in statuses(root, "planted").items() if t in ids}
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended (and failed) on its own
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()

    assert launched and min(launched.values()) == 0, launched  # killed before an added trial's first epoch ended
    trials, _ = load_frames(folder)
    names = trials.drop_duplicates("variant").set_index("variant_name")["variant"]
    assert set(added) == {str(names["baseline"]), str(names[NO_OP])} and all(s == [3] for s in added.values()), added
    assert set(stops) == {names[BAD]}, stops  # the race stopped the bad variant, and nothing else, before the kill

    result = CliRunner().invoke(app, ["run", str(path), "--results", str(root)])
    assert result.exit_code == 0, result.output
    assert race_stops(folder) == stops  # the same decisions ...
    assert json.loads((folder / "seeds.json").read_text())["added"] == added  # ... and the same added seeds
    planned = planned_trials(load_study(path), check(load_study(path)), folder)
    trials, epochs = load_frames(folder)
    assert sorted(trials.trial_id) == sorted(t.trial_id for t in planned)  # each trial once, none more
    assert not epochs.duplicated(["trial_id", "epoch"]).any()

    by = trials.set_index("variant_name")
    assert (by.loc[["baseline", NO_OP], "status"] == "completed").all()  # never stopped
    base = by.loc["baseline"]
    assert (base.final_mAP > 0.03).all(), base.final_mAP  # the baseline really learns on every seed
    bad = by.loc[BAD]
    assert (bad.status == "pruned").any() and (bad.epochs < 4).any(), bad[["seed", "status", "epochs"]]
    assert bad[bad.status == "pruned"].reason.str.startswith("race: worse than the baseline").all()
    rows = variant_summary(trials, factors=factor_paths(trials), epochs=epochs, margin=0.005,
                           stops=race_stops(folder)).set_index("variant_name")
    assert rows.loc[NO_OP, "verdict"] in {"equivalent", "unresolved"}, rows.loc[NO_OP]
    assert rows.loc[NO_OP, "n_seeds"] == 4 and abs(rows.loc[NO_OP, "dmAP"]) < 0.01, rows.loc[NO_OP]
    assert rows.loc[BAD, "verdict"] == "worse" and rows.loc[BAD, "dmAP_hi"] < 0, rows.loc[BAD]
    md = (Path(tmp_path) / "reports" / "planted" / "table.md").read_text()
    assert "| worse |" in md

    again = CliRunner().invoke(app, ["run", str(path), "--results", str(root)])
    assert again.exit_code == 0, again.output
    assert "to run: 0" in again.output and "one more seed" not in again.output
    assert json.loads((folder / "seeds.json").read_text())["added"] == added
    assert len(load_frames(folder)[0]) == len(planned)
