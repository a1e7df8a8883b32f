"""``ablate run``: a study's trials as Ray Tune trials, resumable and idempotent.

The study folder ``results/<study>/`` is the source of truth: its Parquet tables
say which trials already ended (completed, pruned, or failed deterministically),
and the study's storage (``results/<study>/`` too, unless ``storage:`` names a shared
folder or an object store; see storage.py) holds each trial's folder ``trials/<id>/``
with its checkpoint and ``status.json``.
Running the same study again runs only what has not ended, resuming unfinished
trials from their last epoch; a trial id is a hash of its config and seed, so an
added level is a new id and runs, and nothing recorded is ever recorded twice.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ablate import ray_env
from ablate.data.check import check_data
from ablate.errors import AblateError, ConfigError, StorageError
from ablate.orchestrate.lock import LOCK, study_lock
from ablate.orchestrate.mirror import outage_errors
from ablate.orchestrate.recorder import CRASHED, Recorder, StudyCallback
from ablate.orchestrate.start_watch import StartWatch, timeout_s
from ablate.orchestrate.storage import Storage, disk_problem
from ablate.orchestrate.tracking import Tracker
from ablate.orchestrate.worker import Plan, train
from ablate.results.store import ResultsStore, stale_temp_files
from ablate.study import load_study
from ablate.study.expand import Trial, check, trials
from ablate.study.expand import max_t as horizon
from ablate.study.loader import require_env
from ablate.study.schema import Study


@dataclass
class Outcome:
    study: str
    folder: Path
    planned: int
    storage: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    ran: int = 0
    tracking_uri: str = ""
    interrupted: bool = False
    report: Path | None = None
    unsynced: int = 0  # trials whose records MLflow could not take (kept in results/<study>/, see mirror.py)


def ended(row: dict) -> bool:
    """A trial that a rerun leaves alone: completed, pruned, or failed for a reason that would repeat."""
    status = row.get("status")
    return status in ("completed", "pruned") or (status == "failed" and not str(row.get("reason", "")).startswith(CRASHED))


def launch_order(todo: list[Trial], seed: int = 0) -> list[Trial]:
    """Baseline trials first, the rest shuffled with a fixed seed (an ascending grid defeats ASHA's rungs)."""
    first = [t for t in todo if t.variant.is_baseline]
    rest = [t for t in todo if not t.variant.is_baseline]
    random.Random(seed).shuffle(rest)
    return first + rest


def _counts(store: ResultsStore, ids: list[str] | None = None) -> dict[str, int]:
    rows = [store.trials[t] for t in (ids if ids is not None else store.trials) if t in store.trials]
    return {s: sum(1 for r in rows if r.get("status") == s) for s in ("completed", "pruned", "failed")}


def _tracker(study: Study) -> Tracker:
    varied = list(study.search.space) if study.design == "optuna" else list(study.factors)
    return Tracker(study.tracking.uri, study.tracking.experiment or study.name, study.name,
                   {"design": study.design, "description": study.description[:5000],
                    "ablate.factors": json.dumps(varied)})  # their order, for a report from MLflow alone


def _discard(folder: Path, study: Study, storage: Storage, console: Console) -> None:
    """``--restart``: say what goes, then delete the study's results, trial folders and MLflow runs."""
    store = ResultsStore(folder)
    tracker = _tracker(study)
    try:
        tracker.connect()
    except outage_errors() as e:
        raise AblateError(f"--restart deletes the study's MLflow runs, but MLflow at {tracker.uri} cannot be reached "
                          f"({type(e).__name__}); start it, or run without --restart") from None
    console.print(f"--restart: discarding {len(store.trials)} recorded trials in {folder}, "
                  f"{len(storage.trial_ids())} trial folders in {storage.where}, "
                  f"and {len(tracker.children)} MLflow trial runs under run {tracker.parent_id}")
    tracker.discard()
    storage.discard()
    for path in folder.iterdir():
        if path.name != LOCK:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _reconcile(recorder: Recorder, planned: list[Trial]) -> int:
    """Record trials whose folders say they ended but the store does not (a driver killed at the wrong time)."""
    fixed = 0
    for t in planned:
        if ended(recorder.store.trials.get(t.trial_id, {})):
            continue
        status = recorder.storage.read_status(t.trial_id).get("status")
        if status in ("completed", "failed"):
            recorder.start(t)
            recorder.finish(t)
            fixed += 1
    return fixed


def _ray_init(address: str | None, verbose: bool) -> bool:
    """Join ``address`` (or RAY_ADDRESS) or start a local Ray; True if this process started it."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    quiet = logging.WARNING if verbose else logging.ERROR
    for name in ("ray", "ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(quiet)
    if not verbose:  # Tune logs each trial error with its traceback; ablate records its reason and notes it
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return False
    ray_env.uv_hook_off_in_ray()  # Ray may have been imported before ablate set the switch
    ray.init(address=address, include_dashboard=False, log_to_driver=verbose, logging_level=quiet,
             configure_logging=True)
    return address is None


def _check_shared(storage: Storage, option: str) -> None:
    """On a multi-node cluster, every node must see the study's storage (trial checkpoints live there).

    A file written there by the driver is looked for by a zero-CPU task pinned to each
    alive node; a node that cannot read it has the folder on its own disk (or no access
    to the bucket), and a trial retried there would start from scratch while the driver
    read stale status files.
    """
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    token = uuid.uuid4().hex
    marker = f"{storage.fs()[1]}/.shared-check-{token}"
    storage.write_text(marker, token)

    @ray.remote(num_cpus=0)
    def sees(where: Storage, path: str, expected: str) -> bool:
        return where.read_text(path) == expected

    try:
        refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(storage, marker, token)
            for n in nodes}
        blind = [name for name, ref in refs.items() if not ray.get(ref, timeout=120)]
    finally:
        storage.delete_file(marker)
    if blind:
        raise ConfigError(f"{option} {storage.base} is not shared: node(s) {', '.join(blind)} cannot see "
                          f"{storage.where}; on a cluster, trial checkpoints must be on storage every node reaches: "
                          "--storage on a folder every node mounts (NFS, EFS), e.g. --storage /mnt/shared/ablate, "
                          "or an object store, e.g. --storage s3://bucket/ablate")


def _resources(study: Study, console: Console, *, joined: bool) -> dict[str, float]:
    """Per-trial resources; on a cluster that autoscales, what is missing now may come (a note, not an error)."""
    import ray

    have = ray.cluster_resources()
    cpu, gpu = study.resources.cpu, study.resources.gpu
    if joined and (cpu > have.get("CPU", 0) or gpu > have.get("GPU", 0)):
        console.print(f"[yellow]note[/] a trial needs cpu {cpu:g}, gpu {gpu:g}; the cluster has cpu "
                      f"{have.get('CPU', 0):g}, gpu {have.get('GPU', 0):g} now: trials wait for the autoscaler")
        return {"cpu": cpu, "gpu": gpu}
    if cpu > have.get("CPU", 0):
        raise ConfigError(f"resources.cpu: {cpu:g} per trial, but the Ray cluster has {have.get('CPU', 0):g} CPUs; "
                          f"lower it (-o resources.cpu={max(1, int(have.get('CPU', 1)))})")
    if gpu > 0 and have.get("GPU", 0) == 0:
        console.print(f"[yellow]note[/] resources.gpu: {gpu:g}, but the Ray cluster has no GPU: trials run on CPU")
        gpu = 0.0
    if gpu > have.get("GPU", 0):
        raise ConfigError(f"resources.gpu: {gpu:g} per trial, but the Ray cluster has {have.get('GPU', 0):g} GPUs")
    return {"cpu": cpu, "gpu": gpu}


def run_study(
    file: Path,
    overrides: list[str],
    *,
    results_root: Path = Path("results"),
    storage: str | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    restart: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
    console: Console | None = None,
    trainable=None,
) -> Outcome:
    """Run (or resume) a study; see the module doc.  Raises StudyError before anything starts.

    ``trainable`` replaces ``worker.train`` (same signature and contract: status.json in the
    trial's folder, one ``tune.report`` per epoch): a test seam for orchestration-only tests.
    """
    console = console or Console(stderr=True)
    if not verbose:
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its sqlite set-up and migration chatter
    study = load_study(file, overrides + ([f"storage={json.dumps(storage)}"] if storage is not None else []))
    variants = check(study)
    planned = trials(study, variants)
    if study.design == "optuna":
        planned = planned[:1]  # the baseline on the first seed; the searcher adds the samples
    plan = Plan(study, {t.trial_id: t for t in planned}, planned[0].trial_id)
    folder = Path(results_root) / study.name
    total = len(planned) + (study.search.num_samples if study.design == "optuna" else 0)
    where = Storage.of(study.storage, results_root, study.name)
    outcome = Outcome(study.name, folder, total, where.where)

    require_env(study)  # a $VAR in data.root must be set before any trial starts
    recorded = ResultsStore(folder).trials if not restart and (folder / "trials.parquet").exists() else {}
    left = [t for t in planned if not ended(recorded.get(t.trial_id, {}))]
    # the datasets of the trials still to run (an Optuna study: its baseline's), loaded and their images
    # decoded now: a bad record fails here, not inside a trial, and before anything is written (the
    # writable check below creates the results folder); a finished study loads no annotation file again
    check_data([t.variant.config for t in (planned[:1] if study.design == "optuna" else left)],
               log=lambda line: console.print(escape(line), highlight=False))
    if not dry_run:  # a read-only or full results folder fails now, not at the first epoch's checkpoint
        _check_writable(folder, where, results_only=study.storage is None)
    if dry_run:
        would = len(left) + total - len(planned)
        console.print(f"{study.name}: {total} trials planned, {total - would} already ended, "
                      f"{would} would run (dry run: nothing started)")
        outcome.counts = {"would_run": would}
        return outcome

    with study_lock(folder, study.name):
        for stale in stale_temp_files(folder):  # a write of a killed driver (this one holds the lock)
            stale.unlink(missing_ok=True)
        if restart:
            _discard(folder, study, where, console)
        tracker = _tracker(study)
        store = ResultsStore(folder)
        recorder = Recorder(plan, store, tracker, where,
                            note=lambda line: console.print(f"[yellow]note[/] {escape(line)}", highlight=False))
        outcome.tracking_uri = tracker.uri
        recorder.sync()  # what an earlier run could not send to MLflow
        fixed = _reconcile(recorder, planned)
        todo = [t for t in planned if not ended(store.trials.get(t.trial_id, {}))]
        samples_left = 0
        if study.design == "optuna":
            finished = [r for r in store.trials.values() if ended(r) and r.get("variant") != 0]
            samples_left = max(0, study.search.num_samples - len(finished))
        recorded = _counts(store)
        console.print(f"{study.name}: {total} trials planned; already ended: {recorded['completed']} completed, "
                      f"{recorded['pruned']} pruned, {recorded['failed']} failed"
                      + (f" ({fixed} recorded now from their folders)" if fixed else "")
                      + f"; to run: {len(todo) + samples_left}")
        if not todo and not samples_left:
            outcome.unsynced = recorder.end_study(True)
            outcome.counts = _counts(store)
            outcome.report = _report(study, results_root, console)
            return outcome

        started_ray = _ray_init(address, verbose)
        try:
            outcome.ran = len(todo) + samples_left
            order = launch_order(todo, study.search.seed if study.search else 0)
            stopped = outcome.interrupted = _tune(study, plan, order, samples_left, store, recorder, max_concurrent,
                                                  verbose, console, started_ray=started_ray,
                                                  trainable=trainable or train)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        outcome.counts = _counts(store)
        unfinished = [t for t in planned if not ended(store.trials.get(t.trial_id, {}))]
        outcome.interrupted = outcome.interrupted or bool(unfinished)
        outcome.unsynced = recorder.end_study(not outcome.interrupted)
        if not stopped:  # after Ctrl-C, out fast: `ablate report` makes it when wanted
            outcome.report = _report(study, results_root, console)
        return outcome


def _report(study: Study, results_root: Path, console: Console) -> Path | None:
    """The study's report, rebuilt from what is recorded; a failure here loses nothing recorded."""
    from ablate.report.build import Source, build_report

    try:
        paths = build_report(Source(study.name, study.description, Path(results_root), study.tracking.uri,
                                    study.tracking.experiment))
    except Exception as e:  # noqa: BLE001 -- the results are safe in results/<study>/; say so and go on
        console.print(f"[yellow]note[/] the report could not be written ({type(e).__name__}: {escape(str(e))}); "
                      f"the results are in {results_root / study.name}; retry with: ablate report {study.name}")
        return None
    return paths["html"]


def _tune(study: Study, plan: Plan, todo: list[Trial], samples_left: int, store: ResultsStore, recorder: Recorder,
          max_concurrent: int | None, verbose: bool, console: Console, *, started_ray: bool, trainable=train) -> bool:
    """Build and fit the Tuner; True if it was interrupted."""
    import ray
    from ray import tune

    from ablate.orchestrate.scheduler import build_scheduler
    from ablate.orchestrate.search import searcher
    from ablate.orchestrate.view import View

    joined = len([n for n in ray.nodes() if n.get("Alive")]) > 1 or not started_ray
    storage = recorder.storage
    if joined:
        _check_shared(storage, "storage" if study.storage is not None else "the results folder")
    resources = _resources(study, console, joined=joined)
    by_ray_id: dict[str, Trial] = {}
    next_index = [max([int(r.get("variant", 0)) for r in store.trials.values()] + [0]) + 1]

    def resolve(ray_trial) -> Trial:
        if ray_trial.trial_id not in by_ray_id:
            index = -1 if "trial_id" in ray_trial.config else next_index[0]
            trial = plan.resolve(ray_trial.config, index)
            if trial.variant.index == next_index[0]:
                next_index[0] += 1
            by_ray_id[ray_trial.trial_id] = trial
        return by_ray_id[ray_trial.trial_id]

    max_t = horizon(study, [t.variant for t in plan.lookup.values()])
    prior = {tid: [(int(r["epoch"]), r.get(study.scheduler.metric)) for r in store.history(tid)]
             for tid in store.trials}
    scheduler, echo = build_scheduler(study.scheduler, max_t=max_t, key=lambda t: resolve(t).trial_id,
                                      protected={t.trial_id for t in plan.lookup.values() if t.variant.is_baseline},
                                      prior=prior)
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


def _check_writable(folder: Path, storage: Storage, *, results_only: bool) -> None:
    """Before anything starts: the results folder (and the storage, when elsewhere) take a write.

    Running as root, permissions rarely stop a write, but a read-only mount or a full disk does; found
    here, nothing is started.  (A disk that fills up later stops the study with the same advice.)
    """
    probe = folder / f".write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ablate")
        probe.unlink()
    except OSError as e:
        raise StorageError(f"the results folder {folder.resolve()} cannot be written ({e.strerror or e}); free space "
                           "or remount it writable, or pass --results a folder that can be written") from None
    if results_only:
        return
    marker = f"{storage.fs()[1]}/.write-check-{os.getpid()}"
    try:
        storage.write_text(marker, "ablate")
    except OSError as e:
        raise StorageError(f"the study's storage {storage.where} cannot be written ({e}); free space or fix its "
                           "permissions, or pass --storage a folder (or bucket) that can be written") from None
    storage.delete_file(marker)


def _point(row: dict) -> dict:
    return json.loads(row["sample"])


def describe(outcome: Outcome, console: Console) -> None:
    """Where the results are, after a run."""
    c = outcome.counts
    console.print(f"[bold]{escape(outcome.study)}[/]: {c.get('completed', 0)} completed, {c.get('pruned', 0)} pruned, "
                  f"{c.get('failed', 0)} failed of {outcome.planned} planned", highlight=False)
    if outcome.interrupted:
        console.print("[yellow]not finished[/]: run the same command again to resume (finished trials are kept)")
    console.print(f"results: {outcome.folder}/trials.parquet, {outcome.folder}/epochs.parquet")
    if outcome.storage and outcome.storage != str(outcome.folder.resolve()):
        console.print(f"trial folders (checkpoints): {outcome.storage}/trials/")
    if outcome.report is not None:
        console.print(f"report: {outcome.report} and {outcome.report.parent}/table.md")
    if outcome.tracking_uri:
        here = outcome.tracking_uri == f"sqlite:///{Path.cwd() / 'mlflow.db'}"  # MLflow's default, `mlflow ui`'s too
        browse = "mlflow ui" if here else f"mlflow ui --backend-store-uri {outcome.tracking_uri}"
        console.print(f"MLflow: {outcome.tracking_uri} -- browse it with: {browse}")
    if outcome.unsynced:
        console.print(f"[yellow]not synced[/]: MLflow did not get {outcome.unsynced} trial(s) (unreachable); they are "
                      f"kept in {outcome.folder}/ and sent by `ablate sync {outcome.study}"
                      + ("" if outcome.folder.parent == Path("results") else f" --results {outcome.folder.parent}")
                      + "` or the next `ablate run` of the study", highlight=False)
