"""The results store of a study: two Parquet tables, rewritten atomically as trials report.

``results/<study>/trials.parquet``: one row per trial (id, variant, seed, factors,
status, reason, epochs run, final and best metrics, memory, throughput, wall time,
MLflow run id).  ``results/<study>/epochs.parquet``: one row per trial and epoch.
``results/<study>/decision.json``: how the report judges the variants (the study's
``decision`` section and ``scheduler.metric``), written by each ``ablate run``.
``results/<study>/race.json``: the racing scheduler's stops (variant -> the look that stopped it) and
``results/<study>/seeds.json``: the seeds added to unresolved variants (``decision.max_seeds``); both
written before they act, so a killed driver resumes to the same trials.

Only the driver of ``ablate run`` writes (one writer, no lock contention); a reader
may open either file at any time and always sees a whole table, because each write
goes to a temporary file that replaces the old one.  Rows are keyed (trial id; trial
id and epoch), so writing a row twice never duplicates it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ablate.atomic import atomic_path
from ablate.errors import DISK_ERRNOS, StorageError
from ablate.metrics import COCO_METRICS, HIGHER_IS_BETTER, METRICS

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
DECISION = "decision.json"
RACE = "race.json"
SEEDS = "seeds.json"
DECISION_DEFAULTS = {"metric": "mAP", "margin": 0.01, "confidence": 0.95, "correction": "holm"}


def write_decision(folder: Path, decision: dict) -> None:
    """``decision.json``: what the verdicts of this study are judged on (metric, margin, confidence, correction)."""
    path = Path(folder) / DECISION
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**DECISION_DEFAULTS, **decision}, indent=1))


def read_decision(folder: Path) -> dict:
    """The study's ``decision.json``, or the defaults for a folder written before there was one."""
    path = Path(folder) / DECISION
    found = json.loads(path.read_text()) if path.is_file() else {}
    return {**DECISION_DEFAULTS, **{k: v for k, v in found.items() if k in DECISION_DEFAULTS}}

DATA_SUMMARY = "data.json"  # the baseline's dataset as `ablate data --json` gives it (data/summary.py)


def write_data_summary(folder: Path, summary: dict) -> None:
    path = Path(folder) / DATA_SUMMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))


def read_data_summary(folder: Path) -> dict | None:
    path = Path(folder) / DATA_SUMMARY
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_state(folder: Path, name: str, data: dict) -> None:
    """A driver's decision (``RACE``, ``SEEDS``) as JSON, replaced atomically."""
    with atomic_path(Path(folder) / name) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


def read_state(folder: Path, name: str) -> dict:
    """What ``write_state`` wrote, or {} when nothing was."""
    path = Path(folder) / name
    return json.loads(path.read_text()) if path.is_file() else {}


def read_frame(path: Path) -> pd.DataFrame:
    """A Parquet file as a DataFrame, read in this thread only.

    pyarrow's threads create and delete Python thread states as they convert columns, taking CPython's
    runtime lock. The driver reads the records while Ray starts its processes in another thread, and Ray
    forks with a ``preexec_fn``. A fork at that moment leaves the child waiting on the lock for good, on
    CPython without the gh-112275 fix (Debian 12's 3.11.2, which CI uses, and the 3.11.7 here): Ray's start
    and the study hang (a fresh clone's CI run: tests/orchestrate/test_run.py, 2026-12-07). With threads, 2 runs in 4 of 600 such
    forks hung here; with none, none (tests/results/test_store_threads.py).
    """
    return pd.read_parquet(path, use_threads=False, to_pandas_kwargs={"use_threads": False})


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with atomic_path(path) as tmp:  # a full disk, Ctrl-C: the old file stays whole, no partial temp file stays
            # one thread, as read_frame (pandas would convert a long table in a pool of Python threads)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False, nthreads=1), tmp)
    except OSError as e:
        if e.errno in DISK_ERRNOS:
            raise StorageError(f"cannot write {path}: {os.strerror(e.errno)}; free space there (or pass --results "
                               "a folder on another disk), then run the same command again to resume "
                               "(what is recorded is kept)") from e
        raise


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files of writes that never finished (a writer killed by kill -9): never data, safe to delete."""
    return [p for name in (TRIALS, EPOCHS, RACE, SEEDS) for p in Path(folder).glob(f".{name}.*.tmp")]


def summarise(history: list[dict]) -> dict:
    """Final and best value of each metric, peak memory and median throughput of a trial's epochs."""
    if not history:
        return {}
    out = {f"final_{k}": history[-1].get(k) for k in METRICS if k in history[-1]}
    for k in COCO_METRICS:
        values = [row[k] for row in history if row.get(k) is not None and row[k] == row[k]]
        if values:
            out[f"best_{k}"] = max(values) if k in HIGHER_IS_BETTER else min(values)
    out["peak_mem_mb"] = max(row.get("peak_mem_mb", 0.0) for row in history)
    out["imgs_per_s"] = float(pd.Series([row.get("imgs_per_s") for row in history]).median())
    out["epochs_time_s"] = float(sum(row.get("epoch_time_s", 0.0) for row in history))  # all its epochs, in s
    return out


class ResultsStore:
    """The two tables of one study folder, held in memory and flushed atomically.

    Args:
        folder: ``results/<study>``; created when missing.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.trials: dict[str, dict] = {}
        self.epochs: dict[str, dict[int, dict]] = {}  # trial id -> epoch -> row
        # the columns read, with their types: one no row has a value in (APl on a set without large objects)
        # is written again as it was, so a rerun does not change the files' schema
        self._read: dict[str, pd.Series] = {}
        if (self.folder / TRIALS).exists():
            frame = read_frame(self.folder / TRIALS)
            self._read[TRIALS] = frame.dtypes
            for row in frame.to_dict("records"):
                self.trials[row["trial_id"]] = {k: v for k, v in row.items() if not _missing(v)}
        if (self.folder / EPOCHS).exists():
            frame = read_frame(self.folder / EPOCHS)
            self._read[EPOCHS] = frame.dtypes
            for row in frame.to_dict("records"):
                self.epochs.setdefault(row["trial_id"], {})[int(row["epoch"])] = {
                    k: v for k, v in row.items() if not _missing(v)}

    def history(self, trial_id: str) -> list[dict]:
        """The epoch rows of one trial, in epoch order."""
        rows = self.epochs.get(trial_id, {})
        return [rows[e] for e in sorted(rows)]

    def add_epoch(self, trial_id: str, row: dict) -> bool:
        """Record one epoch's metrics; False (and nothing changes) if that epoch is already recorded."""
        rows, epoch = self.epochs.setdefault(trial_id, {}), int(row["epoch"])
        if epoch in rows:
            return False
        rows[epoch] = {"trial_id": trial_id, **row, "epoch": epoch}
        return True

    def upsert_trial(self, trial_id: str, **fields) -> dict:
        """Create or update a trial's row; its metric summary is recomputed from its epochs."""
        row = self.trials.setdefault(trial_id, {"trial_id": trial_id})
        row.update({k: v for k, v in fields.items() if v is not None})
        history = self.history(trial_id)
        row["epochs"] = len(history)
        row.update(summarise(history))
        return row

    def status(self, trial_id: str) -> str | None:
        return self.trials.get(trial_id, {}).get("status")

    def flush(self) -> None:
        """Write both tables (atomically, each file whole)."""
        write_frame(self._frame(TRIALS, list(self.trials.values())), self.folder / TRIALS)
        epochs = self._frame(EPOCHS, [row for rows in self.epochs.values() for row in rows.values()])
        if not epochs.empty:
            epochs = epochs.sort_values(["trial_id", "epoch"], kind="stable")
        write_frame(epochs, self.folder / EPOCHS)

    def _frame(self, name: str, rows: list[dict]) -> pd.DataFrame:
        """The rows as a table, with every column the file had when it was read (in its place and type)."""
        frame = pd.DataFrame(rows)
        read = self._read.get(name)
        if read is None or frame.empty:
            return frame
        gone = read.index.difference(frame.columns)  # no row has a value: written as read
        frame = frame.reindex(columns=list(dict.fromkeys([*read.index, *frame.columns])))
        for column in gone:
            frame[column] = frame[column].astype(read[column])
        return frame


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts
        return False
