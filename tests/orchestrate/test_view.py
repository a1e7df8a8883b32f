"""The live counts add up to the trials planned, also in the moment between a trial's end and Ray's next status."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from ablate.orchestrate.view import View
from ablate.results.store import ResultsStore


def test_a_trial_recorded_as_ended_is_not_counted_running_too(tmp_path):
    store = ResultsStore(tmp_path / "s")
    for tid, status in (("a", "completed"), ("b", "running"), ("c", "running")):
        store.upsert_trial(tid, status=status, variant_name=tid, seed=0)
    view = View(Console(file=open(tmp_path / "log", "w")), store, ["a", "b", "c"], metric="mAP", mode="max",
                epochs=2, total=3)
    view.update([SimpleNamespace(status="RUNNING") for _ in range(3)])  # Ray has not yet seen "a" end
    assert view.counts() == {"completed": 1, "pruned": 0, "failed": 0, "running": 2, "pending": 0}
    store.upsert_trial("b", status="completed")
    assert view.counts()["running"] == 1 and sum(view.counts().values()) == 3
