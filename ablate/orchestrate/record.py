"""Where every trial's numbers go (in the driver): the Parquet store, then MLflow, each exactly once.

The ``Recorder`` is driven by Ray Tune's callbacks in the driver (``StudyCallback``)
and, on a resume, by the trial folders themselves: a trial's ``status.json`` holds its
whole history, so whatever a killed driver never recorded is recorded on the next
run, and whatever it did record is skipped (rows are keyed by trial and epoch).
Each event goes into the store (in memory), then to MLflow through the ``Mirror``
(mlflow_mirror.py: when MLflow cannot be reached the study goes on and the trial is marked for
later), then to the Parquet files, which are rewritten whole: starts and epochs reach
them at most ``FLUSH_S`` late (each trial's status.json holds them meanwhile, and the
next run catches up from there); an ending is written at once.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ray.tune import Callback

from ablate.errors import AblateError, StorageError
from ablate.metrics import METRICS
from ablate.orchestrate.mlflow_mirror import Mirror
from ablate.orchestrate.mlflow_runs import Tracker
from ablate.orchestrate.start_watch import StartWatch, WorkerStartError
from ablate.orchestrate.storage import Storage, disk_problem
from ablate.orchestrate.worker import Plan
from ablate.results.race import Stop, race_stops, save_stops
from ablate.results.store import ResultsStore
from ablate.status import COMPLETED, CRASHED, FAILED, PRUNED, label
from ablate.study.expand import Trial, config_dict, is_bundle, level_of, short
from ablate.study.paths import get
from ablate.study.schema import CategoricalDist

FLUSH_S = 2.0  # the longest a start or an epoch waits to be written to the Parquet files


def factor_levels(plan: Plan, trial: Trial) -> dict[str, str]:
    """Each varied path -> this trial's level as the study writes it (see ``expand.level_of``)."""
    study = plan.study
    if study.design == "optuna":
        config = config_dict(trial.variant.config)
        return {path: short(trial.variant.overrides[path]) if path in trial.variant.overrides
                else _named(get(config, tuple(path.split(".")))) for path in study.search.space}
    levels = {}
    for path in study.factors:
        level = level_of(study, trial.variant, path)
        written = path in trial.variant.overrides or is_bundle(study, path) or level in study.factors[path]
        levels[path] = "—" if level is None else short(level) if written else _named(level)  # None: see level_of
    return levels


def _named(value) -> str:
    """A resolved value named as a study would write it: ``giou``, not ``giou(weight=1.0)``."""
    return str(value["name"]) if isinstance(value, dict) and "name" in value else short(value)


HOST_OOM = "out of memory (host)"


def host_oom_reason(error: str) -> str | None:
    """The reason of a trial Ray's memory monitor killed (its OutOfMemoryError's text), or None.

    Example: ``out of memory (host): killed by Ray's memory monitor at 2.63 GB (the node at 4.38GB used /
    23.54GB limit; threshold 17.9%)``.
    """
    if "OutOfMemoryError" not in error and "running low on memory" not in error and HOST_OOM not in error:
        return None
    if error.startswith(HOST_OOM):
        return error.splitlines()[0]
    used = re.search(r"actual memory used=([\d.]+\s*[KMGT]?B)", error)
    node = re.search(r"was ([\d.]+\s*[KMGT]?B used / [\d.]+\s*[KMGT]?B limit)", error)
    threshold = re.search(r"threshold of \d+B \(([\d.]+%)", error)
    where = ", ".join(x for x in (node and f"the node at {node.group(1)}",
                                  threshold and f"threshold {threshold.group(1)}") if x)
    return (f"{HOST_OOM}: killed by Ray's memory monitor" + (f" at {used.group(1)}" if used else "")
            + (f" ({where})" if where else "") + "; give it more memory per trial (resources.cpu, fewer at once) "
            "or a smaller batch")


def ending(status_file: dict, epochs: int, error: str | None) -> tuple[str, str | None, str]:
    """(status, reason, label) of a trial that stopped, from its status.json and Ray's error."""
    done = len(status_file.get("history", []))
    if status_file.get("status") == FAILED:
        reason = status_file.get("reason", "unknown")
        return FAILED, reason, label(FAILED, reason=reason)
    if error is not None:
        reason = host_oom_reason(error) or f"{CRASHED}: {error}"
        return FAILED, reason, label(FAILED, reason=reason)
    if done >= epochs:
        return COMPLETED, None, COMPLETED
    return PRUNED, None, label(PRUNED, epoch=done)


class Recorder:
    """Writes trials and epochs to the store and MLflow, idempotently.

    Args:
        plan: resolves Tune configs to ablate trials.
        store: the study's Parquet tables.
        tracker: the study's MLflow runs.
        storage: where the trial folders are (their status.json).
        note: prints a console line (MLflow unreachable, back); default: stderr.
    """

    def __init__(self, plan: Plan, store: ResultsStore, tracker: Tracker, storage: Storage, *,
                 note: Callable[[str], None] | None = None):
        self.plan, self.store, self.tracker, self.storage = plan, store, tracker, storage
        self.mirror = Mirror(store, tracker, **({"note": note} if note is not None else {}))
        self.note = note or (lambda line: print(line, file=sys.stderr))
        self.started: dict[str, float] = {}
        self.flushed_at, self.dirty = 0.0, False
        self.events: list[tuple[str, str, str]] = []  # (trial id, label, variant name) of trials that ended
        self.stops: dict[int, Stop] = race_stops(store.folder)  # the race's decisions, this run's and earlier

    def race_stop(self, stop: Stop) -> None:
        """The race stopped a variant: race.json first (a killed driver resumes to the same stop), then a note."""
        self.stops[stop.variant] = stop
        save_stops(self.store.folder, self.stops)
        name = next((t.variant.name for t in self.plan.lookup.values() if t.variant.index == stop.variant),
                    f"variant {stop.variant}")
        self.note(f"{name}: {self.reason(stop.variant)}; its other seeds are stopped")

    def reason(self, variant: int) -> str | None:
        stop = self.stops.get(variant)
        if stop is None:
            return None
        return stop.reason(self.plan.study.scheduler.metric, self.plan.study.decision.margin)

    def start(self, trial: Trial) -> None:
        tid, v = trial.trial_id, trial.variant
        levels = factor_levels(self.plan, trial)
        config = config_dict(v.config)
        fields = {"study": self.plan.study.name, "variant": v.index, "variant_name": v.name, "seed": trial.seed,
                  "design": self.plan.study.design,
                  "overrides": json.dumps(v.overrides, sort_keys=True),
                  "config": json.dumps(config, sort_keys=True),  # the resolved config, for reports
                  **{f"factor.{k}": lv for k, lv in levels.items()}}
        if self.plan.study.design == "optuna" and v.overrides:  # the point Optuna sampled, for a resume
            space = self.plan.study.search.space
            fields["sample"] = json.dumps({p: short(x) if isinstance(space[p], CategoricalDist) else x
                                           for p, x in v.overrides.items()}, sort_keys=True)
        if self.store.status(tid) not in ("completed", "pruned", "failed"):
            fields["status"] = "running"
        if "started_at" not in self.store.trials.get(tid, {}):
            fields["started_at"] = time.time()  # unix seconds, first start (the report's timeline)
        self.store.upsert_trial(tid, **fields)
        self.started[tid] = time.time()
        self._catch_up(tid)  # epochs a killed driver ran but never recorded
        self.mirror.send(tid, config=config)  # its MLflow run: params, tags, config.yaml, the epochs so far
        self.flush(now=False)

    def _catch_up(self, tid: str) -> dict:
        status_file = self.storage.read_status(tid)
        for row in status_file.get("history", []):
            self.store.add_epoch(tid, {k: v for k, v in row.items() if k == "epoch" or k in METRICS})
        starts = status_file.get("starts", [])
        where = {}
        if starts:  # where it ran: every node it started on (a retry may move it), the last device
            nodes = list(dict.fromkeys(str(s["node"]) for s in starts if s.get("node")))
            where = {"node": ",".join(nodes) or None, "host": starts[-1].get("host"), "device": starts[-1].get("device")}
        self.store.upsert_trial(tid, **where)
        return status_file

    def epoch(self, tid: str, row: dict) -> None:
        clean = {"epoch": int(row["epoch"]), **{k: float(row[k]) for k in METRICS if row.get(k) is not None}}
        self.store.add_epoch(tid, clean)
        self.store.upsert_trial(tid)
        self.mirror.send(tid)
        self.flush(now=False)

    def finish(self, trial: Trial, error: str | None = None) -> str:
        """Record how a trial ended (from its folder's status.json); returns the status label."""
        tid = trial.trial_id
        status_file = self._catch_up(tid)
        status, reason, label = ending(status_file, trial.variant.config.train.epochs, error)
        if status == PRUNED and trial.variant.index in self.stops:
            reason = self.reason(trial.variant.index)
        previous = self.store.trials.get(tid, {}).get("wall_time_s", 0.0)
        wall = previous + (time.time() - self.started.pop(tid)) if tid in self.started else previous
        self.store.upsert_trial(tid, status=status, reason=reason or "", status_label=label, wall_time_s=wall,
                                ended_at=time.time(), retries=max(0, len(status_file.get("starts", [])) - 1))
        self.mirror.send(tid)  # its ending, with any epoch caught up above
        self.flush()
        self.events.append((tid, label, trial.variant.name))
        return label

    def flush(self, *, now: bool = True) -> None:
        """Write the Parquet files: at once, or (``now=False``) only if FLUSH_S passed since the last write.

        Rewriting both files after every event would make a study of many trials quadratic.
        """
        if not now and time.time() - self.flushed_at < FLUSH_S:
            self.dirty = True
            return
        self.store.flush()
        self.flushed_at, self.dirty = time.time(), False

    def tick(self) -> None:
        """Write what waits, once FLUSH_S passed (called after every step of Tune's event loop)."""
        if self.dirty:
            self.flush(now=False)

    def sync(self) -> int:
        """Send what an earlier run could not send to MLflow (before any trial starts); returns what is left."""
        if not self.mirror.pending and not self.mirror.finished:
            return 0
        left = self.mirror.sync(force=True)
        self.flush()  # the MLflow run ids of runs created now
        return left

    def end_study(self, finished: bool) -> int:
        """Close the study's MLflow parent run (FINISHED if ``finished``); returns trials still not in MLflow."""
        left = self.mirror.end_study(finished)
        self.flush()
        return left


class StudyCallback(Callback):
    """Ray Tune -> Recorder, plus the live view and the watch on workers that never start."""

    def __init__(self, recorder: Recorder, resolve, view, watch: StartWatch):
        self.recorder, self.resolve, self.view, self.watch = recorder, resolve, view, watch
        # the study stops with this: a trial could not write its folder, or no worker could start
        self.fatal: AblateError | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its state (callbacks included) for Tuner.restore, which ablate never uses:
        # a resume starts from the results folder.  The live MLflow client and console stay out.
        return {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.watch.alive()
        self.recorder.start(self.resolve(trial))
        self.view.update(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.watch.alive()
        self.recorder.epoch(self.resolve(trial).trial_id, result)
        self.view.update(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.watch.alive()
        t = self.resolve(trial)
        if t.trial_id not in self.recorder.started and "variant" not in self.recorder.store.trials.get(t.trial_id, {}):
            self.recorder.start(t)  # stopped before it started (the race stopped its variant): a row all the same
        self.recorder.finish(t)
        self.view.ended(self.recorder.events)
        self.view.update(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.watch.alive()
        try:
            error = trial.get_error()
        except Exception:  # noqa: BLE001 -- the error file may be gone; the trial still failed
            error = None
        self._stop_if_disk(trial, error or _local_error(trial))
        self.recorder.finish(self.resolve(trial), error=_last_line(error or "the trial's worker died"))
        self.view.ended(self.recorder.events)
        self.view.update(trials)

    def on_step_end(self, iteration, trials, **info):
        self.recorder.tick()
        try:
            self.watch.check(t.status for t in trials)
        except WorkerStartError as e:
            self.fatal = e
            raise

    def on_experiment_end(self, trials, **info):
        self.recorder.flush()

    def on_trial_recover(self, iteration, trials, trial, **info):
        error = _local_error(trial)
        self._stop_if_disk(trial, error)
        tid = self.resolve(trial).trial_id
        status = self.recorder.storage.read_status(tid)
        oom = host_oom_reason(error)
        if oom is not None and status.get("status") != "failed":  # retrying would meet the same wall
            status.update(status=FAILED, reason=oom)
            self.recorder.storage.write_text(f"{self.recorder.storage.trial_path(tid)}/status.json", json.dumps(status))
        if status.get("status") == "failed":  # it stopped itself (a hang, see worker.py): the retry only returns
            self.view.note(f"trial {tid} stopped: {status.get('reason', 'unknown')}")
        else:
            self.view.note(f"trial {tid} crashed; Ray retries it from its last checkpoint")

    def _stop_if_disk(self, trial, error: str | None) -> None:
        """A trial that died because its folder is full or read-only: every trial would, so stop the study.

        Retrying it (Ray) or going on with the next (Tune) would only fail again; the trial is left
        unrecorded, so the run that follows, once there is room, resumes it from its last checkpoint.
        """
        problem = disk_problem(error or "")
        if problem is None:
            return
        tid = self.resolve(trial).trial_id
        self.fatal = StorageError(f"trial {tid} cannot write its folder {self.recorder.storage.where}/trials/{tid} "
                                  f"({problem}); free space there (or pass --results, or --storage, a folder on "
                                  "another disk), then run the same command again to resume (what is recorded is kept)")
        raise self.fatal


def _local_error(trial) -> str:
    """The error Tune has just written for ``trial`` in the driver's copy of its folder ('' if none):
    ``get_error`` reads the storage's copy, which is synced later."""
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text() if path else ""
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)
