"""The orchestration's decisions without Ray running: the scheduler driven through its hooks with
recorded results (as Ray's own test_trial_scheduler.py drives AsyncHyperBandScheduler), what a rerun
leaves alone, the launch order, how a Tune config names a trial, and the Optuna search space.
Nothing here calls ray.init; the whole file runs in seconds."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray.tune.schedulers import TrialScheduler

from ablate.orchestrate.run import launch_order
from ablate.orchestrate.scheduler import StudyASHA, StudyRace, build_scheduler
from ablate.orchestrate.search import baseline_point, distributions, values
from ablate.orchestrate.worker import Plan
from ablate.results.race import Race
from ablate.status import ended
from ablate.study import load_study, trials
from ablate.study.expand import check, trial_id
from ablate.study.schema import Decision, Scheduler

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


@dataclass(frozen=True)
class FakeTrial:  # what Tune hands a scheduler; StudyASHA only keys it
    trial_id: str


def asha(*, protected=(), prior=None, max_t=8, grace=2, rf=2, mode="max") -> StudyASHA:
    return StudyASHA(key=lambda t: t.trial_id, protected=set(protected), prior=prior or {}, time_attr="epoch",
                     metric="mAP", mode=mode, max_t=max_t, grace_period=grace, reduction_factor=rf, brackets=1,
                     stop_last_trials=True)


def report(s: StudyASHA, tid: str, epoch: int, value: float) -> str:
    return s.on_trial_result(None, FakeTrial(tid), {"epoch": epoch, "mAP": value})


def add(s: StudyASHA, *tids: str) -> None:
    for tid in tids:
        s.on_trial_add(None, FakeTrial(tid))


# ---- the scheduler -------------------------------------------------------------------


def test_rungs_are_asha_milestones_and_the_cut_is_the_rung_quantile():
    s = asha(max_t=8, grace=2, rf=2)
    assert [m for m, _ in s._brackets[0]._rungs] == [8, 4, 2]
    add(s, "a", "b", "c")
    assert report(s, "a", 2, 0.5) == CONTINUE  # an empty rung cuts nothing
    assert report(s, "b", 2, 0.6) == CONTINUE
    # rf 2: the cutoff is the rung's median, np.nanpercentile([0.5, 0.6], 50) = 0.55
    assert np.nanpercentile([0.5, 0.6], 50) == pytest.approx(0.55)
    assert report(s, "c", 2, 0.54) == STOP
    assert s._num_stopped == 1
    assert report(s, "a", 3, 0.1) == CONTINUE  # between rungs nothing is judged


def test_the_baseline_is_measured_but_never_stopped_before_max_t():
    s = asha(protected={"base"})
    add(s, "a", "b", "base")
    report(s, "a", 2, 0.5)
    report(s, "b", 2, 0.6)
    assert report(s, "base", 2, 0.1) == CONTINUE  # ASHA said STOP: turned into CONTINUE
    assert s._num_stopped == 0  # and not counted as stopped
    assert s._brackets[0]._rungs[-1][1]["base"] == pytest.approx(0.1)  # yet it is in the rung, the yardstick
    assert report(s, "base", 8, 0.7) == STOP  # at max_t every trial ends, the baseline too


def test_rungs_are_seeded_from_an_earlier_run_and_a_resumed_trial_is_not_judged_twice():
    prior = {"a": [(1, 0.3), (2, 0.5), (3, 0.55)], "b": [(2, 0.6), (4, 0.7)], "nan": [(2, float("nan"))]}
    s = asha(prior=prior)
    rungs = {m: recorded for m, recorded in s._brackets[0]._rungs}
    assert rungs[2] == {"a": 0.5, "b": 0.6} and rungs[4] == {"b": 0.7} and rungs[8] == {}  # NaN left out
    add(s, "a", "x")
    assert report(s, "a", 2, 0.01) == CONTINUE  # passed rung 2 in the earlier run: not judged again
    assert report(s, "x", 2, 0.54) == STOP  # judged against the seeded rung, median 0.55


def test_mode_min_cuts_the_highest():
    s = asha(mode="min", prior={"a": [(2, 1.0)], "b": [(2, 2.0)]})
    add(s, "x", "y")
    assert report(s, "x", 2, 1.2) == CONTINUE  # -1.2 >= median(-1, -2) = -1.5
    assert report(s, "y", 2, 1.9) == STOP


def test_a_trial_removed_or_completed_unknown_is_forgotten_quietly():
    s = asha()
    add(s, "a")
    s.on_trial_remove(None, FakeTrial("a"))
    assert "a" not in s._trial_info
    s.on_trial_complete(None, FakeTrial("a"), {"epoch": 2, "mAP": 0.5})  # no KeyError
    s.on_trial_remove(None, FakeTrial("never-added"))


def test_ray_private_state_the_scheduler_relies_on_is_there():
    # StudyASHA reads and writes AsyncHyperBandScheduler's private state; an upgrade of Ray that renames
    # any of it fails here, by name, rather than as a wrong cut in a study
    s = asha()
    assert isinstance(s._brackets, list) and s._brackets
    milestone, recorded = s._brackets[0]._rungs[0]
    assert isinstance(milestone, (int, float)) and isinstance(recorded, dict)
    assert s._metric_op == 1.0 and s._num_stopped == 0 and s._trial_info == {} and s._max_t == 8
    assert callable(s._brackets[0].cutoff)
    # tuner.oom_as_actor_death wraps Tune's actor manager's failure hook (a host OOM kill would end fit)
    from ray.air.execution._internal.actor_manager import RayActorManager

    assert callable(RayActorManager._actor_task_failed)
    # tuner.actors_in_prestarted_workers replaces Tune's actor class cache's get (its _cache: class -> remote class)
    from ray.tune.execution.class_cache import _ActorClassCache

    assert callable(_ActorClassCache.get) and _ActorClassCache()._cache == {}
    # local_ray._lean rewrites the raylet's command line, which services.start_raylet gives start_ray_process
    import inspect

    from ray._private import services
    from ray._private.utils import get_num_cpus  # local_ray.Workers.preload: the node's CPUs as Ray counts them

    from ablate.orchestrate.local_ray import PRESTART, RESOURCES

    assert get_num_cpus() >= 1
    raylet = inspect.getsource(services.start_raylet)
    assert PRESTART in raylet and RESOURCES in raylet and "start_ray_process(" in raylet
    assert list(inspect.signature(services.start_ray_process).parameters)[:2] == ["command", "process_type"]


def test_build_scheduler_says_what_it_runs_with():
    none, echo = build_scheduler(Scheduler(name="none"), max_t=4, key=str, protected=set(), prior={})
    assert none is None and "every trial runs all its epochs" in echo
    s, echo = build_scheduler(Scheduler(name="asha", grace_period=1, protect_baseline=False), max_t=4,
                              key=str, protected={"base"}, prior={})
    assert isinstance(s, StudyASHA) and s._protected == set() and "max_t=4" in echo and "grace_period=1" in echo


def test_asha_paired_by_seed_ranks_a_trial_only_against_its_own_seed():
    # seed 1 lags seed 0 at the rung for every variant: plain ASHA cuts the seed-1 trials, paired ASHA
    # compares each with its own seed's rung and cuts the worst of each seed
    seed = {"a0": 0, "b0": 0, "c0": 0, "a1": 1, "b1": 1, "c1": 1}
    results = [("a0", 0.50), ("b0", 0.60), ("a1", 0.30), ("b1", 0.40), ("c0", 0.55), ("c1", 0.35)]
    plain, paired = asha(), StudyASHA(key=lambda t: t.trial_id, protected=set(), prior={}, group=seed.get,
                                      time_attr="epoch", metric="mAP", mode="max", max_t=8, grace_period=2,
                                      reduction_factor=2, brackets=1, stop_last_trials=True)
    for s in (plain, paired):
        add(s, *seed)
    cut_plain = {t for t, v in results if report(plain, t, 2, v) == STOP}
    cut_paired = {t for t, v in results if report(paired, t, 2, v) == STOP}
    assert cut_plain == {"a1", "b1", "c1"}  # every seed-1 trial, each below the medians of a mixed rung
    # per seed: rung median of seed 0 (0.50, 0.60) = 0.55 -> c0 (0.55) goes on; seed 1 (0.30, 0.40) = 0.35 -> c1 on
    assert cut_paired == set() and report(paired, "a0", 3, 0.0) == CONTINUE
    extra = {"d0": 0, "d1": 1}
    seed.update(extra)
    add(paired, *extra)
    assert report(paired, "d0", 2, 0.52) == STOP and report(paired, "d1", 2, 0.38) == CONTINUE  # 0.38 > seed 1's 0.35
    prior = StudyASHA(key=lambda t: t.trial_id, protected=set(), prior={"a0": [(2, 0.5)], "a1": [(2, 0.3)]},
                      group=seed.get, time_attr="epoch", metric="mAP", mode="max", max_t=8, grace_period=2,
                      reduction_factor=2, brackets=1, stop_last_trials=True)
    assert {g: b[0]._rungs[-1][1] for g, b in prior._groups.items()} == {0: {"a0": 0.5}, 1: {"a1": 0.3}}


@dataclass
class PendingTrial:  # what a race's choose_trial_to_run looks at
    trial_id: str
    status: str = "PENDING"


class FakeController:
    def __init__(self, trials):
        self.trials, self.stopped = trials, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        trial.status = "TERMINATED"
        self.stopped.append(trial.trial_id)


WHO = {f"v{v}s{s}": (v, s) for v in range(3) for s in range(4)}


def studyrace(prior=None, stops=None) -> tuple[StudyRace, list]:
    seen = []
    r = Race(variants=[1, 2], margin=0.01, alpha=0.05, grace_period=1, max_t=4, min_seeds=3, max_seeds=4)
    return StudyRace(r, key=lambda t: t.trial_id, who=WHO.__getitem__, metric="mAP", prior=prior or {},
                     on_stop=seen.append), seen


def test_the_race_stops_every_seed_of_a_worse_variant_running_or_pending_and_never_the_baseline():
    s, seen = studyrace()
    for seed in range(3):
        assert s.on_trial_result(None, FakeTrial(f"v0s{seed}"), {"epoch": 1, "mAP": 0.30 + 0.01 * seed}) == CONTINUE
    assert s.on_trial_result(None, FakeTrial("v1s0"), {"epoch": 1, "mAP": 0.10}) == CONTINUE
    assert s.on_trial_result(None, FakeTrial("v1s1"), {"epoch": 1, "mAP": 0.11}) == CONTINUE
    assert s.on_trial_result(None, FakeTrial("v1s2"), {"epoch": 1, "mAP": 0.125}) == STOP  # the third pair decides
    assert [x.variant for x in seen] == [1]
    assert s.on_trial_result(None, FakeTrial("v1s0"), {"epoch": 2, "mAP": 0.5}) == STOP  # its running seeds too
    controller = FakeController([PendingTrial("v1s3"), PendingTrial("v0s3"), PendingTrial("v2s0")])
    chosen = s.choose_trial_to_run(controller)
    assert controller.stopped == ["v1s3"] and chosen.trial_id == "v0s3"  # a stopped variant's seed never starts
    assert s.on_trial_result(None, FakeTrial("v0s0"), {"epoch": 2, "mAP": 0.0}) == CONTINUE  # the baseline runs on
    assert s.on_trial_result(None, FakeTrial("v2s0"), {"epoch": 2}) == CONTINUE  # no metric: nothing judged


def test_a_resumed_race_rebuilds_its_stops_from_the_records_and_keeps_the_earlier_ones():
    prior = {**{f"v0s{k}": [(1, 0.30 + 0.01 * k)] for k in range(3)},
             **{f"v1s{k}": [(1, 0.10 + 0.01 * k)] for k in range(3)}}
    s, seen = studyrace(prior=prior)
    assert [x.variant for x in seen] == [1] and s.race.is_stopped(1)
    controller = FakeController([PendingTrial("v1s3")])
    assert s.choose_trial_to_run(controller) is None and controller.stopped == ["v1s3"]


def test_build_scheduler_for_a_race_says_what_it_runs_with_and_when_it_cannot_judge():
    s, echo = build_scheduler(Scheduler(name="race", grace_period=2), max_t=6, key=str, protected=set(), prior={},
                              who=WHO.__getitem__, variants=[1, 2], decision=Decision(margin=0.02), seeds=5)
    assert isinstance(s, StudyRace) and s.race.rungs == [2] and s.race.looks == 1 * 3 and s.race.margin == 0.02
    assert "race" in echo and "min_seeds=3" in echo and "looks=3" in echo and "never judges" not in echo
    _, echo = build_scheduler(Scheduler(name="race"), max_t=6, key=str, protected=set(), prior={},
                              who=WHO.__getitem__, variants=[1], seeds=2)
    assert "with 2 seed(s) per variant the race never judges" in echo


# ---- what a rerun does ---------------------------------------------------------------------


@pytest.mark.parametrize("row, left_alone", [
    ({"status": "completed"}, True),
    ({"status": "pruned"}, True),
    ({"status": "failed", "reason": "non-finite loss_box at epoch 3"}, True),  # would fail the same way
    ({"status": "failed", "reason": "crashed: RayTaskError"}, False),  # Ray gave up: worth another try
    ({"status": "running"}, False),
    ({}, False),
])
def test_ended(row, left_alone):
    assert ended(row) is left_alone


def _study(write, **keys):
    path = write("s.yaml", {"name": "s", "train": {"epochs": 2}, "loss": {"box": "giou"}, "seeds": [0, 1], **keys})
    study = load_study(path)
    return study, trials(study, check(study))


def test_launch_order_puts_the_baseline_first_and_shuffles_the_rest_reproducibly(write):
    _, planned = _study(write, factors={"loss.box": ["diou", "ciou", "eiou"]})
    order = launch_order(planned, seed=0)
    assert [t.variant.is_baseline for t in order] == [True, True] + [False] * 6
    assert sorted(t.trial_id for t in order) == sorted(t.trial_id for t in planned)
    assert [t.trial_id for t in launch_order(planned, seed=0)] == [t.trial_id for t in order]
    rest = [t.trial_id for t in planned if not t.variant.is_baseline]
    assert [t.trial_id for t in order[2:]] != rest  # not the ascending grid ASHA's rungs would see


def test_plan_resolves_a_grid_config_and_an_optuna_sample(write):
    study, planned = _study(write, factors={"loss.box": ["diou"]})
    plan = Plan(study, {t.trial_id: t for t in planned}, planned[0].trial_id)
    assert plan.resolve({"trial_id": planned[-1].trial_id}) is planned[-1]

    space = {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
             "loss.box": {"type": "categorical", "choices": ["giou", {"name": "smooth_l1", "beta": 0.5}]}}
    study, planned = _study(write, design="optuna", seeds=[3], search={"space": space, "num_samples": 4})
    plan = Plan(study, {planned[0].trial_id: planned[0]}, planned[0].trial_id)
    trial = plan.resolve({"train.optimizer.lr": 0.02, "loss.box": "smooth_l1(beta=0.5)"}, index=5)
    assert trial.seed == 3 and trial.variant.index == 5
    assert trial.variant.config.train.optimizer.lr == 0.02 and trial.variant.config.loss.box.beta == 0.5
    assert trial.trial_id == trial_id(trial.variant.config, 3)
    base = study.baseline()
    again = plan.resolve({"train.optimizer.lr": base.train.optimizer.lr, "loss.box": "giou"}, index=6)
    assert again.trial_id == planned[0].trial_id and again.variant is planned[0].variant  # the baseline, as planned


def test_search_space_maps_to_optuna_and_back(write):
    space = {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
             "train.batch_size": {"type": "int", "low": 2, "high": 8, "step": 2},
             "loss.box": {"type": "categorical", "choices": ["giou", {"name": "smooth_l1", "beta": 0.5}]}}
    study, _ = _study(write, design="optuna", seeds=[0], search={"space": space})
    d = distributions(study)
    assert d["train.optimizer.lr"] == FloatDistribution(0.001, 0.1, log=True)
    assert d["train.batch_size"] == IntDistribution(2, 8, step=2)
    assert d["loss.box"] == CategoricalDistribution(["giou", "smooth_l1(beta=0.5)"])
    assert values(study, {"loss.box": "smooth_l1(beta=0.5)", "train.batch_size": 4}) == {
        "loss.box": {"name": "smooth_l1", "beta": 0.5}, "train.batch_size": 4}
    base = study.baseline()
    assert baseline_point(study) == {"train.optimizer.lr": base.train.optimizer.lr,
                                     "train.batch_size": base.train.batch_size, "loss.box": "giou"}


def test_lock_probe_sees_another_holder_and_leaves_the_lock_free(tmp_path):
    from ablate.orchestrate.lock import StudyLocked, study_lock, taken

    folder = tmp_path / "s"
    assert not taken(folder)  # no folder, no lock file
    with study_lock(folder, "s"):
        assert taken(folder)
    assert not taken(folder)
    with study_lock(folder, "s"):  # the probe left nothing held: the lock is taken again
        with pytest.raises(StudyLocked):
            with study_lock(folder, "s"):
                pass


def test_the_driver_checks_shapes_data_and_plans_without_importing_torch(tmp_path):
    # run_study starts Ray in a thread, then imports torch, Tune and MLflow (about 8 s on 2 cores) while
    # it starts: everything before that point must stay free of them (orchestrate/run.py)
    import os
    import subprocess
    import sys

    from conftest import STUDIES

    code = (
        "import sys\n"
        "from ablate.orchestrate import run\n"
        "from ablate.data.check import check_data\n"
        "from ablate.study import load_study, trials\n"
        "from ablate.study.expand import check\n"
        f"study = load_study({str(STUDIES / 'loss_ablation.yaml')!r}, [])\n"
        "configs = [t.variant.config for t in trials(study, check(study))]\n"
        "run._check_weights(configs)\n"
        "check_data(configs[:1], log=lambda line: None)\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'ray.tune', 'mlflow', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ABLATE_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_local_ray_start_imports_nothing_the_driver_imports_beside_it(tmp_path):
    # RayStart.begin imports what a local ray_init imports, starts it in a thread, and the driver imports Ray Tune,
    # MLflow and the rest beside it: a module both threads import can be met partly imported ("partially
    # initialized module"), so what ray_init imports after imports_of_a_local_start must be none of those
    import json
    import subprocess
    import sys

    head = ("import json, sys\nfrom ablate.orchestrate import local_ray\nlocal_ray.imports_of_a_local_start()\n"
            "before = set(sys.modules)\n")
    start = head + ("local_ray.ray_init(None, verbose=sys.argv[1] == 'verbose', "
                    "workers=local_ray.Workers(1, 1.0, 0.0, ('json',)))\n"
                    "print(json.dumps(sorted(set(sys.modules) - before)))\nlocal_ray.ray_shutdown()\n")
    driver = head + ("import ray.tune, ray.tune.search.optuna\n"
                     "from ablate.orchestrate import record, scheduler, search, tuner, view, mlflow_runs\n"
                     "from mlflow.tracking import MlflowClient\n"
                     "MlflowClient(f'sqlite:///{sys.argv[1]}/m.db').search_experiments()\n"
                     "print(json.dumps(sorted(set(sys.modules) - before)))\n")

    def imported(code: str, arg: str) -> set[str]:
        done = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        return set(json.loads(done.stdout.strip().splitlines()[-1]))

    by_driver = imported(driver, str(tmp_path))
    assert "ray.tune" in by_driver and "mlflow" in by_driver  # the check can see an overlap
    assert "scipy.stats" not in by_driver  # 0.6 s, imported at the race's first look or by the report (stats.py)
    by_start = imported(start, "verbose")  # the log monitor's path too; a quiet start imports the same
    assert not by_start & by_driver, sorted(by_start & by_driver)


def test_a_local_ray_prestarts_a_worker_per_trial_that_can_run_at_once_never_more_than_ray_would(monkeypatch):
    from ray._private import utils

    from ablate.orchestrate.local_ray import Workers, prestarting

    node = {"CPU": 16.0, "memory": 8e9, "object_store_memory": 2e9}
    assert Workers(1, 1.0, 0.0).prestart(node, 16) == 1  # one trial to run: one worker, not 16
    assert Workers(40, 1.0, 0.0).prestart(node, 16) == 16  # never more than Ray's own number
    assert Workers(40, 3.0, 0.0).prestart(node, 16) == 5  # 16 CPUs hold 5 trials of 3
    assert Workers(40, 0.7, 0.0).prestart({"CPU": 2.1}, 16) == 3  # 2.1 / 0.7 in floating point is 2.9999999999999996
    assert Workers(40, 1.0, 0.5).prestart({**node, "GPU": 2.0}, 16) == 4  # 2 GPUs hold 4 trials of half a GPU
    assert Workers(40, 1.0, 0.5).prestart(node, 16) == 16  # no GPU: the trials run on CPU (preflight.resources)
    assert Workers(40, 4.0, 0.0).prestart({"CPU": 2.0}, 2) == 0  # none fits: preflight.resources refuses the study

    command = ["raylet", "--node_id=ab", "--static_resource_list=CPU,16.0,GPU,2.0,memory,8000000000",
               "--num_prestart_python_workers=16", "--head"]
    assert prestarting(command, Workers(3, 1.0, 1.0).prestart) == [*command[:3], "--num_prestart_python_workers=2",
                                                                   "--head"]
    assert prestarting(["raylet", "--num_prestart_python_workers=16"], Workers(3, 1.0, 0.0).prestart) == \
        ["raylet", "--num_prestart_python_workers=16"]  # no resource list to judge from: Ray's own number

    # the prestarted workers import the trial's modules as they start only where they leave the driver a core
    trial = ("json",)
    monkeypatch.setattr(utils, "get_num_cpus", lambda: 2)
    assert Workers(1, 1.0, 0.0, trial).preload() and not Workers(1, 1.0, 0.0).preload()
    assert not Workers(2, 1.0, 0.0, trial).preload() and not Workers(4, 0.5, 0.0, trial).preload()
    assert Workers(4, 2.0, 0.0, trial).preload()  # one trial of 2 CPUs fits: one worker
    monkeypatch.setattr(utils, "get_num_cpus", lambda: 16)
    assert Workers(8, 1.0, 0.0, trial).preload() and not Workers(40, 1.0, 0.0, trial).preload()


def test_a_ray_start_that_never_finishes_fails_with_a_message_and_close_does_not_wait_for_it(monkeypatch, tmp_path):
    # a ray.init that hangs (a forked Ray process deadlocked before exec: CPython gh-112275) used to hang the
    # study for good, and a test's timeout too: RayStart.close waited for the start again as the error unwound
    from ablate.errors import AblateError
    from ablate.orchestrate import local_ray

    never = threading.Event()
    monkeypatch.setattr(local_ray, "ray_init", lambda address, verbose, workers=None: never.wait() and False)  # no Ray
    monkeypatch.setattr(local_ray, "START_TIMEOUT_S", 0.5)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # where Ray puts its logs then: the message names that folder
    start = local_ray.RayStart(None, verbose=False)
    began = time.monotonic()
    with pytest.raises(AblateError, match="Ray did not start within 0.5 s") as error:
        start.wait()
    assert f"logs are in {tmp_path}/ray/session_latest/logs;" in str(error.value), error.value
    start.close()
    assert time.monotonic() - began < 5
    never.set()
