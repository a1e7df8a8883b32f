"""Where every trial's numbers go: the Parquet store and MLflow, each exactly once.

The ``Recorder`` is driven by Ray Tune's callbacks in the driver (``StudyCallback``)
and, on a resume, by the trial folders themselves: a trial's ``status.json`` holds its
whole history, so whatever a killed driver never recorded is recorded on the next
run, and whatever it did record is skipped (rows are keyed by trial and epoch).
"""

from __future__ import annotations

import json
import time

from ray.tune import Callback

from ablate.engine.metrics import METRICS
from ablate.orchestrate.storage import Storage
from ablate.orchestrate.tracking import Tracker, flatten
from ablate.orchestrate.worker import Plan
from ablate.results.store import ResultsStore
from ablate.study.expand import Trial, config_dict, short
from ablate.study.paths import get
from ablate.study.schema import CategoricalDist

CRASHED = "crashed"  # prefix of the reason of a trial Ray gave up retrying: not deterministic, run again on resume


def factor_levels(plan: Plan, trial: Trial) -> dict[str, str]:
    """Each varied path -> this trial's level (the baseline's value where the variant leaves it)."""
    study = plan.study
    paths = list(study.search.space) if study.design == "optuna" else list(study.factors)
    config = config_dict(trial.variant.config)
    levels = {}
    for path in paths:
        if path in trial.variant.overrides:
            levels[path] = short(trial.variant.overrides[path])
        else:  # the baseline's value, named as a study would write it: `giou`, not `giou(weight=1.0)`
            value = get(config, tuple(path.split(".")))
            levels[path] = str(value["name"]) if isinstance(value, dict) and "name" in value else short(value)
    return levels


def ending(status_file: dict, epochs: int, error: str | None) -> tuple[str, str | None, str]:
    """(status, reason, label) of a trial that stopped, from its status.json and Ray's error."""
    done = len(status_file.get("history", []))
    if status_file.get("status") == "failed":
        return "failed", status_file.get("reason", "unknown"), f"failed: {status_file.get('reason', 'unknown')}"
    if error is not None:
        reason = f"{CRASHED}: {error}"
        return "failed", reason, f"failed: {reason}"
    if done >= epochs:
        return "completed", None, "completed"
    return "pruned", None, f"pruned@epoch {done}"


class Recorder:
    """Writes trials and epochs to the store and MLflow, idempotently.

    Args:
        plan: resolves Tune configs to ablate trials.
        store: the study's Parquet tables.
        tracker: the study's MLflow runs.
        storage: where the trial folders are (their status.json).
    """

    def __init__(self, plan: Plan, store: ResultsStore, tracker: Tracker, storage: Storage):
        self.plan, self.store, self.tracker, self.storage = plan, store, tracker, storage
        self.started: dict[str, float] = {}
        self.events: list[tuple[str, str, str]] = []  # (trial id, label, variant name) of trials that ended

    def start(self, trial: Trial) -> None:
        tid, v = trial.trial_id, trial.variant
        levels = factor_levels(self.plan, trial)
        config = config_dict(v.config)
        run_id = self.tracker.trial_run(
            tid, name=f"{v.name} seed={trial.seed}",
            tags={"variant": str(v.index), "variant_name": v.name, "seed": str(trial.seed),
                  "design": self.plan.study.design, "status": "running"},
            params={"variant": v.name, "seed": str(trial.seed),
                    **{f"factor.{k}": lv for k, lv in levels.items()}, **flatten(config)},
            config=config)
        fields = {"study": self.plan.study.name, "variant": v.index, "variant_name": v.name, "seed": trial.seed,
                  "design": self.plan.study.design, "mlflow_run_id": run_id,
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
        self.store.flush()

    def _catch_up(self, tid: str) -> dict:
        status_file = self.storage.read_status(tid)
        for row in status_file.get("history", []):
            self.store.add_epoch(tid, {k: v for k, v in row.items() if k == "epoch" or k in METRICS})
            self.tracker.log_epoch(tid, row)
        starts = status_file.get("starts", [])
        where = {}
        if starts:  # where it ran: every node it started on (a retry may move it), the last device
            nodes = list(dict.fromkeys(str(s["node"]) for s in starts if s.get("node")))
            where = {"node": ",".join(nodes) or None, "host": starts[-1].get("host"), "device": starts[-1].get("device")}
            self.tracker.tag_trial(tid, {k: v for k, v in where.items() if v})
        self.store.upsert_trial(tid, **where)
        return status_file

    def epoch(self, tid: str, row: dict) -> None:
        clean = {"epoch": int(row["epoch"]), **{k: float(row[k]) for k in METRICS if row.get(k) is not None}}
        self.store.add_epoch(tid, clean)
        self.tracker.log_epoch(tid, clean)
        self.store.upsert_trial(tid)
        self.store.flush()

    def finish(self, trial: Trial, error: str | None = None) -> str:
        """Record how a trial ended (from its folder's status.json); returns the status label."""
        tid = trial.trial_id
        status_file = self._catch_up(tid)
        status, reason, label = ending(status_file, trial.variant.config.train.epochs, error)
        previous = self.store.trials.get(tid, {}).get("wall_time_s", 0.0)
        wall = previous + (time.time() - self.started.pop(tid)) if tid in self.started else previous
        self.store.upsert_trial(tid, status=status, reason=reason or "", status_label=label, wall_time_s=wall,
                                ended_at=time.time(), retries=max(0, len(status_file.get("starts", [])) - 1))
        history = self.store.history(tid)
        self.tracker.end_trial(tid, status=status, label=label, final=history[-1] if history else {})
        self.store.flush()
        self.events.append((tid, label, trial.variant.name))
        return label


class StudyCallback(Callback):
    """Ray Tune -> Recorder, plus the live view."""

    def __init__(self, recorder: Recorder, resolve, view):
        self.recorder, self.resolve, self.view = recorder, resolve, view

    def __getstate__(self) -> dict:
        # Tune pickles its state (callbacks included) for Tuner.restore, which ablate never uses:
        # a resume starts from the results folder.  The live MLflow client and console stay out.
        return {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.recorder.start(self.resolve(trial))
        self.view.update(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.recorder.epoch(self.resolve(trial).trial_id, result)
        self.view.update(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.recorder.finish(self.resolve(trial))
        self.view.ended(self.recorder.events)
        self.view.update(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        try:
            error = trial.get_error()
        except Exception:  # noqa: BLE001 -- the error file may be gone; the trial still failed
            error = None
        self.recorder.finish(self.resolve(trial), error=_last_line(error or "the trial's worker died"))
        self.view.ended(self.recorder.events)
        self.view.update(trials)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.view.note(f"trial {self.resolve(trial).trial_id} crashed; Ray retries it from its last checkpoint")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)
