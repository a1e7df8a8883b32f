"""What ablate writes to MLflow and reads back: tag names, the study's parent run, the client's patience.

The writer (orchestrate/mlflow_runs.py) and the readers (results/mlflow_source.py, the
report's run links) all import this, so a study's runs are found by one rule.
Nothing here imports MLflow at import time: functions take a ``MlflowClient`` (``client`` makes one).
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

ROLE, STUDY, TRIAL, LOGGED = "ablate.role", "ablate.study", "ablate.trial_id", "ablate.epochs_logged"
VARIANT = "ablate.variant"  # a variant run's name: study run -> variant runs -> trial runs (one per seed)
# MLflow 3's UI opens an experiment without this tag on its GenAI overview (traces); ablate's are training runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
DECISION = "ablate.decision"  # the parent run's: results/store.py's decision.json, for a report from MLflow alone
PARAMS = "ablate.params"  # "pending" from a child run's creation until its last batch of params says how many

# MLflow's HTTP client retries a refused connection 7 times with exponential backoff (about
# 4 minutes) and waits 120 s for an answer; the driver instead gives up within seconds and
# keeps the records for later (mlflow_mirror.py).  Ending a run on a server also fetches the run
# again to print its URL: one request and two lines per trial, off.  A value the user set wins.
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def error_reason(error: BaseException) -> str:
    """The gist of a failed MLflow call: ``[Errno 111] Connection refused`` rather than its whole retry story."""
    text = " ".join(str(error).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0).strip() if errno else f"{type(error).__name__}: {text[:160]}"


def bound_http_retries() -> None:
    """Apply CLIENT_ENV in this process, where the user has not set the variable (MLflow reads it per request)."""
    for name, value in CLIENT_ENV.items():
        os.environ.setdefault(name, value)


def study_run(client, experiment_id: str, study: str):
    """``study``'s parent run in the experiment (an ``mlflow.entities.Run``), or None when it has none yet."""
    parents = client.search_runs([experiment_id], f"tags.`{STUDY}` = '{study}' and tags.`{ROLE}` = 'study'",
                                 max_results=1)
    return parents[0] if parents else None


def study_runs(client, experiment_id: str, study: str, role: str) -> list:
    """The study's runs of one role (``variant`` or ``trial``), found by tags whichever run is their parent."""
    return client.search_runs([experiment_id], f"tags.`{STUDY}` = '{study}' and tags.`{ROLE}` = '{role}'",
                              max_results=50_000)


def client(uri: str | None):
    """A ``MlflowClient`` for ``uri`` (None: MLFLOW_TRACKING_URI or MLflow's default ``./mlflow.db``).

    Opening a sqlite store creates or migrates its tables, and two processes doing that at once
    (two studies started together in one folder) break it: one fails ("Online migration expected to
    match one row") and leaves half-made tables.  So the opening is serialised by an exclusive lock
    on ``<db>.lock`` beside the file; the store's later writes are sqlite's own business (its lock,
    and ablate's retry of a failed write, mlflow_mirror.py).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    resolved = uri or mlflow.get_tracking_uri()
    path = resolved.removeprefix("sqlite:///") if resolved.startswith("sqlite:///") else None
    if path is None or path == ":memory:":
        return MlflowClient(tracking_uri=uri)
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=resolved)
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
