"""MLflow tracking of a study: one parent run, one nested child run per trial.

Only the driver of ``ablate run`` talks to MLflow (trials report to it through Ray
Tune), so the local sqlite store never sees two writers.  Every write is
idempotent, which is what lets a killed study resume without duplicates:

- the parent run is found again by its tags (``ablate.study``, ``ablate.role``);
- a child run is found again by ``ablate.trial_id`` under that parent;
- an epoch's metrics go out in one ``log_batch`` together with the tag
  ``ablate.epochs_logged`` (the epochs logged so far, one transaction), and an epoch
  in that tag is never logged again (a resumed trial may report epoch 3 before the
  driver catches up on epoch 2, so this is a set, not a high-water mark).
"""

from __future__ import annotations

import json
import time

import yaml
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from ablate.engine.metrics import METRICS

ROLE, STUDY, TRIAL, LOGGED = "ablate.role", "ablate.study", "ablate.trial_id", "ablate.epochs_logged"
PARAM_MAX = 6000  # MLflow's limit on a param value

# how a trial's ending maps to an MLflow run status
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}

COCO_LINES = (  # (metric, pycocotools' summary line)
    ("mAP", "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
    ("AP50", "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]"),
    ("AP75", "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]"),
    ("APs", "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]"),
    ("APm", "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]"),
    ("APl", "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"),
    ("AR100", "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
)


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists as JSON, values cut to MLflow's limit."""
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[path] = text[:PARAM_MAX]
    return out


def coco_text(row: dict) -> str:
    """The final metrics in pycocotools' summary layout (-1 where a number is undefined)."""
    def value(v):
        return -1.0 if v is None or v != v else v
    return "\n".join(f" {line} = {value(row.get(name)):.3f}" for name, line in COCO_LINES) + "\n"


class Tracker:
    """The MLflow side of one study.

    Args:
        uri: tracking URI; None: ``MLFLOW_TRACKING_URI`` or MLflow's local default.
        experiment: MLflow experiment name (created if missing).
        study: the study name (parent run name and tag).
        tags: more tags for the parent run (design, description).
    """

    def __init__(self, uri: str | None, experiment: str, study: str, tags: dict[str, str]):
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = self.client.tracking_uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.study = study
        parents = self.client.search_runs(
            [self.experiment_id], f"tags.`{STUDY}` = '{study}' and tags.`{ROLE}` = 'study'", max_results=1)
        if parents:
            self.parent_id = parents[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            for key, value in tags.items():  # the study may have been edited since
                self.client.set_tag(self.parent_id, key, value)
        else:
            self.parent_id = self.client.create_run(
                self.experiment_id, run_name=study, tags={ROLE: "study", STUDY: study, **tags}).info.run_id
        self.children: dict[str, str] = {}  # trial id -> run id
        self.logged: dict[str, set[int]] = {}  # trial id -> epochs logged
        self.tagged: dict[str, dict[str, str]] = {}  # trial id -> tags set by tag_trial
        children = self.client.search_runs(
            [self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'", max_results=50_000)
        for run in children:
            tid = run.data.tags.get(TRIAL)
            if tid is not None:
                self.children[tid] = run.info.run_id
                self.logged[tid] = {int(e) for e in run.data.tags.get(LOGGED, "").split(",") if e}

    def trial_run(self, trial_id: str, *, name: str, tags: dict[str, str], params: dict[str, str],
                  config: dict) -> str:
        """The child run of a trial, created (with params, tags and config.yaml) the first time."""
        if trial_id in self.children:
            return self.children[trial_id]
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": self.parent_id, ROLE: "trial", STUDY: self.study, TRIAL: trial_id, **tags})
        run_id = run.info.run_id
        items = list(params.items())
        for start in range(0, len(items), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in items[start:start + 100]])
        self.client.log_text(run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")
        self.children[trial_id], self.logged[trial_id] = run_id, set()
        return run_id

    def tag_trial(self, trial_id: str, tags: dict[str, str]) -> None:
        """Set tags on a trial's run (node, device), once per value."""
        seen = self.tagged.setdefault(trial_id, {})
        fresh = {k: str(v) for k, v in tags.items() if seen.get(k) != str(v)}
        if fresh:
            self.client.log_batch(self.children[trial_id], tags=[RunTag(k, v) for k, v in fresh.items()])
            seen.update(fresh)

    def log_epoch(self, trial_id: str, row: dict) -> bool:
        """Log one epoch's metrics (step = epoch) once; False if it was logged before."""
        epoch = int(row["epoch"])
        logged = self.logged.setdefault(trial_id, set())
        if epoch in logged:
            return False
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, float(row[k]), stamp, epoch) for k in METRICS if row.get(k) is not None]
        tag = ",".join(str(e) for e in sorted(logged | {epoch}))
        self.client.log_batch(self.children[trial_id], metrics=metrics, tags=[RunTag(LOGGED, tag)])
        logged.add(epoch)
        return True

    def end_trial(self, trial_id: str, *, status: str, label: str, final: dict) -> None:
        """Tag the trial's ending, attach the COCO summary of its last epoch, close its run."""
        run_id = self.children[trial_id]
        self.client.set_tag(run_id, "status", label)
        if final:
            self.client.log_text(run_id, coco_text(final), "coco_summary.txt")
        self.client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))

    def end_study(self, finished: bool) -> None:
        """Close the parent run: FINISHED when every trial ended, else left RUNNING for a resume."""
        if finished:
            self.client.set_terminated(self.parent_id, RunStatus.to_string(RunStatus.FINISHED))

    def discard(self) -> int:
        """Delete the study's parent and child runs (``--restart``); returns how many child runs went."""
        for run_id in self.children.values():
            self.client.delete_run(run_id)
        self.client.delete_run(self.parent_id)
        return len(self.children)
