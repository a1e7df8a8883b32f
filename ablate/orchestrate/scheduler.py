"""The study's Ray Tune scheduler: the paired race (the default), or ASHA keyed by ablate's trial ids.

``StudyRace`` is a ``FIFOScheduler`` that feeds every result to the racing rule
(results/race.py) and stops all the seeds of a variant the rule stops: running ones at their
next result, pending ones before they start.  ``StudyASHA`` is Ray's ASHA with three small
changes to ``AsyncHyperBandScheduler``, made through its hooks and its private
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
- ``pairing: seed``: one set of rungs per seed, so a trial is only ever ranked against trials
  of its own seed (seed 1 lagging seed 0 at every rung cuts no seed-1 trial).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ray.tune.experiment import Trial as RayTrial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from ablate.results.race import Race, Stop, describe
from ablate.study.schema import Decision, Scheduler

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
        group: ablate trial id -> the key of its rungs (its seed, for ``pairing: seed``); None: one set.
        **asha: ``AsyncHyperBandScheduler`` arguments.
    """

    def __init__(self, *, key: Callable, protected: set[str], prior: dict[str, list[tuple[int, float]]],
                 group: Callable | None = None, **asha):
        super().__init__(**asha)
        self._key, self._protected, self._group = key, protected, group
        self._rung_args = (asha.get("grace_period", 1), self._max_t, self._reduction_factor, 0,
                           asha.get("stop_last_trials", True))
        self._groups: dict = {}
        for tid, curve in prior.items():  # what this trial would have recorded at each rung it reached
            for bracket in self._brackets_of(tid):
                for milestone, recorded in bracket._rungs:
                    reached = [value for epoch, value in curve if epoch >= milestone]
                    if reached and value_ok(reached[0]):
                        recorded[tid] = self._metric_op * reached[0]

    def _brackets_of(self, tid: str) -> list:
        if self._group is None:
            return self._brackets
        g = self._group(tid)
        if g not in self._groups:
            self._groups[g] = [_Bracket(*self._rung_args)]
        return self._groups[g]

    def on_trial_add(self, tune_controller, trial):
        tid = self._key(trial)
        super().on_trial_add(tune_controller, _Keyed(tid))
        self._trial_info[tid] = self._brackets_of(tid)[0]

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


class StudyRace(FIFOScheduler):
    """The paired racing rule (results/race.py) as a Ray Tune scheduler.

    Args:
        race: the rule's state (its ``stopped`` may hold the stops of an earlier run: race.json).
        key: Ray trial -> ablate trial id; who: ablate trial id -> (variant index, seed).
        metric: the result key judged; time_attr: the epoch's.
        prior: ablate trial id -> [(epoch, metric), ...] recorded before this session (a resume).
        on_stop: called once with each new ``Stop`` (the driver writes race.json and the reason).
    """

    def __init__(self, race: Race, *, key: Callable, who: Callable, metric: str,
                 prior: dict[str, list[tuple[int, float]]], on_stop: Callable[[Stop], None]):
        super().__init__()
        self.race, self._key, self._who, self._metric, self._on_stop = race, key, who, metric, on_stop
        for tid, curve in prior.items():
            variant, seed = who(tid)
            for epoch, value in curve:
                for stop in race.add(variant, seed, epoch, value):
                    on_stop(stop)

    def __getstate__(self) -> dict:
        # Tune pickles its scheduler into its experiment state (for Tuner.restore, which ablate never
        # uses: a resume rebuilds the race from the records); the driver's callbacks stay out
        return {k: v for k, v in self.__dict__.items() if k not in ("_key", "_who", "_on_stop")}

    def on_trial_result(self, tune_controller, trial, result):
        if TIME_ATTR not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        variant, seed = self._who(self._key(trial))
        for stop in self.race.add(variant, seed, int(result[TIME_ATTR]), result[self._metric]):
            self._on_stop(stop)
        if variant != self.race.baseline and self.race.is_stopped(variant):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def choose_trial_to_run(self, tune_controller):
        for trial in list(tune_controller.get_trials()):
            if trial.status != RayTrial.PENDING:
                continue
            if self.race.is_stopped(self._who(self._key(trial))[0]):
                tune_controller.stop_trial(trial)  # never started: recorded as pruned at epoch 0
                continue
            return trial
        return super().choose_trial_to_run(tune_controller)  # a paused one, if any

    def debug_string(self) -> str:
        return f"Using paired racing: {len(self.race.stopped)} variants stopped"


def build_scheduler(s: Scheduler, *, max_t: int, key: Callable, protected: set[str],
                    prior: dict[str, list[tuple[int, float]]], who: Callable | None = None,
                    variants: list[int] | None = None, decision: Decision | None = None, seeds: int = 1,
                    stopped: dict[int, Stop] | None = None, on_stop: Callable[[Stop], None] | None = None,
                    higher_is_better: bool = True) -> tuple[TrialScheduler | None, str]:
    """The study's scheduler and a one-line description of every parameter it runs with.

    ``who`` (ablate trial id -> (variant, seed)) is needed by the race and by ASHA's ``pairing: seed``;
    ``variants``, ``decision``, ``seeds`` (the most seeds a variant may get), ``stopped`` and ``on_stop``
    by the race.
    """
    if s.name == "none":
        return None, "scheduler: none (every trial runs all its epochs)"
    if s.name == "race":
        decision = decision or Decision()
        race = Race(variants=sorted(variants or []), margin=decision.margin, alpha=1 - decision.confidence,
                    correction=decision.correction, grace_period=s.grace_period, max_t=max_t,
                    reduction_factor=s.reduction_factor,
                    min_seeds=s.min_seeds, max_seeds=max(seeds, s.min_seeds), higher_is_better=higher_is_better,
                    stopped=dict(stopped or {}))
        echo = describe(race)
        if seeds < s.min_seeds:
            echo += (f" -- with {seeds} seed(s) per variant the race never judges (it needs min_seeds="
                     f"{s.min_seeds}): every trial runs to the end")
        return StudyRace(race, key=key, who=who, metric=s.metric, prior=prior, on_stop=on_stop or (lambda _: None)), echo
    params = {"time_attr": TIME_ATTR, "metric": s.metric, "mode": s.mode, "max_t": max_t,
              "grace_period": s.grace_period, "reduction_factor": s.reduction_factor, "brackets": 1,
              "stop_last_trials": True}
    group = (lambda tid: who(tid)[1]) if s.pairing == "seed" else None
    scheduler = StudyASHA(key=key, protected=protected if s.protect_baseline else set(), prior=prior, group=group,
                          **params)
    echo = " ".join(f"{k}={v}" for k, v in params.items())
    return scheduler, f"scheduler: ASHA {echo} pairing={s.pairing} protect_baseline={s.protect_baseline}"
