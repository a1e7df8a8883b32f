"""The live view of a running study: counts, best so far, ETA, and a line per ended trial."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from ablate.results.store import ResultsStore


class View:
    """Trials done / running / pruned / failed / pending, the best so far and an ETA.

    On a terminal the summary line is redrawn in place (rich ``Live``); elsewhere
    (CI logs, pipes) only the ended-trial lines are printed, one per trial.

    Args:
        console: where to draw (stderr).
        store: the study's results, read for the counts and the best trial.
        todo: ablate trial ids this session runs (the rest were recorded before).
        metric, mode: what "best" means.
        epochs: planned epochs of one trial (for the ETA).
    """

    def __init__(self, console: Console, store: ResultsStore, todo: list[str], *, metric: str, mode: str,
                 epochs: int, total: int):
        self.console, self.store, self.todo = console, store, todo
        self.metric, self.mode, self.epochs, self.total = metric, mode, epochs, total
        self.started = time.time()
        self.live: Live | None = None
        self.printed = 0
        self.running = 0
        self.parallel = 1  # the most trials seen running at once: what the ETA divides by

    def __enter__(self) -> View:
        if self.console.is_terminal:
            self.live = Live(self.summary(), console=self.console, refresh_per_second=2, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def note(self, line: str) -> None:
        self.console.print(f"[yellow]{escape(line)}[/]", highlight=False)

    def ended(self, events: list[tuple[str, str, str]]) -> None:
        for tid, label, name in events[self.printed:]:
            style = "green" if label == "completed" else "yellow" if label.startswith("pruned") else "red"
            value = self.store.trials.get(tid, {}).get(f"final_{self.metric}")
            score = f" {self.metric} {value:.3f}" if isinstance(value, float) else ""
            tail = "" if self.live is not None else f"  [dim]({escape(str(self.summary()))})[/]"  # logs get the counts too
            self.console.print(f"[{style}]{escape(label)}[/] {tid} {escape(name)} seed "
                               f"{self.store.trials.get(tid, {}).get('seed', '?')}{score}{tail}", highlight=False)
        self.printed = len(events)

    def update(self, ray_trials) -> None:
        self.running = sum(1 for t in ray_trials if t.status == "RUNNING")
        self.parallel = max(self.parallel, self.running)
        if self.live is not None:
            self.live.update(self.summary())

    def counts(self) -> dict[str, int]:
        statuses = [row.get("status") for row in self.store.trials.values()]
        counts = {s: statuses.count(s) for s in ("completed", "pruned", "failed")}
        # Ray still calls a trial RUNNING for a moment after its record says how it ended
        recorded = sum(1 for t in self.todo if self.store.trials.get(t, {}).get("status") == "running")
        counts["running"] = min(self.running, recorded)
        counts["pending"] = max(0, self.total - sum(counts.values()))
        return counts

    def best(self) -> tuple[str, float] | None:
        rows = [r for r in self.store.trials.values() if r.get("status") == "completed"
                and isinstance(r.get(f"final_{self.metric}"), float)]
        if not rows:
            return None
        pick = max if self.mode == "max" else min
        row = pick(rows, key=lambda r: r[f"final_{self.metric}"])
        return f"{row.get('variant_name')} seed {row.get('seed')}", row[f"final_{self.metric}"]

    def eta_s(self) -> float | None:
        times = [row["epoch_time_s"] for rows in self.store.epochs.values() for row in rows.values()
                 if "epoch_time_s" in row]
        if not times or not self.running:
            return None
        c = self.counts()
        done_running = sum(len(self.store.history(t)) for t in self.todo
                           if self.store.trials.get(t, {}).get("status") == "running")
        left = (c["pending"] + c["running"]) * self.epochs - done_running
        return max(0.0, left) * (sum(times) / len(times)) / self.parallel

    def summary(self) -> Text:
        c = self.counts()
        parts = [f"{c['completed']} done", f"{c['running']} running", f"{c['pruned']} pruned",
                 f"{c['failed']} failed", f"{c['pending']} pending"]
        best = self.best()
        if best:
            parts.append(f"best {self.metric} {best[1]:.3f} ({best[0]})")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA <= {eta / 60:.1f} min")
        parts.append(f"{(time.time() - self.started) / 60:.1f} min elapsed")
        return Text(" | ".join(parts))
