"""MLflow as a copy of the Parquet store, kept level with it whenever MLflow can be reached.

``results/<study>/`` (trials.parquet, epochs.parquet) is the record; MLflow gets a copy,
trial by trial, through ``Mirror.send``: it brings one trial's MLflow run level with the
store (created with its params, tags and config.yaml; every recorded epoch logged once;
its ending set).  A live event and a replay after an outage are the same call, so a
replay writes what the live run would have written, and writes nothing twice (see
mlflow_runs.py for how each write is made idempotent).

When MLflow cannot be reached (a stopped server, a refused connection, a locked or
missing sqlite file) the study goes on: the first failure is said once on the console,
the trial stays in ``results/<study>/mlflow_pending.json`` (with where its records go),
and for ``RETRY_S`` seconds no MLflow call is tried (twice as long after each failed
retry, up to ``MAX_RETRY_S``), so training hardly waits on it (a failed call gives up
within seconds: mlflow_runs.py bounds MLflow's own HTTP retries).  The first call that
succeeds after that says MLflow is back and sends the pending trials (at most
``DRAIN_S`` seconds of them per event).  What is still pending when the study ends is
sent by ``ablate sync STUDY`` or by the next ``ablate run`` of the study, before any
trial starts.  The Recorder sends a trial's records before it writes them to the Parquet
files, so what those files hold was sent or is marked (a driver killed in between leaves
the trial's status.json, from which the next run records and sends them).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ablate.atomic import atomic_path
from ablate.mlflow_tags import error_reason
from ablate.orchestrate.mlflow_runs import WHERE, Tracker, flatten
from ablate.orchestrate.terminate import TERM
from ablate.results.store import ResultsStore
from ablate.status import FINAL

PENDING = "mlflow_pending.json"
RETRY_S = 30.0  # after a failure, no MLflow call for this long
MAX_RETRY_S = 300.0  # ... doubled after each failed retry, up to this
DRAIN_S = 5.0  # once MLflow is back, at most this long sending pending trials per event


def outage_errors() -> tuple[type[BaseException], ...]:
    """What a tracking store that cannot be reached raises (MLflow wraps most HTTP errors in MlflowException)."""
    import requests
    import urllib3
    from mlflow.exceptions import MlflowException

    errors: tuple[type[BaseException], ...] = (MlflowException, requests.RequestException,
                                               urllib3.exceptions.HTTPError, OSError)
    try:
        import sqlalchemy.exc

        errors += (sqlalchemy.exc.OperationalError,)  # a locked or vanished sqlite store
    except ImportError:  # mlflow-skinny: no SQL stores
        pass
    return errors


def read_pending(folder: Path) -> dict:
    """The study folder's pending file ({} when nothing is pending)."""
    try:
        return json.loads((Path(folder) / PENDING).read_text())
    except (OSError, ValueError):
        return {}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Mirror:
    """Sends a study's records from its store to MLflow, tolerating outages.

    Args:
        store: the study's Parquet tables (the record).
        tracker: the study's MLflow runs.
        note: prints one console line (an outage, MLflow back).
    """

    def __init__(self, store: ResultsStore, tracker: Tracker, *, note: Callable[[str], None] = _stderr):
        self.store, self.tracker, self.note = store, tracker, note
        self.path = store.folder / PENDING
        saved = read_pending(store.folder)
        self.pending: set[str] = set(saved.get("trials", []))
        self.finished: bool = bool(saved.get("finished"))  # the parent run's FINISHED not yet sent
        self.down_since: float | None = None  # the last failure; no call is tried for `wait_s` after it
        self.wait_s = RETRY_S
        self.noted = False
        self.errors = outage_errors()

    # ------------------------------------------------------------------ the pending file
    def _save(self) -> None:
        if not self.pending and not self.finished:
            self.path.unlink(missing_ok=True)
            return
        t = self.tracker
        data = {"study": t.study, "tracking_uri": t.uri, "experiment": t.experiment, "parent_tags": t.tags,
                "finished": self.finished, "trials": sorted(self.pending)}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, indent=1))

    def _mark(self, tid: str) -> None:
        if tid not in self.pending:
            self.pending.add(tid)
            self._save()

    def _clear(self, tid: str) -> None:
        if tid in self.pending:
            self.pending.discard(tid)
            self._save()

    # ------------------------------------------------------------------ sending
    def _try(self, call: Callable[[], None], *, force: bool = False) -> bool:
        """Run ``call`` unless MLflow failed less than RETRY_S ago; False if it was skipped or failed."""
        if not force and self.down_since is not None and time.time() - self.down_since < self.wait_s:
            return False
        try:
            call()
        except self.errors as e:
            self.tracker.invalidate()  # a write whose answer was lost is read back, not repeated
            self.wait_s = RETRY_S if self.down_since is None else min(MAX_RETRY_S, 2 * self.wait_s)
            self.down_since = time.time()
            if not self.noted:
                self.noted = True
                root = self.store.folder.parent
                again = f"ablate sync {self.tracker.study}" + ("" if root == Path("results") else f" --results {root}")
                self.note(f"MLflow at {self.tracker.uri} unreachable ({error_reason(e)}): trials go "
                          f"on, records kept in {self.store.folder}/; they are sent when it is back: `{again}` "
                          "or the next `ablate run` of the study")
            return False
        if self.down_since is not None:
            self.down_since, self.noted, self.wait_s = None, False, RETRY_S
            self.note(f"MLflow at {self.tracker.uri} is back: sending the {len(self.pending)} pending trial(s)")
        return True

    def _send(self, tid: str, config: dict | None) -> None:
        """Bring one trial's MLflow run level with its rows in the store."""
        t, row = self.tracker, self.store.trials[tid]
        if t.prepared(tid):
            run_id = t.children[tid]
        else:
            config = config if config is not None else json.loads(row.get("config", "{}"))
            levels = {k: str(v) for k, v in row.items() if k.startswith("factor.")}
            name, seed = str(row.get("variant_name")), str(row.get("seed"))
            run_id = t.trial_run(
                tid, variant=name, name=f"{name} seed={seed}", config=config, start_time=row.get("started_at"),
                tags={"variant": str(row.get("variant")), "variant_name": name, "seed": seed,
                      "design": str(row.get("design")), "status": "running"},
                params={"variant": name, "seed": seed, **levels, **flatten(config)})
        if row.get("mlflow_run_id") != run_id:
            self.store.upsert_trial(tid, mlflow_run_id=run_id)
        where = {k: row[k] for k in WHERE if row.get(k)}
        if where:
            t.tag_trial(tid, where)
        history = self.store.history(tid)
        for epoch in history:
            t.log_epoch(tid, epoch)
        if row.get("status") in FINAL:
            t.end_trial(tid, status=row["status"], label=row.get("status_label", row["status"]),
                        final=history[-1] if history else {}, end_time=row.get("ended_at"))

    def send(self, tid: str, *, config: dict | None = None) -> bool:
        """Send what the store holds of trial ``tid`` (``config``: its resolved config, in schema order).

        False when MLflow could not be reached (the trial stays pending).  The caller flushes
        the store (the trial's ``mlflow_run_id`` may have been set).
        """
        if not self._try(lambda: self._send(tid, config)):
            self._mark(tid)
            return False
        self._clear(tid)
        if self.pending:  # left from an outage (or an earlier run): a few seconds' worth per event
            self.sync(budget_s=DRAIN_S)
        return True

    def sync(self, *, force: bool = False, budget_s: float | None = None) -> int:
        """Send the pending trials, then the parent run's ending; returns how many trials are still pending.

        ``force`` tries even within RETRY_S of a failure; ``budget_s`` stops after that long, and a
        SIGTERM (terminate.py) after the trial being sent.
        """
        began = time.time()
        for tid in sorted(self.pending):
            if tid not in self.store.trials:  # not recorded (a --restart discarded it)
                self._clear(tid)
                continue
            if TERM.requested or (budget_s is not None and time.time() - began > budget_s):
                break  # SIGTERM: out between two trials; what is left stays pending
            if not self._try(lambda tid=tid: self._send(tid, None), force=force):
                break
            self._clear(tid)
        if self.finished and not self.pending and self._try(lambda: self.tracker.end_study(True), force=force):
            self.finished = False
            self._save()
        return len(self.pending)

    def end_study(self, finished: bool) -> int:
        """The study's last word: one more try for what is pending, the parent FINISHED if every trial ended.

        A stopped study (Ctrl-C) leaves fast: no try within RETRY_S of a failure.  Returns how many
        trials are still not in MLflow.
        """
        if finished and not self.finished:
            self.finished = True
            self._save()
        return self.sync(force=finished)


def sync_study(name: str, *, results: Path, tracking_uri: str | None = None,
               note: Callable[[str], None] = _stderr) -> tuple[int, int]:
    """``ablate sync``: send a study's pending records to MLflow; returns (sent, still pending).

    Args:
        name: the study's name (``results/<name>/``), checked by the caller.
        tracking_uri: where to send; default: where the run was sending (kept in the pending file).
    """
    from ablate.orchestrate.lock import study_lock

    folder = Path(results) / name
    saved = read_pending(folder)
    if not saved:
        note(f"{name}: nothing to send: no records are pending ({folder / PENDING} is absent)")
        return 0, 0
    with study_lock(folder, name):  # not while `ablate run` of the study sends them itself
        store = ResultsStore(folder)
        tracker = Tracker(tracking_uri or saved.get("tracking_uri"), saved.get("experiment") or name, name,
                          saved.get("parent_tags", {}), reopen=False)
        mirror = Mirror(store, tracker, note=note)
        before = len(mirror.pending)
        left = mirror.sync(force=True)
        store.flush()  # MLflow run ids of runs created now
    if left:
        why = "" if TERM.requested else " (see above)"  # after SIGTERM, the CLI says why
        note(f"{name}: {before - left} trial(s) sent to MLflow at {tracker.uri}; {left} still pending{why}")
    else:
        note(f"{name}: {before} trial(s) sent to MLflow at {tracker.uri}; nothing pending")
    return before - left, left
