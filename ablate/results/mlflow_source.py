"""The results tables rebuilt from the MLflow tracking store alone (``ablate report --from-mlflow``).

For a user who can reach the tracking server but not the study folder: every number
the Parquet store holds was also logged to the study's child runs (metrics per epoch
with step = epoch, tags, ``factor.*`` params, ``config.yaml``), so the same two tables
come back from there, with the same columns the report reads.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import yaml

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one config.yaml per trial

from ablate.errors import DataError
from ablate.metrics import METRICS
from ablate.mlflow_tags import DECISION, TRIAL, bound_http_retries, error_reason, study_run, study_runs
from ablate.mlflow_tags import client as mlflow_client
from ablate.results.store import DECISION_DEFAULTS, summarise
from ablate.status import RUNNING
from ablate.status import parse as parse_status


def frames_from_mlflow(study: str, *, uri: str | None, experiment: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(trials, epochs, info) of a study as logged to MLflow; info holds the parent run and experiment ids.

    Raises:
        DataError: the experiment or the study's parent run is not in the store.
    """
    from mlflow.exceptions import MlflowException

    bound_http_retries()
    client = mlflow_client(uri)
    try:
        found = client.get_experiment_by_name(experiment or study)
    except MlflowException as e:
        raise DataError(f"cannot reach the MLflow tracking store {client.tracking_uri} ({error_reason(e)}); "
                        "start the server or give its URI (--tracking-uri, MLFLOW_TRACKING_URI, or the study "
                        "file), or drop --from-mlflow to build the report from results/") from e
    if found is None:
        raise DataError(f"MLflow store {client.tracking_uri} has no experiment '{experiment or study}'; "
                        "pass the study file (its tracking.uri / tracking.experiment) or set MLFLOW_TRACKING_URI")
    parent = study_run(client, found.experiment_id, study)
    if parent is None:
        raise DataError(f"MLflow experiment '{found.name}' in {client.tracking_uri} has no run of study '{study}'")
    runs = study_runs(client, found.experiment_id, study, "trial")
    order = json.loads(parent.data.tags.get("ablate.factors", "[]"))  # the study's factor order
    trials, epochs = [], []
    for run in runs:
        tags, params = run.data.tags, run.data.params
        tid = tags.get(TRIAL)
        if tid is None:
            continue
        history: dict[int, dict] = {}
        for name in METRICS:
            for m in client.get_metric_history(run.info.run_id, name):
                history.setdefault(int(m.step), {"epoch": int(m.step)})[name] = m.value
        rows = [history[e] for e in sorted(history)]
        epochs += [{"trial_id": tid, **row} for row in rows]
        ended, _, reason = parse_status(tags.get("status", RUNNING))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml", tmp)).read_text())
        except Exception:  # noqa: BLE001 -- an artifact store the reader cannot reach: the table lacks zoo columns
            config = None
        trials.append({
            "trial_id": tid, "study": study, "variant": int(tags.get("variant", -1)),
            "variant_name": tags.get("variant_name", run.info.run_name), "seed": int(tags.get("seed", 0)),
            "design": tags.get("design", ""), "mlflow_run_id": run.info.run_id,
            **{f"factor.{p}": params[f"factor.{p}"] for p in order if f"factor.{p}" in params},
            **{k: v for k, v in sorted(params.items()) if k.startswith("factor.") and k[7:] not in order},
            **({"config": json.dumps(config, sort_keys=True)} if config else {}),
            "status": ended, "reason": reason, "status_label": tags.get("status", RUNNING),
            "epochs": len(rows), **summarise(rows),
            "started_at": run.info.start_time / 1000 if run.info.start_time else None,
            "ended_at": run.info.end_time / 1000 if run.info.end_time else None,
        })
    info = {"experiment_id": found.experiment_id, "parent_run_id": parent.info.run_id,
            "tracking_uri": client.tracking_uri, "description": parent.data.tags.get("description", ""),
            "decision": {**DECISION_DEFAULTS, **{k: v for k, v in json.loads(parent.data.tags.get(DECISION, "{}")).items()
                                                 if k in DECISION_DEFAULTS}}}  # what the verdicts are judged on
    return pd.DataFrame(trials), pd.DataFrame(epochs), info
