"""The paired racing rule: stop a variant (all its seeds) only when the evidence says it is worse.

A race looks at each variant against the baseline's *same* seeds at the *same* epoch.  A look is
one (variant, rung, number of pairs): the first time ``n >= min_seeds`` of the variant's seeds and
the baseline's same seeds have all reached a rung ``e`` (ASHA's milestones: ``grace_period x
reduction_factor^k``, below ``max_t``), a one-sided paired t-test of "the variant is at most
``margin`` worse at epoch ``e``" gives a p-value.  Its spread is the larger of the variant's own sd
of paired differences and the sd pooled over every variant's pairs at that epoch, on the pooled
degrees of freedom (Dunnett's many-to-one comparisons pool the same way; the larger of the two keeps
a variant whose own seeds disagree from borrowing the others' calm).  Error control:

- across repeated looks: Bonferroni over every look the race could make for a variant
  (``looks = rungs x (max_seeds - min_seeds + 1)``), so the variant's running minimum
  ``min(1, looks x p)`` is a valid p-value for the whole race (alpha spent evenly);
- across variants: Holm's step-down over the study's variants on those running p-values.  They
  only fall as data arrive, and Holm is monotone, so every variant stopped during the race is also
  rejected by Holm on the final running p-values: the chance of stopping any variant that is not
  worse by more than ``margin`` (at the epoch it was judged) is at most ``alpha``.

A variant is stopped when Holm rejects it *and* it is not catching up (its mean gap at the look is
no smaller than at the epoch before, on the same seeds: a slow starter that gains on the baseline
runs on) *and* it is not the leader (the best mean at that epoch, the baseline included).  The baseline
is never stopped.  ``Race`` is plain bookkeeping (numpy and scipy only); the Ray Tune scheduler
(orchestrate/scheduler.py) and the replay benchmark (bench/scheduler_replay.py) both drive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ablate.results.stats import adjust, p_worse_spread
from ablate.results.store import RACE, read_state, write_state
from ablate.study.expand import rungs


@dataclass(frozen=True)
class Stop:
    """Why a variant was stopped: the look that decided it."""

    variant: int
    epoch: int
    n: int  # pairs at the look
    delta: float  # mean paired difference (variant - baseline) at that epoch
    p: float  # its Holm-adjusted race p-value

    def reason(self, metric: str = "mAP", margin: float = 0.0) -> str:
        return (f"race: worse than the baseline by more than {margin:g} {metric} at epoch {self.epoch} "
                f"(Δ {self.delta:+.3f} over {self.n} seeds, adjusted p {self.p:.2g})")


@dataclass
class Race:
    """The racing rule's state for one study.

    Args:
        variants: every non-baseline variant index of the study (Holm's family; known up front).
        baseline: the baseline's variant index.
        margin: ``decision.margin``; alpha: ``1 - decision.confidence``; correction: ``decision.correction``.
        grace_period: the first rung; reduction_factor: the rungs' spacing (as ASHA's); max_t: the last
            epoch (no decision there).
        min_seeds: pairs a look needs; max_seeds: the most seeds a variant may get (the looks' count).
        higher_is_better: the metric's direction.
    """

    variants: list[int]
    baseline: int = 0
    margin: float = 0.01
    alpha: float = 0.05
    correction: str = "holm"
    grace_period: int = 1
    max_t: int = 1
    reduction_factor: float = 3.0
    min_seeds: int = 3
    max_seeds: int = 3
    higher_is_better: bool = True
    curves: dict[tuple[int, int], dict[int, float]] = field(default_factory=dict)  # (variant, seed) -> epoch -> value
    stopped: dict[int, Stop] = field(default_factory=dict)
    _looked: set[tuple[int, int, int]] = field(default_factory=set)  # (variant, epoch, n) already tested
    _best_p: dict[int, tuple[float, int, int, float]] = field(default_factory=dict)  # variant -> (p, epoch, n, Δ)

    @property
    def rungs(self) -> list[int]:
        """The epochs a variant is judged at: ``grace_period x reduction_factor^k`` below ``max_t``."""
        return rungs(self.grace_period, self.reduction_factor, self.max_t)

    @property
    def looks(self) -> int:
        return max(1, len(self.rungs)) * max(1, self.max_seeds - self.min_seeds + 1)

    def add(self, variant: int, seed: int, epoch: int, value: float | None) -> list[Stop]:
        """Record one result; returns the variants this result stopped (each once)."""
        if value is None or value != value:  # NaN: an evaluation that gave nothing
            return []
        self.curves.setdefault((variant, seed), {})[int(epoch)] = float(value)
        touched = self.variants if variant == self.baseline else [variant]
        for v in touched:
            self._look(v, int(epoch))
        return self._decide(int(epoch))

    def _pairs(self, v: int, epoch: int) -> dict[int, float]:
        """seed -> (variant - baseline) at ``epoch``, signed so that positive is better."""
        sign = 1.0 if self.higher_is_better else -1.0
        out = {}
        for (vi, seed), curve in self.curves.items():
            if vi != v or epoch not in curve:
                continue
            base = self.curves.get((self.baseline, seed), {})
            if epoch in base:
                out[seed] = sign * (curve[epoch] - base[epoch])
        return out

    def spread(self, epoch: int) -> tuple[float, int]:
        """(sd, degrees of freedom) of the paired differences at ``epoch``, pooled over the variants."""
        ss, dof = 0.0, 0
        for u in self.variants:
            d = np.array(list(self._pairs(u, epoch).values()))
            if len(d) >= 2:
                ss, dof = ss + (len(d) - 1) * float(np.var(d, ddof=1)), dof + len(d) - 1
        return (float(np.sqrt(ss / dof)), dof) if dof else (float("nan"), 0)

    def _look(self, v: int, epoch: int) -> None:
        if v in self.stopped or epoch not in self.rungs:
            return
        pairs = self._pairs(v, epoch)
        n = len(pairs)
        if n < self.min_seeds or (v, epoch, n) in self._looked:
            return
        self._looked.add((v, epoch, n))
        diffs = np.array([pairs[s] for s in sorted(pairs)])
        pooled, dof = self.spread(epoch)
        sd = max(float(np.std(diffs, ddof=1)), pooled)
        p = min(1.0, self.looks * p_worse_spread(diffs, self.margin, sd, dof))
        if v not in self._best_p or p < self._best_p[v][0]:
            self._best_p[v] = (p, epoch, n, float(diffs.mean()))

    def _decide(self, epoch: int) -> list[Stop]:
        order = list(self.variants)
        raw = [self._best_p[v][0] if v in self._best_p else 1.0 for v in order]
        adjusted = adjust(raw, self.correction)
        alpha = self.alpha
        new = []
        for v, p in zip(order, adjusted):
            if v in self.stopped or v not in self._best_p or not p < alpha:
                continue
            _, at, n, delta = self._best_p[v]
            if self._catching_up(v, at) or self._leads(v, at):
                continue
            sign = 1.0 if self.higher_is_better else -1.0
            self.stopped[v] = Stop(v, at, n, sign * delta, p)
            new.append(self.stopped[v])
        return new

    def _catching_up(self, v: int, epoch: int) -> bool:
        """The variant's mean gap at ``epoch`` is smaller than at the epoch before, on the same seeds."""
        now, before = self._pairs(v, epoch), self._pairs(v, epoch - 1)
        shared = sorted(now.keys() & before.keys())
        if not shared:
            return False
        return float(np.mean([now[s] for s in shared])) > float(np.mean([before[s] for s in shared]))

    def _leads(self, v: int, epoch: int) -> bool:
        """The variant has the best mean at ``epoch`` of the variants still racing, the baseline included."""
        sign = 1.0 if self.higher_is_better else -1.0
        means = {}
        for u in [self.baseline, *self.variants]:
            if u in self.stopped:
                continue
            values = [c[epoch] for (vi, _), c in self.curves.items() if vi == u and epoch in c]
            if values:
                means[u] = sign * float(np.mean(values))
        return bool(means) and max(means, key=means.get) == v

    def is_stopped(self, variant: int) -> bool:
        return variant in self.stopped


def describe(race: Race) -> str:
    """The one line ``ablate run`` prints for a race."""
    return (f"scheduler: race (paired by seed against the baseline) rungs={race.rungs} "
            f"max_t={race.max_t} min_seeds={race.min_seeds} margin={race.margin:g} alpha={race.alpha:g} "
            f"correction={race.correction} looks={race.looks}")


def race_stops(folder) -> dict[int, Stop]:
    """The stops an earlier run of the study recorded (``race.json``), by variant."""
    return {int(v): Stop(**row) for v, row in read_state(folder, RACE).get("stops", {}).items()}


def save_stops(folder, stops: dict[int, Stop]) -> None:
    """``race.json``: every stop so far, written before the stopped trials are told."""
    write_state(folder, RACE, {"stops": {str(v): s.__dict__ for v, s in sorted(stops.items())}})
