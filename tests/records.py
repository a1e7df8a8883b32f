"""What a study left in MLflow, read back for the end-to-end tests (on sys.path through pyproject's pytest pythonpath)."""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient


def trial_runs(uri: str, study: str) -> dict[str, Run]:
    """Trial id -> its MLflow child run in the study's experiment, asserting no trial has two."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    out: dict[str, Run] = {}
    for run in client.search_runs([experiment.experiment_id], "tags.`ablate.role` = 'trial'", max_results=1000):
        tid = run.data.tags["ablate.trial_id"]
        assert tid not in out, f"two MLflow runs for trial {tid}"
        out[tid] = run
    return out


def steps(uri: str, run: Run, key: str = "mAP") -> list[tuple[int, float]]:
    """A run's metric history as sorted (step, value) pairs."""
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run.info.run_id, key))
