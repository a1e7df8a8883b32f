"""``ablate run``: a study's trials as Ray Tune trials, resumable and idempotent.

The study folder ``results/<study>/`` is the source of truth: its Parquet tables
say which trials already ended (completed, pruned, or failed deterministically),
and the study's storage (``results/<study>/`` too, unless ``storage:`` names a shared
folder or an object store; see storage.py) holds each trial's folder ``trials/<id>/``
with its checkpoint and ``status.json``.
Running the same study again runs only what has not ended, resuming unfinished
trials from their last epoch; a trial id is a hash of its config and seed, so an
added level is a new id and runs, and nothing recorded is ever recorded twice.
A study with ``train.distill`` students runs in two passes: first every trial that is not a
student (the teachers among them) and every student whose teacher has completed, then the
students whose teachers completed in the first pass (teachers.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from ablate.errors import AblateError
from ablate.mlflow_tags import DECISION
from ablate.orchestrate import lock, preflight, teachers
from ablate.orchestrate.local_ray import RayStart, Workers, exposure_note
from ablate.orchestrate.lock import LOCK, study_lock
from ablate.orchestrate.seeds import add_seeds, planned_trials
from ablate.orchestrate.storage import Storage
from ablate.orchestrate.terminate import TERM
from ablate.orchestrate.worker import TRAIN_IMPORTS, Plan, train
from ablate.results.store import ResultsStore, stale_temp_files, write_data_summary, write_decision
from ablate.status import STATUS, ended
from ablate.study import load_study
from ablate.study.expand import Trial, check, trials
from ablate.study.loader import require_env
from ablate.study.schema import Study

if TYPE_CHECKING:
    from ablate.orchestrate.mlflow_runs import Tracker
    from ablate.orchestrate.record import Recorder


@dataclass
class Outcome:
    study: str
    folder: Path
    planned: int
    storage: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    ran: int = 0
    tracking_uri: str = ""
    description: str = ""
    experiment: str | None = None  # the MLflow experiment (None: the study's name)
    interrupted: bool = False
    report_due: bool = False  # the study ran to its end (not stopped): the caller writes its report
    unsynced: int = 0  # trials whose records MLflow could not take (kept in results/<study>/, see mlflow_mirror.py)


def launch_order(todo: list[Trial], seed: int = 0, *, race: bool = False) -> list[Trial]:
    """Baseline trials first; then, for a race, variant by variant (a variant's seeds together reach the
    epochs it is judged at soonest), else shuffled with a fixed seed (an ascending grid defeats ASHA's rungs)."""
    first = [t for t in todo if t.variant.is_baseline]
    rest = [t for t in todo if not t.variant.is_baseline]
    if race:
        return first + sorted(rest, key=lambda t: (t.variant.index, t.seed))
    random.Random(seed).shuffle(rest)
    return first + rest


def _name(variants, index: int) -> str:
    return next((v.name for v in variants if v.index == index), f"variant {index}")


def _counts(store: ResultsStore, ids: list[str] | None = None) -> dict[str, int]:
    rows = [store.trials[t] for t in (ids if ids is not None else store.trials) if t in store.trials]
    return {s: sum(1 for r in rows if r.get("status") == s) for s in ("completed", "pruned", "failed")}


def _decision(study: Study) -> dict:
    return {"metric": study.scheduler.metric, **study.decision.model_dump()}


def _connect_meanwhile(tracker: Tracker) -> threading.Thread | None:
    """Open a local sqlite MLflow store while Ray finishes starting: its first opening creates or migrates
    the tables and the experiment and parent run (3-4 s on 2 cores), which the first trial's start would
    otherwise wait for.  The caller joins the thread before anything else uses the tracker or imports more
    (Tune's Optuna and MLflow's store both import SQLAlchemy: two threads importing one package can meet a
    partly imported module); a failure is left to the first write, which meets it again and handles it as
    an outage.  A server URI is not opened early: an unreachable one would make the study wait for its
    retries before any trial.
    """
    if not tracker.uri.startswith("sqlite:///") or tracker.parent_id is not None:
        return None

    def connect() -> None:
        try:
            tracker.connect()
        except Exception:  # noqa: BLE001 -- met again, and reported, by the first write
            tracker.invalidate()

    thread = threading.Thread(target=connect, name="mlflow-connect", daemon=True)
    thread.start()
    return thread


def _workers(study: Study, trials: int, max_concurrent: int | None, *, real: bool) -> Workers:
    """What a local Ray's workers are for: up to ``trials`` at once (fewer with ``--max-concurrent``), importing
    what ``train`` imports as they start unless a stand-in trainable runs, or a GPU: CUDA reads
    CUDA_VISIBLE_DEVICES once, when it initialises, and Ray sets it for each trial's actor after its worker
    started, so a worker's imports stay where the trial makes them (no GPU here to check that none of them
    initialises CUDA)."""
    imports = TRAIN_IMPORTS if real and study.resources.gpu == 0 else ()
    return Workers(min(trials, max_concurrent or trials), study.resources.cpu, study.resources.gpu, imports)


def _tracker(study: Study) -> Tracker:
    from ablate.orchestrate.mlflow_runs import Tracker

    varied = list(study.search.space) if study.design == "optuna" else list(study.factors)
    return Tracker(study.tracking.uri, study.tracking.experiment or study.name, study.name,
                   {"design": study.design, "description": study.description[:5000],
                    DECISION: json.dumps(_decision(study)),
                    "ablate.factors": json.dumps(varied)})  # their order, for a report from MLflow alone


def _discard(folder: Path, study: Study, storage: Storage, console: Console) -> None:
    """``--restart``: say what goes, then delete the study's results, trial folders and MLflow runs."""
    from ablate.orchestrate.mlflow_mirror import outage_errors

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


def _pass(todo: list[Trial], plan: Plan, store: ResultsStore, recorder: Recorder) -> tuple[list[Trial], list[Trial]]:
    """(trials to start now, students whose teacher has still to run); a student whose teacher ended
    pruned or failed is recorded failed here, with the reason (teachers.split)."""
    ready, waiting, orphans = teachers.split(todo, plan.teachers, store.trials)
    for trial, reason in orphans:
        path = f"{recorder.storage.trial_path(trial.trial_id)}/{STATUS}"
        recorder.storage.write_text(path, json.dumps(teachers.orphan_status(trial.trial_id, reason)))
        recorder.start(trial)
        recorder.finish(trial)
    return ready, waiting


def _check_weights(configs) -> None:
    wanted = dict.fromkeys((c.model.backbone, c.model.pretrained) for c in configs if c.model.pretrained)
    if not wanted:  # no torch import in the driver for nothing
        return
    from ablate.models.backbones import weights_file

    for backbone, pretrained in wanted:
        weights_file(backbone, pretrained)


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
    TERM.reset()
    TERM.install()  # SIGTERM (preemption) stops the run as Ctrl-C does: terminate.py
    study = load_study(file, overrides + ([f"storage={json.dumps(storage)}"] if storage is not None else []))
    variants = check(study)
    folder = Path(results_root) / study.name
    planned = trials(study, variants) if restart else planned_trials(study, variants, folder)
    if study.design == "optuna":
        planned = planned[:1]  # the baseline on the first seed; the searcher adds the samples
    plan = Plan(study, {t.trial_id: t for t in planned}, planned[0].trial_id)
    total = len(planned) + (study.search.num_samples if study.design == "optuna" else 0)
    where = Storage.of(study.storage, results_root, study.name)
    outcome = Outcome(study.name, folder, total, where.where, description=study.description,
                      experiment=study.tracking.experiment)

    require_env(study)  # a $VAR in data.root must be set before any trial starts
    recorded = ResultsStore(folder).trials if not restart and (folder / "trials.parquet").exists() else {}
    plan = replace(plan, teachers=teachers.resolve(study, variants, planned, recorded))  # train.distill
    left = [t for t in planned if not ended(recorded.get(t.trial_id, {}))]
    # the datasets of the trials still to run (an Optuna study: its baseline's), loaded and their images
    # decoded now: a bad record fails here, not inside a trial, before Ray starts and before anything is
    # written (the writable check below creates the results folder); a finished study loads no annotation
    # file again.  None of these checks imports torch (tests/orchestrate/test_logic.py).
    from ablate.data.check import check_data

    configs = [t.variant.config for t in (planned[:1] if study.design == "optuna" else left)]
    _check_weights(configs)  # model.pretrained: imagenet or a file, here before anything starts
    checked = check_data(configs, log=lambda line: console.print(escape(line), highlight=False),
                         summary_of=planned[0].variant.config.data)
    if not dry_run:  # a read-only or full results folder fails now, not at the first epoch's checkpoint
        preflight.check_writable(folder, where, results_only=study.storage is None)
    if dry_run:
        would = len(left) + total - len(planned)
        console.print(f"{study.name}: {total} trials planned, {total - would} already ended, "
                      f"{would} would run (dry run: nothing started)")
        outcome.counts = {"would_run": would}
        return outcome

    # Ray starts now, in a thread (local_ray.py), while the driver imports MLflow and the engine, opens
    # the MLflow store and takes the lock; a study with nothing left to run starts it only if
    # decision.max_seeds adds seeds (the loop below), and one whose lock is taken not at all (refused below)
    # the trials this run starts: those left and an Optuna study's samples; with none left, the seeds
    # decision.max_seeds may add, at most one per variant
    to_run = len(left) + total - len(planned) or len(variants)
    ray = RayStart(address, verbose, _workers(study, to_run, max_concurrent, real=trainable is None))
    if (left or study.design == "optuna") and not lock.taken(folder):
        ray.begin()
    with contextlib.closing(ray):
        from ablate.orchestrate import tuner
        from ablate.orchestrate.record import Recorder

        if not verbose:  # after MLflow's import, which sets its logger's level
            logging.getLogger("mlflow").setLevel(logging.WARNING)  # its sqlite set-up and migration chatter

        with study_lock(folder, study.name):
            for stale in stale_temp_files(folder):  # a write of a killed driver (this one holds the lock)
                stale.unlink(missing_ok=True)
            if restart:
                _discard(folder, study, where, console)
            if checked.summary is not None:  # the baseline's data, for the report and the MLflow parent run
                write_data_summary(folder, checked.summary)
            write_decision(folder, _decision(study))  # what the report judges on, as this run was told
            tracker = _tracker(study)
            store = ResultsStore(folder)
            recorder = Recorder(plan, store, tracker, where,
                                note=lambda line: console.print(f"[yellow]note[/] {escape(line)}", highlight=False))
            outcome.tracking_uri = tracker.uri
            TERM.on_expire = recorder.flush
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
            started_ray, stopped = False, False
            while not TERM.requested:
                # train.distill: students wait for their teachers' trials (teachers.py: one more pass)
                todo, waiting = _pass(todo, plan, store, recorder)
                if todo or samples_left:
                    connecting = _connect_meanwhile(tracker)
                    try:
                        started = ray.wait()
                    finally:
                        if connecting is not None:
                            connecting.join()
                    if started and (warning := exposure_note()):
                        console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
                    started_ray = started_ray or started
                    outcome.ran += len(todo) + samples_left
                    order = launch_order(todo, study.search.seed if study.search else 0,
                                         race=study.scheduler.name == "race")
                    stopped = outcome.interrupted = tuner.fit(
                        study, plan, order, samples_left, store, recorder, max_concurrent, verbose, console,
                        started_ray=started_ray, trainable=trainable or train)
                    samples_left = 0
                    if stopped or TERM.requested or any(not ended(store.trials.get(t.trial_id, {})) for t in todo):
                        break
                if waiting:  # their teachers ran in this pass (a teacher is never a student: two passes at most)
                    if not todo:
                        break
                    todo = waiting
                    continue
                if any(not ended(store.trials.get(t.trial_id, {})) for t in planned):
                    break
                more = add_seeds(study, variants, folder)  # written to seeds.json before any of them starts
                if not more:
                    break
                console.print(f"decision.max_seeds {study.decision.max_seeds}: still unresolved, one more seed: "
                              + ", ".join(f"{_name(variants, v)} seed {seed}" for v, seed in more))
                planned = planned_trials(study, variants, folder)
                plan = recorder.plan = Plan(study, {t.trial_id: t for t in planned}, planned[0].trial_id,
                                            teachers.resolve(study, variants, planned, store.trials))
                todo = [t for t in planned if not ended(store.trials.get(t.trial_id, {}))]
                outcome.planned += len(more)
            stopped = stopped or TERM.requested
            outcome.counts = _counts(store)
            unfinished = [t for t in planned if not ended(store.trials.get(t.trial_id, {}))]
            outcome.interrupted = outcome.interrupted or bool(unfinished)
            outcome.unsynced = recorder.end_study(not outcome.interrupted)
            outcome.report_due = not stopped  # after Ctrl-C, out fast: `ablate report` makes it when wanted
            return outcome


