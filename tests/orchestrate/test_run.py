"""`ablate run` end to end: real Ray Tune, real MLflow (sqlite), real training on tiny shapes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from records import steps, trial_runs
from typer.testing import CliRunner

from ablate.cli import app
from ablate.orchestrate.lock import StudyLocked
from ablate.orchestrate.run import run_study
from ablate.study import load_study, trials
from ablate.study.expand import check

pytestmark = pytest.mark.slow


def _planned(path) -> list[str]:
    study = load_study(path, [])
    return [t.trial_id for t in trials(study, check(study))]


def _tables(root: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(root / name / "trials.parquet"), pd.read_parquet(root / name / "epochs.parquet")


def _mlflow(tmp_path: Path, study: str) -> dict[str, dict]:
    """trial id -> {"run": Run, "mAP": [(step, value), ...]} of the study's child runs (deleted ones excluded)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return {tid: {"run": run, "mAP": steps(uri, run)} for tid, run in trial_runs(uri, study).items()}


def _assert_once_and_equal(tmp_path: Path, root: Path, study: str, planned: list[str]) -> pd.DataFrame:
    """Each planned trial once in Parquet and once in MLflow, each epoch once, the same numbers in both."""
    table, epochs = _tables(root, study)
    assert sorted(table.trial_id) == sorted(planned)
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    runs = _mlflow(tmp_path, study)
    assert sorted(runs) == sorted(planned)
    for tid, info in runs.items():
        rows = epochs[epochs.trial_id == tid].sort_values("epoch")
        assert info["mAP"] == list(zip(rows.epoch, rows.mAP)), tid  # same steps, same values, once each
        assert info["run"].info.run_id == table.set_index("trial_id").loc[tid, "mlflow_run_id"]
    return table


def test_asha_prunes_a_bad_variant_never_the_baseline_and_a_non_finite_trial_fails_alone(study_file, tiny_raw,
                                                                                          tmp_path):
    path = study_file(
        "asha", train={"epochs": 3}, seeds=[0, 1], data=tiny_raw["data"],  # a set the baseline learns from
        factors={"train.optimizer.lr": [0.8],  # 50x: clearly worse by epoch 2
                 "loss.box": [{"name": "giou", "weight": 1.0e39}]},  # inf at the first iteration
        scheduler={"name": "asha", "grace_period": 2, "reduction_factor": 2})
    # as a user runs it: the command line, which also writes the report at the end
    result = CliRunner().invoke(app, ["run", str(path), "--results", str(tmp_path / "results"), "--max-concurrent", "2"])
    assert result.exit_code == 0, result.output
    assert f"report: {Path('reports') / 'asha' / 'index.html'}" in result.output
    table = _assert_once_and_equal(tmp_path, tmp_path / "results", "asha", _planned(path)).set_index("variant_name")
    baseline = table.loc["baseline"]
    assert (baseline.status == "completed").all() and (baseline.epochs == 3).all()
    bad = table.loc["train.optimizer.lr=0.8"]
    assert (bad.status == "pruned").all() and (bad.epochs == 2).all(), bad[["status", "final_mAP"]]
    assert (bad.status_label == "pruned@epoch 2").all()
    failed = table.loc["loss.box=giou(weight=1e+39)"]
    assert (failed.status == "failed").all()
    assert failed.reason.str.match(r"non-finite loss\w* \(inf\) at epoch 1, iteration 0").all(), failed.reason
    runs = _mlflow(tmp_path, "asha")
    statuses = {info["run"].data.tags["status"] for info in runs.values()}
    assert statuses == {"completed", "pruned@epoch 2", failed.status_label.iloc[0]}

    # the report written at the end: every variant in the zoo table, and the same table from MLflow alone
    md = (tmp_path / "reports" / "asha" / "table.md").read_text().splitlines()
    assert md[0] == ("| Network | Dataset | Backbone | style | Lr schd | Mem | mAP | AP50 | APs | APm | APl "
                     "| train.optimizer.lr | loss.box | ΔmAP | verdict | img/s | epochs | status |")
    assert md[2].startswith("| FCOS | shapes | tiny-w1.0 | pytorch | 0.004_cosine_3e |")
    assert len(md) == 5 and "pruned@2" in md[3] + md[4] and "failed: non-finite" in md[3] + md[4]
    assert "stopped@2" in md[3] + md[4] and "@2 |" in md[3] + md[4]  # the pruned variant at its stop epoch
    page = (tmp_path / "reports" / "asha" / "index.html").read_text()
    assert "early stopping check: epoch 2:" in page
    assert "no verdict could be tested" in page  # the bad variant was stopped, the other failed: nothing to test
    data = json.loads((tmp_path / "results" / "asha" / "data.json").read_text())  # the baseline's data, as `ablate data`
    assert data["dataset"] == "shapes" and data["splits"]["train"]["images"] == 96
    assert "<h2>Data: shapes, sizes after the resize to 128 px</h2>" in page
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(app, ["report", "asha", "--from-mlflow", "--out", str(tmp_path / "m"),
                                      "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "table.md").read_text().splitlines() == md
    assert "<h2>Data: shapes, sizes after the resize to 128 px</h2>" in (tmp_path / "m" / "index.html").read_text()
    client = MlflowClient(uri)
    parent = client.search_runs([client.get_experiment_by_name("asha").experiment_id],
                                "tags.`ablate.role` = 'study'")[0]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {"report/index.html",
                                                                                      "report/table.md"}
    logged = client.download_artifacts(parent.info.run_id, "data.json", str(tmp_path))
    assert json.loads(Path(logged).read_text()) == data  # the same summary on the MLflow parent run
    # study -> variant -> seed; the variant runs carry the aggregate MLflow cannot compute from the seeds
    experiment = client.get_experiment_by_name("asha")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    variants = {r.data.tags["ablate.variant"]: r for r in client.search_runs(
        [experiment.experiment_id], "tags.`ablate.role` = 'variant'")}
    assert set(variants) == set(table.index) and all(
        v.data.tags["mlflow.parentRunId"] == parent.info.run_id and v.info.status == "FINISHED" for v in variants.values())
    for info in runs.values():
        name = info["run"].data.tags["variant_name"]
        assert info["run"].data.tags["mlflow.parentRunId"] == variants[name].info.run_id
    assert variants["baseline"].data.tags["verdict"] == "baseline"
    assert variants["baseline"].data.metrics["mean_mAP"] == pytest.approx(baseline.final_mAP.mean(), abs=1e-12)
    assert variants["baseline"].data.metrics["n_seeds"] == 2
    assert variants["train.optimizer.lr=0.8"].data.tags["verdict"] == "stopped@2"
    assert variants["train.optimizer.lr=0.8"].data.tags["at_epoch"] == "2"


def test_four_concurrent_trials_resume_add_a_level_and_restart(study_file, tmp_path):
    factors = {"loss.box": ["diou", "ciou", "eiou"]}
    path = study_file("conc", factors=factors, resources={"cpu": 0.5})  # 2 cores: 4 trials at once
    root = tmp_path / "results"
    outcome = run_study(path, [], results_root=root)
    assert outcome.ran == 4 and outcome.counts["completed"] == 4
    table = _assert_once_and_equal(tmp_path, root, "conc", _planned(path))
    starts = [json.loads((root / "conc" / "trials" / t / "status.json").read_text())["starts"] for t in table.trial_id]
    assert len({s[0]["pid"] for s in starts}) == 4  # four worker processes

    again = run_study(path, [], results_root=root)  # nothing left: no Ray, no new rows or runs
    assert again.ran == 0
    _assert_once_and_equal(tmp_path, root, "conc", _planned(path))

    path = study_file("conc", factors={"loss.box": ["diou", "ciou", "eiou", "iou"]}, resources={"cpu": 0.5})
    added = run_study(path, [], results_root=root)
    assert added.ran == 1 and added.counts["completed"] == 5
    _assert_once_and_equal(tmp_path, root, "conc", _planned(path))

    restarted = run_study(path, ["train.epochs=1"], results_root=root, restart=True)
    assert restarted.ran == 5
    one_epoch = load_study(path, ["train.epochs=1"])
    _assert_once_and_equal(tmp_path, root, "conc", [t.trial_id for t in trials(one_epoch, check(one_epoch))])


def _ablate(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver ended before {what}:\n{proc.stdout.read()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")



def test_kill_9_of_the_driver_then_rerun_runs_each_trial_once_and_a_second_driver_is_refused(study_file, statuses,
                                                                                            tmp_path):
    path = study_file("killed", train={"epochs": 3}, factors={"loss.box": ["diou", "ciou", "eiou"]})
    root = tmp_path / "results"
    driver = _ablate("run", str(path), "--results", str(root), cwd=tmp_path)
    try:
        _wait(lambda: any(s["epochs_done"] >= 1 for s in statuses(root, "killed").values()),
              180, "a trial's first epoch", driver)
        with pytest.raises(StudyLocked, match="already running"):
            run_study(path, [], results_root=root)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
        driver.wait()
    unfinished = [t for t, s in statuses(root, "killed").items() if s["status"] != "completed"]
    assert unfinished, "every trial finished before the kill; the test proves nothing"

    outcome = run_study(path, [], results_root=root)
    assert not outcome.interrupted and outcome.counts["completed"] == 4
    _assert_once_and_equal(tmp_path, root, "killed", _planned(path))
    resumed = [s for t, s in statuses(root, "killed").items() if t in unfinished and s["starts"][-1]["epoch"] > 1]
    assert resumed, "no unfinished trial resumed from its checkpoint"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_worker_killed_mid_epoch_is_retried_from_its_checkpoint_and_ends_as_if_never_killed(study_file, statuses,
                                                                                               tiny_raw, tmp_path):
    import torch

    from ablate.engine.trial import run_trial
    from ablate.metrics import COCO_METRICS, LOSS_METRICS

    path = study_file("crash", train={"epochs": 4}, data=tiny_raw["data"])  # epochs long enough to kill in
    root = tmp_path / "results"
    driver = _ablate("run", str(path), "--results", str(root), cwd=tmp_path)
    try:
        first = _wait(lambda: next((s for s in statuses(root, "crash").values() if s["epochs_done"] == 1), None),
                      180, "the first epoch", driver)
        pid = first["pid"]  # the Ray worker running the trial, now past epoch 1's checkpoint
        into = _cpu_seconds(pid) + 0.5  # half a CPU second into epoch 2 (an epoch takes a few): mid-epoch
        _wait(lambda: _cpu_seconds(pid) >= into, 60, "epoch 2 under way", driver)
        assert next(iter(statuses(root, "crash").values()))["epochs_done"] == 1, "epoch 2 ended before the kill"
        os.kill(pid, signal.SIGKILL)
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, output
    (status,) = statuses(root, "crash").values()
    assert status["status"] == "completed" and status["epochs_done"] == 4
    assert [s["epoch"] for s in status["starts"]] == [1, 2], status["starts"]  # resumed from epoch 1, not restarted
    assert "retries it from its last checkpoint" in output
    _assert_once_and_equal(tmp_path, root, "crash", _planned(path))

    # the same trial never killed, in this process with the worker's thread count (resources.cpu 1): on CPU a
    # resume is exact, so every epoch's numbers are equal, timings aside
    study = load_study(path, [])
    (trial,) = trials(study, check(study))
    threads = torch.get_num_threads()
    try:
        clean = run_trial(trial.variant.config, seed=trial.seed, out_dir=tmp_path / "clean", threads=1,
                          device="cpu", log=lambda _: None)
    finally:
        torch.set_num_threads(threads)

    def learned(rows: list[dict]) -> list[dict]:  # NaN (an AP with no object of that size) as None, to compare
        keys = ("epoch", "lr", *COCO_METRICS, *LOSS_METRICS)
        return [{k: None if row.get(k) != row.get(k) else row.get(k) for k in keys} for row in rows]

    assert learned(status["history"]) == learned(clean.history)
    _, epochs = _tables(root, "crash")
    assert learned(epochs.sort_values("epoch").to_dict("records")) == learned(clean.history)


def test_optuna_samples_distinct_configurations_reproducibly(study_file, tmp_path):
    from ablate.orchestrate.search import searcher

    space = {"train.optimizer.lr": {"type": "float", "low": 0.004, "high": 0.03, "log": True},
             "loss.box": {"type": "categorical", "choices": ["giou", "diou", {"name": "eiou", "weight": 2.0}]}}
    path = study_file("tpe", design="optuna", train={"epochs": 1}, seeds=[0],
                      search={"num_samples": 4, "seed": 7, "space": space})
    outcome = run_study(path, [], results_root=tmp_path / "results", max_concurrent=2)
    assert outcome.counts["completed"] == 5  # the baseline, then 4 samples
    table, _ = _tables(tmp_path / "results", "tpe")
    samples = [json.loads(s) for s in table.sort_values("variant")["sample"].dropna()]
    assert len(samples) == 4 and len({json.dumps(s, sort_keys=True) for s in samples}) == 4

    # the same seed samples the same points (TPE's first points are its seeded random start-up)
    study = load_study(path, [])
    fresh = searcher(study, metric="mAP", mode="max", points=[], done=[])
    again = [fresh.suggest(f"t{i}") for i in range(4)]
    assert sorted(json.dumps(s, sort_keys=True) for s in again) == sorted(json.dumps(s, sort_keys=True) for s in samples)
    assert set(table.trial_id) == set(_mlflow(tmp_path, "tpe"))


def test_dry_run_starts_nothing(study_file, tmp_path):
    path = study_file("dry", factors={"loss.box": ["diou"]}, tracking={"uri": f"sqlite:///{tmp_path / 'fresh.db'}"})
    outcome = run_study(path, [], results_root=tmp_path / "results", dry_run=True)
    assert outcome.counts == {"would_run": 2}
    assert not (tmp_path / "results" / "dry").exists() and not (tmp_path / "fresh.db").exists()
