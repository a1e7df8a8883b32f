"""The watch on workers Ray cannot start, driven by hand: statuses, a clock, Ray's log lines (no Ray)."""

from __future__ import annotations

import pytest

from ablate.orchestrate.start_watch import StartWatch, WorkerStartError, cause

RAYLET_ERR = """\
bash: line 1: /tmp/ray/session_x/runtime_resources/working_dir_files/_ray_pkg_1/.tools/bin/uv: No such file or directory
[2026-12-02 09:04:57,092 E 2196 2196] (raylet) worker_pool.cc:660: Some workers of the worker process(19191) have not registered within the timeout. The process is dead, probably it crashed during start.
bash: line 1: /tmp/ray/session_x/runtime_resources/working_dir_files/_ray_pkg_1/.tools/bin/uv: No such file or directory
"""


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(clock, logs=None, **kw) -> StartWatch:
    return StartWatch(60, logs=lambda: logs, clock=clock, **kw)


def test_pending_trials_with_no_worker_for_the_timeout_stop_the_study_with_rays_own_line(tmp_path):
    (tmp_path / "raylet.err").write_text(RAYLET_ERR)
    clock = Clock()
    watch = _watch(clock, tmp_path)
    clock.now = 59.9
    watch.check(["PENDING", "PENDING"])  # not yet
    clock.now = 60.0
    with pytest.raises(WorkerStartError) as info:
        watch.check(["PENDING", "PENDING", "TERMINATED"])
    message = str(info.value)
    assert "no Ray worker started in 60 s: 2 trial(s) waiting" in message
    assert ".tools/bin/uv: No such file or directory" in message and str(tmp_path / "raylet.err") in message
    assert "run the same command again" in message
    assert info.value.exit_code == 1


def test_a_running_trial_or_a_sign_of_life_restarts_the_clock():
    clock = Clock()
    watch = _watch(clock)
    clock.now = 50
    watch.check(["RUNNING", "PENDING"])  # a worker is up: the rest wait for it, not for Ray
    clock.now = 100
    watch.check(["PENDING"])
    watch.alive()  # e.g. a trial ended on a reused worker
    clock.now = 150
    watch.check(["PENDING"])
    clock.now = 160
    with pytest.raises(WorkerStartError, match="give no reason"):
        watch.check(["PENDING"])


def test_nothing_pending_is_never_a_wait():
    clock = Clock()
    watch = _watch(clock)
    clock.now = 1000
    watch.check(["TERMINATED", "ERROR"])
    watch.check([])


def test_a_cluster_without_room_for_a_trial_waits_for_the_autoscaler_then_is_watched_again():
    clock, room = Clock(), [False]
    watch = _watch(clock, waiting_for_resources=lambda: not room[0])
    clock.now = 600
    watch.check(["PENDING"])  # no room yet: the autoscaler may add a node
    room[0] = True
    clock.now = 659
    watch.check(["PENDING"])  # the clock restarted when room was last missing
    clock.now = 661
    with pytest.raises(WorkerStartError):
        watch.check(["PENDING"])


def test_cause_prefers_the_workers_stderr_then_rays_register_line(tmp_path):
    assert cause(None) == ""
    assert cause(tmp_path) == ""  # no log files at all
    (tmp_path / "raylet.err").write_text(RAYLET_ERR)
    assert cause(tmp_path) == RAYLET_ERR.splitlines()[0]  # said twice, kept once; Ray's own lines left out
    (tmp_path / "raylet.err").write_text("")
    (tmp_path / "raylet.out").write_text(RAYLET_ERR.splitlines()[1] + "\n")
    assert cause(tmp_path).startswith("worker_pool.cc:660: Some workers of the worker process(19191) have not")
