"""Replay recorded learning curves through the real schedulers: epochs spent against verdicts kept.

The bank (bench/curves/shapes_bank_{trials,epochs}.parquet) holds every epoch of every trial of
bench/curves/bank.yaml: 8 variants and the baseline, 6 seeds, run to the end with no scheduler.
Each replay takes a subset of the seeds and a launch order, and drives ablate's scheduler classes
(orchestrate/scheduler.py: the race, ASHA, ASHA paired by seed; or none) with the recorded results
as Ray Tune would: at most ``--workers`` trials at once, one epoch per tick, a STOP ends a trial,
pending trials are chosen by the scheduler.  What the replay kept is then judged by the report's own
code (results/aggregate.variant_summary, the race's stops as verdicts) and compared with the
verdicts on the full data of the same seeds.

    python bench/scheduler_replay.py                       # replay the committed bank
    python bench/scheduler_replay.py --record results/curve_bank   # after: ablate run bench/curves/bank.yaml

Printed per scheduler: epochs spent (median share of the grid), verdicts equal to the full data's,
variants wrongly stopped (stopped, yet not worse on the full data), and how often the best variant
was kept to the end.  Pure bookkeeping, no training: it runs in seconds.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from ablate.orchestrate.scheduler import StudyRace, build_scheduler  # noqa: E402
from ablate.results.aggregate import variant_summary  # noqa: E402
from ablate.study.schema import Decision, Scheduler  # noqa: E402

BANK = Path(__file__).parent / "curves"
TRIALS, EPOCHS = BANK / "shapes_bank_trials.parquet", BANK / "shapes_bank_epochs.parquet"
KEEP_TRIALS = ["trial_id", "variant", "variant_name", "seed", "status", "epochs", "config", "final_mAP", "final_AP50",
               "final_AP75", "final_APs", "final_APm", "final_APl", "peak_mem_mb", "imgs_per_s"]
KEEP_EPOCHS = ["trial_id", "epoch", "mAP", "AP50", "AP75", "APs", "APm", "APl"]
FINALS = [c for c in KEEP_TRIALS if c.startswith("final_")]


def record(folder: Path) -> None:
    trials, epochs = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")
    if not (trials.status == "completed").all():
        raise SystemExit(f"{folder}: every trial must have completed (a bank is the full data); "
                         f"{(trials.status != 'completed').sum()} did not")
    trials[KEEP_TRIALS].to_parquet(TRIALS, index=False)
    epochs[KEEP_EPOCHS].to_parquet(EPOCHS, index=False)
    print(f"wrote {TRIALS} ({TRIALS.stat().st_size // 1024} KiB) and {EPOCHS} ({EPOCHS.stat().st_size // 1024} KiB)")


@dataclass
class FakeTrial:  # what Ray Tune hands a scheduler: an id and a status
    trial_id: str
    status: str = "PENDING"


class Controller:
    """The part of Tune's controller a scheduler calls: the trials, and stopping one."""

    def __init__(self, trials: list[FakeTrial]):
        self.trials, self.stopped = trials, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        trial.status = "TERMINATED"
        self.stopped.append(trial.trial_id)


def simulate(scheduler, trials: pd.DataFrame, curves: dict, order: list[str], workers: int, max_t: int) -> dict:
    """Drive ``scheduler`` over the recorded curves; returns trial id -> epochs it ran."""
    fakes = [FakeTrial(t) for t in order]
    controller, reached = Controller(fakes), {t: 0 for t in order}
    for f in fakes:
        if scheduler is not None:
            scheduler.on_trial_add(controller, f)
    running: list[FakeTrial] = []
    while True:
        while len(running) < workers:
            nxt = scheduler.choose_trial_to_run(controller) if scheduler is not None else \
                next((f for f in fakes if f.status == "PENDING"), None)
            if nxt is None:
                break
            nxt.status = "RUNNING"
            running.append(nxt)
        if not running:
            return reached
        for f in list(running):
            reached[f.trial_id] += 1
            e = reached[f.trial_id]
            result = {"epoch": e, "mAP": curves[f.trial_id][e]}
            action = scheduler.on_trial_result(controller, f, result) if scheduler is not None else "CONTINUE"
            if e >= max_t or action == TrialScheduler.STOP:
                if scheduler is not None:
                    scheduler.on_trial_complete(controller, f, result)
                f.status = "TERMINATED"
                running.remove(f)


def kept(trials: pd.DataFrame, epochs: pd.DataFrame, reached: dict, max_t: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables a study with these stops would have recorded."""
    t = trials[trials.trial_id.isin(reached)].copy()
    t["epochs"] = t.trial_id.map(reached)
    t["status"] = ["completed" if n >= max_t else "pruned" for n in t["epochs"]]
    for c in FINALS:
        t.loc[t.status != "completed", c] = float("nan")
    e = epochs[epochs.trial_id.isin(reached)]
    e = e[e.epoch <= e.trial_id.map(reached)]
    return t, e


def verdicts(t: pd.DataFrame, e: pd.DataFrame, decision: Decision, stops=None) -> dict[int, str]:
    s = variant_summary(t, factors=[], epochs=e, margin=decision.margin, confidence=decision.confidence,
                        correction=decision.correction, stops=stops)
    return {int(v): str(x) for v, x in zip(s.variant, s.verdict) if v != 0}


def build(kind: str, trials: pd.DataFrame, ids: list[str], decision: Decision, max_t: int, grace: int, seeds: int,
          reduction: float = 3.0):
    who = {r.trial_id: (int(r.variant), int(r.seed)) for r in trials.itertuples() if r.trial_id in ids}
    variants = sorted({v for v, _ in who.values() if v != 0})
    protected = {t for t, (v, _) in who.items() if v == 0}
    if kind == "none":
        return None
    if kind == "race":
        s = Scheduler(name="race", grace_period=grace, reduction_factor=reduction)
    else:
        s = Scheduler(name="asha", grace_period=grace, reduction_factor=reduction,
                      pairing="seed" if kind == "asha/seed" else "none")
    return build_scheduler(s, max_t=max_t, key=lambda f: f.trial_id, protected=protected, prior={}, who=who.__getitem__,
                           variants=variants, decision=decision, seeds=seeds)[0]


def launch(kind: str, t: pd.DataFrame, variants: list[int], rng: random.Random) -> list[str]:
    """ablate's launch order: the baseline first; for a race each variant's seeds together (variants in
    a shuffled order), else the rest shuffled."""
    base = list(t[t.variant == 0].sort_values("seed").trial_id)
    if kind.startswith("race"):
        order_v = [v for v in variants if v != 0]
        rng.shuffle(order_v)
        return base + [tid for v in order_v for tid in t[t.variant == v].sort_values("seed").trial_id]
    rest = [tid for tid in t.trial_id if tid not in base]
    rng.shuffle(rest)
    return base + rest


def replay(kind: str, trials: pd.DataFrame, epochs: pd.DataFrame, curves: dict, subset: tuple, spare: list,
           variants: list[int], rng: random.Random, decision: Decision, workers: int, max_t: int, grace: int,
           max_seeds: int | None, reduction: float = 3.0) -> tuple[dict, dict, dict | None]:
    """One replay; returns (trial id -> epochs run, variant -> verdict, the race's stops or None).

    ``max_seeds`` (race only): adaptive seeds as ``ablate run`` adds them, one round at a time, the next
    seeds drawn from ``spare`` (the bank's seeds outside ``subset``), the baseline given each too.
    """
    seeds = {v: list(subset) for v in variants}
    reached: dict[str, int] = {}
    stops = None
    while True:
        t = trials[[s in seeds[v] for v, s in zip(trials.variant, trials.seed)]]
        todo = t[~t.trial_id.isin(reached)]
        ids = list(t.trial_id)
        scheduler = build(kind.split("+")[0], trials, ids, decision, max_t, grace, max_seeds or len(subset), reduction)
        if isinstance(scheduler, StudyRace):  # what a resumed driver does: the race rebuilt from the records
            for tid, n in reached.items():
                v, seed = scheduler._who(tid)
                for e in range(1, n + 1):
                    scheduler.race.add(v, seed, e, curves[tid][e])
            scheduler.race.stopped.update(stops or {})
        reached.update(simulate(scheduler, todo, curves, launch(kind, todo, variants, rng), workers, max_t))
        stops = scheduler.race.stopped if isinstance(scheduler, StudyRace) else None
        kt, ke = kept(t, epochs, reached, max_t)
        got = verdicts(kt, ke, decision, stops)
        if not max_seeds:
            return reached, got, stops
        more = [v for v in got if got[v] == "unresolved" and len(seeds[v]) < max_seeds]
        if not more:
            return reached, got, stops
        for v in more:
            nxt = spare[len(seeds[v]) - len(subset)]
            seeds[v].append(nxt)
            if nxt not in seeds[0]:
                seeds[0].append(nxt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", type=Path, help="a study's results folder (every trial completed) -> the bank")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per replay, drawn from the bank's (default 3)")
    ap.add_argument("--orders", type=int, default=3, help="launch orders per seed subset (default 3)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 8], help="trials at once (default: 2 8)")
    ap.add_argument("--grace", type=int, default=1, help="grace_period of every scheduler (default 1)")
    ap.add_argument("--reduction", type=float, default=3.0, help="reduction_factor of every scheduler (default 3)")
    ap.add_argument("--margin", type=float, default=0.01, help="decision.margin (default 0.01 mAP)")
    ap.add_argument("--kinds", nargs="+", help="only these schedulers (none asha asha/seed race race+seeds)")
    args = ap.parse_args()
    if args.record:
        record(args.record)
        return
    trials, epochs = pd.read_parquet(TRIALS), pd.read_parquet(EPOCHS)
    decision = Decision(margin=args.margin)
    max_t = int(epochs.epoch.max())
    curves = {t: dict(zip(g.epoch, g.mAP)) for t, g in epochs.groupby("trial_id")}
    bank_seeds = sorted(int(s) for s in trials.seed.unique())
    variants = sorted(int(v) for v in trials.variant.unique())
    names = trials.drop_duplicates("variant").set_index("variant").variant_name
    truth = verdicts(trials, epochs, decision)  # every seed of the bank, to the end
    finals = trials.groupby("variant").final_mAP.mean()
    best = max(truth, key=lambda v: finals[v])
    print(f"bank: {len(variants) - 1} variants + baseline x {len(bank_seeds)} seeds x {max_t} epochs; "
          f"verdicts on all {len(bank_seeds)} seeds (margin {decision.margin:g}, Holm):")
    by_epoch = epochs.merge(trials[["trial_id", "variant"]]).pivot_table(index="variant", columns="epoch", values="mAP")
    for v in variants:
        curve = " ".join(f"{x:.3f}" for x in by_epoch.loc[v])
        print(f"  {names[v]:<26} mean mAP by epoch {curve}  {truth.get(v, '')}")
    subsets = list(itertools.combinations(bank_seeds, args.seeds))
    kinds = ["none", "asha", "asha/seed", "race"] + (["race+seeds"] if args.seeds < len(bank_seeds) else [])
    kinds = [k for k in kinds if not args.kinds or k in args.kinds]
    rows, stopped_at = [], {}
    for workers in args.workers:
        for kind in kinds:
            spent, same, same6, total, stopped, wrong, kept_best = [], 0, 0, 0, 0, 0, 0
            for subset, k in itertools.product(subsets, range(args.orders)):
                spare = [s for s in bank_seeds if s not in subset]
                full = verdicts(trials[trials.seed.isin(subset)], epochs, decision)
                reached, got, stops = replay(kind, trials, epochs, curves, subset, spare, variants, random.Random(k),
                                             decision, workers, max_t, args.grace,
                                             len(bank_seeds) if kind == "race+seeds" else None, args.reduction)
                grid = (len(bank_seeds) if kind == "race+seeds" else len(subset)) * len(variants) * max_t
                spent.append(sum(reached.values()) / grid)
                status = {}
                for tid, n in reached.items():
                    status.setdefault(trials.set_index("trial_id").variant[tid], []).append(n >= max_t)
                gone = {v for v in truth if (stops and v in stops) or not any(status.get(v, []))}
                same += sum(got[v] == full[v] for v in truth)
                same6 += sum(got[v] == truth[v] for v in truth)
                total += len(truth)
                stopped += len(gone)
                wrong += sum(truth[v] != "worse" for v in gone)
                kept_best += best not in gone and all(status.get(best, [False]))
                for v, stop in (stops or {}).items():
                    stopped_at.setdefault((workers, kind, names[v]), []).append(stop.epoch)
            n = len(spent)
            rows.append({"workers": workers, "scheduler": kind, "replays": n,
                         "epochs (median, share of grid)": f"{statistics.median(spent):.0%}",
                         "verdicts = same seeds' full data": f"{same / total:.1%}",
                         f"= all {len(bank_seeds)} seeds'": f"{same6 / total:.1%}",
                         "variants stopped": stopped, "of which not worse": wrong,
                         "best variant kept": f"{kept_best}/{n}"})
    print(f"\nreplays: {len(subsets)} subsets of {args.seeds} of the {len(bank_seeds)} seeds x {args.orders} launch "
          f"orders; grace_period {args.grace}, reduction_factor {args.reduction:g}; 'not worse' and 'best' by all {len(bank_seeds)} "
          f"seeds' verdicts (best: {names[best]}); race+seeds: decision.max_seeds {len(bank_seeds)}, its grid "
          f"{len(bank_seeds)} seeds")
    print(pd.DataFrame(rows).to_string(index=False))
    print("\nrace stops (variant: stop epochs over the replays, workers 2):")
    for (workers, kind, name), at in sorted(stopped_at.items()):
        if workers == args.workers[0]:
            print(f"  {kind:<10} {name:<26} stopped in {len(at)} replays, at epoch(s) {sorted(set(at))}")


if __name__ == "__main__":
    main()
