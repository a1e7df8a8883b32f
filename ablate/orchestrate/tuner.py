"""The Tune side of ``ablate run``: the Tuner built and fitted, Ctrl-C turned into a stop (Ray itself: local_ray.py).

``fit`` wires a study into Ray Tune: the trainable (worker.train) with its resources, the
scheduler and searcher, the callback that records every result (record.StudyCallback),
and the watch on workers that never start.  Runs in the driver.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time

from rich.console import Console

from ablate.errors import StorageError
from ablate.orchestrate import preflight
from ablate.orchestrate.record import Recorder, StudyCallback
from ablate.orchestrate.start_watch import StartWatch, timeout_s
from ablate.orchestrate.storage import Storage, disk_problem
from ablate.orchestrate.terminate import TERM
from ablate.orchestrate.worker import Plan, train
from ablate.results.store import ResultsStore
from ablate.status import ended
from ablate.study.expand import Trial
from ablate.study.expand import max_t as horizon
from ablate.study.schema import Study


def oom_as_actor_death() -> None:
    """Ray's memory monitor kills a trial's worker with an ``OutOfMemoryError``, which Ray Tune's actor
    manager does not expect (it handles ``RayActorError`` and ``RayTaskError``): it raises "Caught
    unexpected exception" out of ``Tuner.fit`` and the whole study dies.  The worker is dead, so ablate
    hands Tune the error as what it is, an actor's death, with the monitor's words kept: the trial ends
    (record.py: ``failed: out of memory (host)``, not retried) and the study goes on.  Private Ray
    state (``RayActorManager._actor_task_failed``); pyproject.toml pins Ray's minor version and
    tests/orchestrate/test_logic.py checks it is there."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.exceptions import OutOfMemoryError, RayActorError

    original = RayActorManager._actor_task_failed
    if getattr(original, "_ablate", False):
        return

    def failed(self, tracked_actor_task, exception):
        if isinstance(exception, OutOfMemoryError):
            exception = RayActorError(error_msg=f"OutOfMemoryError: {exception}")
        return original(self, tracked_actor_task, exception)

    failed._ablate = True
    RayActorManager._actor_task_failed = failed


_INHERITED = {"env": False}  # fit: the trials' workers inherit the driver's environment (a local Ray it started)


def actors_in_prestarted_workers() -> None:
    """Tune gives each trial's actor a runtime environment of a few environment variables (its class_cache.py:
    PL_DISABLE_FORK, RAY_CHDIR_TO_TRIAL_DIR, AWS credentials), so that a cluster's workers see the driver's.  An
    actor with a runtime environment cannot take one of the workers Ray prestarts when the driver connects (one
    per trial that can run at once, local_ray.Workers; started with none): it waits for a new process (1.4 s against 0.5 s, bench/ray_start.py) while
    those idle.  In a local Ray this process started, every worker inherited the driver's environment at the
    start, the same variables included, so the trials' actors go without (``_INHERITED``, set by ``fit``); a
    joined cluster keeps Tune's.  Private Ray (``_ActorClassCache.get``): pyproject.toml pins Ray's minor
    version and tests/orchestrate/test_logic.py checks it is there."""
    import ray
    from ray.tune.execution.class_cache import _ActorClassCache

    original = _ActorClassCache.get
    if getattr(original, "_ablate", False):
        return

    def get(self, trainable_cls):
        if not _INHERITED["env"]:
            return original(self, trainable_cls)
        if trainable_cls not in self._cache:
            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    get._ablate = True
    _ActorClassCache.get = get


def fit(study: Study, plan: Plan, todo: list[Trial], samples_left: int, store: ResultsStore, recorder: Recorder,
          max_concurrent: int | None, verbose: bool, console: Console, *, started_ray: bool, trainable=train) -> bool:
    """Build and fit the Tuner; True if it was interrupted."""
    import ray
    from ray import tune

    from ablate.orchestrate.scheduler import build_scheduler
    from ablate.orchestrate.search import searcher
    from ablate.orchestrate.view import View

    oom_as_actor_death()
    actors_in_prestarted_workers()
    joined = len([n for n in ray.nodes() if n.get("Alive")]) > 1 or not started_ray
    _INHERITED["env"] = not joined
    storage = recorder.storage
    if joined:
        preflight.check_shared(storage, "storage" if study.storage is not None else "the results folder")
    resources = preflight.resources(study, console, joined=joined)
    by_ray_id: dict[str, Trial] = {}
    next_index = [max([int(r.get("variant", 0)) for r in store.trials.values()] + [0]) + 1]

    who = {tid: (int(r["variant"]), int(r["seed"])) for tid, r in store.trials.items()
           if r.get("variant") is not None and r.get("seed") is not None}
    who.update({t.trial_id: (t.variant.index, t.seed) for t in plan.lookup.values()})

    def resolve(ray_trial) -> Trial:
        if ray_trial.trial_id not in by_ray_id:
            index = -1 if "trial_id" in ray_trial.config else next_index[0]
            trial = plan.resolve(ray_trial.config, index)
            if trial.variant.index == next_index[0]:
                next_index[0] += 1
            by_ray_id[ray_trial.trial_id] = trial
            who[trial.trial_id] = (trial.variant.index, trial.seed)
        return by_ray_id[ray_trial.trial_id]

    max_t = horizon(study, [t.variant for t in plan.lookup.values()])
    prior = {tid: [(int(r["epoch"]), r.get(study.scheduler.metric)) for r in store.history(tid)]
             for tid in store.trials}
    scheduler, echo = build_scheduler(
        study.scheduler, max_t=max_t, key=lambda t: resolve(t).trial_id,
        protected={t.trial_id for t in plan.lookup.values() if t.variant.is_baseline}, prior=prior,
        who=lambda tid: who.get(tid, (-1, -1)), variants=sorted({t.variant.index for t in plan.lookup.values() if not t.variant.is_baseline}),
        decision=study.decision, seeds=study.decision.max_seeds or len(study.seeds), stopped=recorder.stops,
        on_stop=lambda stop: recorder.race_stop(stop), higher_is_better=study.scheduler.mode == "max")
    console.print(echo)
    console.print(f"resources per trial: cpu {resources['cpu']:g}, gpu {resources['gpu']:g}"
                  + (f"; at most {max_concurrent} at once" if max_concurrent else ""))

    trainable = tune.with_resources(
        tune.with_parameters(trainable, plan=plan, storage=storage,
                             threads=max(1, int(resources["cpu"])), use_gpu=resources["gpu"] > 0),
        resources)
    if study.design == "optuna":
        from ablate.orchestrate.search import baseline_point

        points = [baseline_point(study)] if todo and baseline_point(study) is not None else []
        done = [(_point(r), r.get(f"final_{study.scheduler.metric}"), r.get("status") == "pruned")
                for r in store.trials.values() if ended(r) and r.get("variant") != 0 and r.get("sample")]
        unfinished = [_point(r) for r in store.trials.values() if not ended(r) and r.get("sample")]
        search = searcher(study, metric=study.scheduler.metric, mode=study.scheduler.mode,
                          points=points + unfinished, done=done)
        param_space, num_samples = {}, samples_left + len(points)
    else:
        search = None
        param_space, num_samples = {"trial_id": tune.grid_search([t.trial_id for t in todo])}, 1

    view = View(console, store, [t.trial_id for t in todo], metric=study.scheduler.metric,
                mode=study.scheduler.mode, epochs=max_t, total=len(plan.lookup) + samples_left
                + sum(1 for r in store.trials.values() if r.get("sample")))
    need = {"CPU": resources["cpu"], "GPU": resources["gpu"]}
    watch = StartWatch(timeout_s(), waiting_for_resources=lambda: joined and any(
        ray.available_resources().get(k, 0) < v for k, v in need.items() if v))
    callback, ctrl_c = StudyCallback(recorder, resolve, view, watch), _ctrl_c_stopper()
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            scheduler=scheduler, search_alg=search, num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,  # a finished trial's worker process takes the next: no process start, no imports
            trial_name_creator=lambda t: resolve(t).trial_id, trial_dirname_creator=lambda t: resolve(t).trial_id,
            **({} if scheduler is not None or search is not None else
               {"metric": study.scheduler.metric, "mode": study.scheduler.mode}),
        ),
        run_config=tune.RunConfig(
            name=f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=storage.ray_path(),
            storage_filesystem=storage.fs()[0] if storage.remote else None,
            failure_config=tune.FailureConfig(max_failures=study.max_failures),
            callbacks=[callback],
            stop=ctrl_c,
            verbose=1 if verbose else 0,
        ),
    )
    interrupted = False
    TERM.stopper, ctrl_c.requested = ctrl_c, ctrl_c.requested or TERM.requested  # SIGTERM stops it as Ctrl-C does
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())  # Tune's banners
    with view, quiet, _on_ctrl_c(ctrl_c):
        try:
            tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C
            interrupted = True
        except Exception as e:
            # a folder that cannot take writes (full, read-only), seen by a trial or by the recorder: Tune
            # re-raises it as its own error with the traceback as text; the user gets the reason and the fix
            problem = callback.fatal or _storage_problem(e, storage)
            if problem is not None:
                raise problem from None
            raise
        finally:
            TERM.stopper = None
    view.ended(recorder.events)
    return interrupted or ctrl_c.requested


def _ctrl_c_stopper():
    """A Tune ``Stopper`` that ends the experiment once ``requested`` (see _on_ctrl_c)."""
    from ray.tune import Stopper

    class CtrlC(Stopper):
        requested = False

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.requested

    return CtrlC()


@contextlib.contextmanager
def _on_ctrl_c(stop):
    """Ctrl-C stops the study: the first SIGINT sets ``stop.requested`` (a Tune Stopper's ``stop_all``).

    Tune then stops every trial at its next step (running ones are killed after a few seconds
    if they do not stop: an epoch may be long) and records nothing for them, so a rerun
    resumes them from their last epoch.  Tune's own SIGINT handler does the same, but its
    ``fit`` then returns as if the study had ended; with it off (TUNE_DISABLE_SIGINT_HANDLER,
    read when ``fit`` starts) ablate knows it was stopped: no report, "run it again" said.
    A second Ctrl-C raises KeyboardInterrupt at once (the handler puts back the previous one).
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def first(signum, frame) -> None:
        stop.requested = True
        signal.signal(signal.SIGINT, previous)

    env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = env


def _storage_problem(error: BaseException, storage: Storage) -> StorageError | None:
    """A StorageError for an error of Tune's whose text says a folder is full or read-only (its own state files)."""
    text = f"{error}\n{error.__cause__ or ''}"
    problem = disk_problem(text)
    if problem is None:
        return None
    own = [line for line in text.splitlines() if "StorageError: " in line]
    if own:  # the results store's own message (a Parquet write), with the file and the fix
        return StorageError(own[-1].split("StorageError: ", 1)[1].strip())
    return StorageError(f"{storage.where} cannot be written ({problem}); free space there (or pass --storage a folder "
                        "on another disk), then run the same command again to resume (what is recorded is kept)")


def _point(row: dict) -> dict:
    return json.loads(row["sample"])
