"""The command line, driven through typer's CliRunner (and once as `python -m ablate`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ablate.cli import app
from ablate.tricks import CATALOGUE

STUDIES = Path(__file__).resolve().parents[1] / "studies"

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_plan_prints_variants_and_counts():
    result = run("plan", STUDIES / "loss_ablation.yaml")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "baseline ◀" in out
    assert "loss.box=l1" in out
    assert "2 variants x 3 seeds = 6 trials" in out
    assert "at most 48 epochs; no early stopping" in out


def test_plan_json_lists_every_trial_with_its_config():
    result = run("plan", STUDIES / "loss_ablation.yaml", "--json", "-o", "seeds=[0, 1]")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2 * 2
    assert set(rows[0]) == {"trial_id", "variant", "variant_name", "seed", "overrides", "config"}
    assert rows[0]["variant"] == 0 and rows[0]["overrides"] == {}
    l1 = [r for r in rows if r["variant_name"] == "loss.box=l1"]
    assert [r["seed"] for r in l1] == [0, 1]
    assert l1[0]["overrides"] == {"loss.box": "l1"} and l1[0]["config"]["loss"]["box"]["name"] == "l1"
    assert l1[0]["config"]["train"]["lr_effective"] == pytest.approx(0.016 * 4 / 16)
    assert len({r["trial_id"] for r in rows}) == len(rows)


def test_plan_json_ids_match_a_second_run_and_change_with_overrides():
    first = json.loads(run("plan", STUDIES / "neck_ablation.yaml", "--json").stdout)
    second = json.loads(run("plan", STUDIES / "neck_ablation.yaml", "--json").stdout)
    changed = json.loads(run("plan", STUDIES / "neck_ablation.yaml", "--json", "-o", "train.epochs=6").stdout)
    assert [r["trial_id"] for r in first] == [r["trial_id"] for r in second]
    assert not {r["trial_id"] for r in first} & {r["trial_id"] for r in changed}


def test_show_config_prints_the_resolved_variant_with_lr_effective():
    result = run("show-config", STUDIES / "loss_ablation.yaml", "--variant", "1", "-o", "train.batch_size=4")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# variant 1: loss.box=l1")
    doc = yaml.safe_load(result.stdout)
    assert doc["loss"]["box"] == {"name": "l1", "weight": 1.0}
    assert doc["train"]["lr_effective"] == pytest.approx(0.016 * 4 / 16)
    assert doc["train"]["batch_size"] == 4
    assert doc["scheduler"]["name"] == "none"
    assert "# derived" in result.stdout


def test_show_config_rejects_an_unknown_variant():
    result = run("show-config", STUDIES / "loss_ablation.yaml", "--variant", "99")
    assert result.exit_code == 2
    assert "--variant: 99 is out of range" in result.stderr and "0..1" in result.stderr


def test_a_typo_fails_with_the_key_a_suggestion_and_no_traceback(write):
    path = write("typo.yaml", {"name": "t", "train": {"optimzer": {"lr": 0.1}}})
    result = run("plan", path)
    assert result.exit_code == 2
    assert "typo.yaml: train.optimzer: unknown key 'optimzer' (did you mean 'optimizer'?)" in result.stderr
    assert "nothing was started" in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(write):
    path = write("typo.yaml", {"name": "t", "loss": {"box": "gio"}})
    result = run("plan", path, "--debug")
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception) and "giou" in str(result.exception)


def test_catalogue_lists_every_trick_with_params_and_doc():
    result = run("catalogue")
    assert result.exit_code == 0, result.output
    for kind in CATALOGUE.values():
        for name, trick in kind.table.items():
            assert name in result.stdout
            assert trick.doc[:30] in result.stdout
    assert "gamma=2.0" in result.stdout


def test_catalogue_one_kind_and_an_unknown_kind():
    result = run("catalogue", "box_loss")
    assert result.exit_code == 0 and "focal_eiou" in result.stdout and "mosaic" not in result.stdout
    bad = run("catalogue", "box_los")
    assert bad.exit_code == 2 and "did you mean 'box_loss'" in bad.stderr


def test_python_dash_m_runs_the_same_app():
    result = subprocess.run([sys.executable, "-m", "ablate", "plan", str(STUDIES / "neck_ablation.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "4 variants x 2 seeds = 8 trials" in result.stdout


def test_report_from_an_unreachable_tracking_server_fails_in_seconds_with_the_fix(tmp_path):
    # MLflow's own client retries a refused connection for about 4 minutes; the report bounds that.
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    done = subprocess.run([sys.executable, "-m", "ablate", "report", "some_study", "--from-mlflow",
                           "--tracking-uri", f"http://127.0.0.1:{port}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    message = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stderr
    assert f"cannot reach the MLflow tracking store http://127.0.0.1:{port} ([Errno 111] Connection refused)" in message
    assert "drop --from-mlflow" in message and "Traceback" not in done.stderr


def test_run_with_imagenet_weights_absent_is_refused_before_ray_starts(write, tmp_path, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(1))
    path = write("w.yaml", {"name": "w", "model": {"backbone": "resnet18", "pretrained": "imagenet"}})
    result = runner.invoke(app, ["run", str(path), "--results", str(tmp_path / "results")])
    assert result.exit_code == 2, result.output
    assert "resnet18-f37072fd.pth is not in" in result.output and "Traceback" not in result.output
    assert not started and not (tmp_path / "results").exists()


def test_data_summarises_a_study_s_dataset_and_warns_of_an_empty_size_class(write, tmp_path):
    path = write("d.yaml", {"name": "d", "data": {"image_size": 64, "shapes": {"train_images": 12, "val_images": 4}}})
    result = runner.invoke(app, ["data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    train, val = summary["splits"]["train"], summary["splits"]["val"]
    assert (train["images"], val["images"]) == (12, 4) and summary["dataset"] == "shapes"
    assert sum(train["boxes_per_class"].values()) == train["boxes"] == sum(train["sizes_after_resize"].values())
    assert val["sizes_scored"]["large"] == 0 and "val has no large objects, so APl will read -1" in summary["warnings"]
    text = runner.invoke(app, ["data", str(path)])
    assert text.exit_code == 0 and "boxes per image" in text.output and "APl will read -1" in text.output
    missing = runner.invoke(app, ["data", str(tmp_path / "nothere.yaml")])
    assert missing.exit_code == 2 and "not found; give a study file" in missing.output
