"""The fault matrix of `ablate run`, each with real Ray Tune, MLflow (sqlite) and training on tiny shapes:
a full or read-only results folder, a trial that hangs, Ctrl-C.  (kill -9 of the driver and of a
trial's worker: test_run.py.)  A full disk is a real one: a small tmpfs in a mount namespace of its own."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from records import steps, trial_runs

from ablate.orchestrate.run import run_study
from ablate.orchestrate.worker_watchdog import TEST_HANG
from ablate.study import StudyError, load_study, trials
from ablate.study.expand import check

pytestmark = pytest.mark.slow


def _planned(path) -> list[str]:
    study = load_study(path, [])
    return [t.trial_id for t in trials(study, check(study))]


def _once_in_parquet_and_mlflow(tmp_path: Path, folder: Path, study: str, planned: list[str]) -> pd.DataFrame:
    """Each planned trial once in trials.parquet and once in MLflow, each epoch once, the same mAPs in both."""
    table, epochs = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")
    assert sorted(table.trial_id) == sorted(planned)
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = trial_runs(uri, study)
    assert sorted(runs) == sorted(planned), "a trial has no MLflow run"
    for tid, run in runs.items():
        rows = epochs[epochs.trial_id == tid].sort_values("epoch")
        assert steps(uri, run) == list(zip(rows.epoch, rows.mAP))
    return table.set_index("trial_id")


def _unshare_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True).returncode == 0


needs_unshare = pytest.mark.skipif(not _unshare_available(),
                                   reason="needs `unshare --mount` (root) for a tmpfs of its own as the results folder")


def _in_tmpfs(mount: Path, size: str, command: list[str], *, cwd: Path, seed: Path | None = None,
              keep: Path | None = None, read_only: bool = False) -> subprocess.CompletedProcess:
    """Run ``command`` in a mount namespace of its own where ``mount`` is a fresh tmpfs of ``size``.

    ``seed``: a folder copied into the tmpfs first; ``keep``: where the tmpfs's content is copied
    afterwards (the tmpfs goes with the namespace); ``read_only``: remounted read-only first.
    The exit status is the command's.
    """
    quoted = " ".join(f"'{c}'" for c in command)
    script = f"mount -t tmpfs -o size={size} none '{mount}'"
    if seed is not None:
        script += f" && cp -a '{seed}/.' '{mount}/'"
    if read_only:
        script += f" && mount -o remount,ro '{mount}'"
    script += f" && {{ {quoted}; rc=$?; }}"
    if keep is not None:
        script += f" && rm -rf '{keep}' && mkdir -p '{keep}' && cp -a '{mount}/.' '{keep}/'"
    script += " && exit $rc"
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


# ---------------------------------------------------------------------------------------- a full disk


@needs_unshare
def test_a_disk_that_fills_up_stops_the_study_with_the_fix_and_a_rerun_with_room_completes_it(study_file, tmp_path):
    # One trial at a time, each checkpoint ~7.5 MB (written beside the previous one, then renamed over it):
    # 20 MB holds the first trial (and its detections), the second's epoch 1, but not its epoch 2.
    path = study_file("full", factors={"loss.box": ["diou", "ciou"]})
    mount, kept = tmp_path / "mnt", tmp_path / "kept"
    mount.mkdir()
    run = [sys.executable, "-m", "ablate", "run", str(path), "--results", str(mount), "--max-concurrent", "1"]
    began = time.monotonic()
    first = _in_tmpfs(mount, "20m", run, cwd=tmp_path, keep=kept)
    took = time.monotonic() - began
    output = first.stderr + first.stdout
    print(f"full disk: exit {first.returncode} after {took:.0f} s\n{output[-3000:]}")

    assert first.returncode == 1, output
    message = " ".join(output.split())
    assert "No space left on device" in message and f"{mount}/full" in message, message
    assert "free space there" in message and "run the same command again to resume" in message, message
    assert "Traceback" not in output
    folder = kept / "full"
    table = pd.read_parquet(folder / "trials.parquet")  # whole and readable: written through a temp file
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert set(epochs.trial_id) <= set(table.trial_id)  # every epoch row belongs to a recorded trial
    assert (table.status == "completed").sum() == 1 and len(epochs) >= 3, (table[["trial_id", "status"]], epochs)
    assert not (table.status == "failed").any()  # nothing blamed on a trial: a rerun resumes them all
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]  # no partial file left behind

    again = _in_tmpfs(mount, "200m", run, cwd=tmp_path, seed=kept, keep=kept)  # the same folder, with room
    assert again.returncode == 0, again.stderr[-3000:]
    table = _once_in_parquet_and_mlflow(tmp_path, folder, "full", _planned(path))
    assert (table.status == "completed").all() and (table.epochs == 2).all()
    starts = [json.loads((folder / "trials" / t / "status.json").read_text())["starts"] for t in table.index]
    resumed = [s[-1]["epoch"] for s in starts if len(s) > 1]
    assert resumed == [2], starts  # the trial stopped mid-study resumed from its epoch 1 checkpoint; the others ran once


@needs_unshare
def test_a_read_only_results_folder_is_refused_before_anything_starts(study_file, tmp_path):
    path = study_file("readonly", tracking={"uri": f"sqlite:///{tmp_path / 'fresh.db'}"})  # no store yet
    mount = tmp_path / "mnt"
    mount.mkdir()
    result = _in_tmpfs(mount, "10m", [sys.executable, "-m", "ablate", "run", str(path), "--results", str(mount)],
                       cwd=tmp_path, read_only=True)
    message = " ".join(result.stderr.split())
    assert result.returncode == 1, message
    assert f"the results folder {mount}/readonly cannot be written (Read-only file system)" in message, message
    assert "pass --results a folder that can be written" in message and "Traceback" not in result.stderr
    assert "resources per trial" not in message  # no Ray, no trial
    assert not (tmp_path / "fresh.db").exists()


@needs_unshare
def test_a_parquet_write_on_a_full_disk_keeps_the_previous_file_whole_and_leaves_no_temp_file(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = textwrap.dedent(f"""
        import json, os, pandas as pd
        from ablate.errors import StorageError
        from ablate.results.store import ResultsStore
        store = ResultsStore("{mount}/s")
        store.upsert_trial("a", status="running")
        store.add_epoch("a", {{"epoch": 1, "mAP": 0.5}})
        store.flush()
        before = pd.read_parquet("{mount}/s/trials.parquet")
        for i in range(20000):  # far more than the tmpfs holds
            store.upsert_trial(f"t{{i}}", status="running", config=os.urandom(64).hex())
        try:
            store.flush()
            raised = None
        except StorageError as e:
            raised = str(e)
        after = pd.read_parquet("{mount}/s/trials.parquet")
        print(json.dumps({{"raised": raised, "same": after.equals(before), "files": sorted(os.listdir("{mount}/s"))}}))
    """)
    result = _in_tmpfs(mount, "256k", [sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["raised"] and "No space left on device" in out["raised"] and "trials.parquet" in out["raised"], out
    assert out["same"], "the previous trials.parquet changed"
    assert out["files"] == ["epochs.parquet", "trials.parquet"], out  # no .trials.parquet.<pid>.tmp


# ---------------------------------------------------------------------------------------- a hang


def test_hang_timeout_must_be_positive(study_file):
    with pytest.raises(StudyError, match="hang_timeout_s"):
        load_study(study_file("badhang"), ["hang_timeout_s=0"])


def test_a_trial_that_hangs_is_stopped_and_recorded_and_the_others_complete(study_file, statuses, tmp_path,
                                                                           monkeypatch):
    timeout = 20  # above a small trial's first epoch on a busy 2-core machine (a few s), with its worker's start
    path = study_file("hang", factors={"loss.box": ["diou"]}, hang_timeout_s=timeout)
    baseline, hung = _planned(path)
    monkeypatch.setenv(TEST_HANG, f"{hung}@2")  # the trial sleeps forever in epoch 2; Ray's workers inherit it
    root = tmp_path / "results"
    began = time.monotonic()
    outcome = run_study(path, [], results_root=root)
    took = time.monotonic() - began
    print(f"hang study: {took:.0f} s")

    assert took < 300  # the hang itself never ends
    assert outcome.counts == {"completed": 1, "pruned": 0, "failed": 1}, outcome.counts
    table = _once_in_parquet_and_mlflow(tmp_path, root / "hang", "hang", [baseline, hung])
    reason = f"hung: no epoch reported within {timeout} s (epoch 2)"
    assert table.loc[hung, "status"] == "failed" and table.loc[hung, "reason"] == reason, table.loc[hung]
    assert table.loc[hung, "epochs"] == 1  # epoch 1 is kept
    assert table.loc[baseline, "status"] == "completed" and table.loc[baseline, "epochs"] == 2
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(table.loc[hung, "mlflow_run_id"])
    assert run.data.tags["status"] == f"failed: {reason}" and run.info.status == "FAILED"
    status = statuses(root, "hang")[hung]
    assert status["status"] == "failed" and status["reason"] == reason
    hung_pid = status["pid"]
    assert not Path(f"/proc/{hung_pid}").exists() or "ray::" not in Path(f"/proc/{hung_pid}/cmdline").read_text()

    again = run_study(path, [], results_root=root)  # a hang is an ending, as any recorded failure
    assert again.ran == 0 and again.counts == outcome.counts


# ---------------------------------------------------------------------------------------- Ctrl-C


def _until_an_epoch(statuses, root: Path, study: str, driver: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not any(s["epochs_done"] >= 1 for s in statuses(root, study).values()):
        assert time.monotonic() < deadline and driver.poll() is None, "no trial finished an epoch"
        time.sleep(0.2)


def _no_process_left(tag: str) -> None:
    deadline = time.monotonic() + 20  # Ray's workers and daemons go with the driver
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _tagged(tag), _tagged(tag)


def _tagged(tag: str) -> list[str]:
    """Processes whose environment holds ``tag`` (the driver's and everything it started): 'pid cmdline'."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if tag.encode() in (proc / "environ").read_bytes():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name} {command[:120]}")
        except OSError:  # gone, or not ours to read
            pass
    return found


def test_ctrl_c_stops_the_study_within_seconds_and_a_rerun_resumes_it(study_file, statuses, tiny_raw, tmp_path):
    # TINY's set: epochs long enough that a trial is still mid-study when Ctrl-C lands after an epoch
    path = study_file("ctrlc", train={"epochs": 3}, factors={"loss.box": ["diou", "ciou", "eiou"]},
                      data=tiny_raw["data"])
    root = tmp_path / "results"
    tag = f"ABLATE_TEST_RUN={uuid.uuid4().hex}"
    driver = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(root)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, env={**os.environ, tag.split("=")[0]: tag.split("=")[1]})
    try:
        _until_an_epoch(statuses, root, "ctrlc", driver)
        assert any(" ray::" in p for p in _tagged(tag)), _tagged(tag)  # the check below sees Ray's workers
        os.killpg(driver.pid, signal.SIGINT)  # as a terminal does: the whole foreground process group
        began = time.monotonic()
        output, _ = driver.communicate(timeout=120)
        took = time.monotonic() - began
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    print(f"Ctrl-C: exit {driver.returncode} after {took:.1f} s\n{output[-2000:]}")
    assert took < 30, f"Ctrl-C took {took:.0f} s"
    assert driver.returncode != 0
    assert "run the same command again to resume" in output and "Traceback" not in output
    _no_process_left(tag)

    at_stop = statuses(root, "ctrlc")
    table = pd.read_parquet(root / "ctrlc" / "trials.parquet")
    assert not table.status.isin(["failed", "pruned"]).any(), table[["trial_id", "status", "reason"]]
    unfinished = {t: s["epochs_done"] for t, s in at_stop.items() if s["status"] != "completed"}
    assert any(unfinished.values()), f"no trial stopped after an epoch; the test proves nothing: {at_stop}"

    outcome = run_study(path, [], results_root=root)
    assert not outcome.interrupted and outcome.counts["completed"] == 4
    _once_in_parquet_and_mlflow(tmp_path, root / "ctrlc", "ctrlc", _planned(path))
    after = statuses(root, "ctrlc")
    for tid, done in unfinished.items():
        if done:  # resumed from its last checkpoint, not started again
            assert after[tid]["starts"][-1]["epoch"] == done + 1, after[tid]["starts"]


def test_sigterm_from_timeout_stops_the_study_gracefully_and_a_rerun_resumes_it(study_file, statuses, tmp_path):
    # as Slurm and `timeout` preempt: SIGTERM to the driver and every process of its group (Ray's too).
    # `timeout` passes on a SIGTERM it is sent as it sends its own at the deadline; sending it once a
    # trial has finished an epoch makes the test independent of the machine's speed
    path = study_file("term", train={"epochs": 3}, factors={"loss.box": ["diou", "ciou", "eiou", "l1", "iou"]})
    root = tmp_path / "results"
    tag = f"ABLATE_TEST_RUN={uuid.uuid4().hex}"
    driver = subprocess.Popen(["timeout", "-s", "TERM", "--preserve-status", "900",
                               sys.executable, "-m", "ablate", "run", str(path), "--results", str(root)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, env={**os.environ, tag.split("=")[0]: tag.split("=")[1]})
    try:
        _until_an_epoch(statuses, root, "term", driver)
        driver.send_signal(signal.SIGTERM)  # to `timeout`, which sends it on to the study's process group
        began = time.monotonic()
        output, _ = driver.communicate(timeout=120)
        took = time.monotonic() - began
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    print(f"SIGTERM: exit {driver.returncode}, {took:.1f} s after it\n{output[-3000:]}")
    assert driver.returncode == 143, output[-3000:]  # 128 + SIGTERM: interrupted, resumable
    assert took < 30, f"the stop took {took:.0f} s (Kubernetes kills at 30 s)"
    assert "terminated (SIGTERM)" in output and "run the same command again to resume" in output
    assert "SIGTERM received" not in output and "Traceback" not in output  # no Ray stack dump, no crash
    _no_process_left(tag)

    at_stop = statuses(root, "term")
    table = pd.read_parquet(root / "term" / "trials.parquet")
    assert not table.status.isin(["failed", "pruned"]).any(), table[["trial_id", "status", "reason"]]
    assert (table.status == "completed").sum() < 6, "every trial finished before SIGTERM; the test proves nothing"
    outcome = run_study(path, [], results_root=root)
    assert not outcome.interrupted and outcome.counts["completed"] == 6
    _once_in_parquet_and_mlflow(tmp_path, root / "term", "term", _planned(path))
    after = statuses(root, "term")
    for tid, s in at_stop.items():
        if s["status"] != "completed" and s["epochs_done"]:  # resumed from its last checkpoint
            assert after[tid]["starts"][-1]["epoch"] == s["epochs_done"] + 1, after[tid]["starts"]

    # SIGTERM while the finished study's report is written (a rerun: nothing to run, straight to the
    # ending and the report): the file in progress is finished, no half page or temp file is left, the
    # records are as they were, and the next `ablate report` writes the same tables
    before = pd.read_parquet(root / "term" / "trials.parquet")
    shutil.rmtree(tmp_path / "reports", ignore_errors=True)
    driver = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(root)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    try:
        while not re.search(r"to\s+run:\s+0", seen):
            line = driver.stdout.readline()
            assert line, f"the rerun ended before it said what it would run:\n{seen}"
            seen += line
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = seen + output
    print(f"SIGTERM at the ending: exit {driver.returncode}\n{output[-2000:]}")
    assert driver.returncode == 143 and "terminated (SIGTERM): after the study's trials had ended" in output, output
    assert "Traceback" not in output
    written = sorted(p.name for p in (tmp_path / "reports").rglob("*") if p.is_file())
    assert not [n for n in written if ".tmp" in n or n.startswith(".")], written
    pd.testing.assert_frame_equal(pd.read_parquet(root / "term" / "trials.parquet"), before)
    _once_in_parquet_and_mlflow(tmp_path, root / "term", "term", _planned(path))
    md = tmp_path / "reports" / "term" / "table.md"
    was = md.read_text() if md.exists() else None
    if was is not None:
        assert (tmp_path / "reports" / "term" / "index.html").read_text().rstrip().endswith("</html>")
    report = subprocess.run([sys.executable, "-m", "ablate", "report", str(path), "--results", str(root)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert was is None or md.read_text() == was
