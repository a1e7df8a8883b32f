"""Ray Tune's ASHA, keyed by ablate's trial ids, that never stops a baseline trial.

Two small changes to ``AsyncHyperBandScheduler``, made through its hooks and its private
state (``_brackets`` and their ``_rungs``, ``_metric_op``, ``_num_stopped``, ``_trial_info``,
``_max_t``), which no public method reaches; pyproject.toml pins Ray's minor version for that,
and tests/orchestrate/test_logic.py checks each of them by name, without starting Ray:

- Rungs record results under ablate's trial id (a hash of config and seed), not
  Ray's per-run id, so a resumed study can put the results of its finished trials
  back into the rungs (``prior``), and a resumed trial is not judged twice at a rung
  it already passed.
- A protected (baseline) trial's results still enter the rungs, so it is the
  yardstick the others are cut against, but the scheduler's STOP is turned into
  CONTINUE for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from ablate.study.schema import Scheduler

TIME_ATTR = "epoch"


@dataclass(frozen=True)
class _Keyed:
    trial_id: str  # what ASHA's brackets key their rungs by


class StudyASHA(AsyncHyperBandScheduler):
    """ASHA over epochs with protected trials and rungs seeded from earlier runs.

    Args:
        key: Ray trial -> ablate trial id.
        protected: ablate trial ids that are never stopped (the baseline's seeds).
        prior: ablate trial id -> [(epoch, metric), ...] of trials run before this session.
        **asha: ``AsyncHyperBandScheduler`` arguments.
    """

    def __init__(self, *, key: Callable, protected: set[str], prior: dict[str, list[tuple[int, float]]], **asha):
        super().__init__(**asha)
        self._key, self._protected = key, protected
        for tid, curve in prior.items():  # what this trial would have recorded at each rung it reached
            for bracket in self._brackets:
                for milestone, recorded in bracket._rungs:
                    reached = [value for epoch, value in curve if epoch >= milestone]
                    if reached and value_ok(reached[0]):
                        recorded[tid] = self._metric_op * reached[0]

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, _Keyed(self._key(trial)))

    def on_trial_result(self, tune_controller, trial, result):
        tid = self._key(trial)
        action = super().on_trial_result(tune_controller, _Keyed(tid), result)
        if action == TrialScheduler.STOP and tid in self._protected and result.get(TIME_ATTR, 0) < self._max_t:
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        tid = self._key(trial)
        if tid in self._trial_info:
            super().on_trial_complete(tune_controller, _Keyed(tid), result)

    def on_trial_remove(self, tune_controller, trial):
        self._trial_info.pop(self._key(trial), None)


def value_ok(value) -> bool:
    return value is not None and value == value  # not NaN


def build_scheduler(s: Scheduler, *, max_t: int, key: Callable, protected: set[str],
                    prior: dict[str, list[tuple[int, float]]]) -> tuple[TrialScheduler | None, str]:
    """The study's scheduler and a one-line description of every parameter it runs with."""
    if s.name == "none":
        return None, "scheduler: none (every trial runs all its epochs)"
    params = {"time_attr": TIME_ATTR, "metric": s.metric, "mode": s.mode, "max_t": max_t,
              "grace_period": s.grace_period, "reduction_factor": s.reduction_factor, "brackets": 1,
              "stop_last_trials": True}
    scheduler = StudyASHA(key=key, protected=protected if s.protect_baseline else set(), prior=prior, **params)
    echo = " ".join(f"{k}={v}" for k, v in params.items())
    return scheduler, f"scheduler: ASHA {echo} protect_baseline={s.protect_baseline}"
