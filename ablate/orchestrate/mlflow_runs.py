"""MLflow tracking of a study: study run -> one run per variant -> one run per trial (seed).

The variant runs carry what MLflow cannot compute from their children (the mean over
seeds, the interval, Δ, p and the verdict; report/mlflow_summary.py writes them when the
report is built).

Only the driver of ``ablate run`` talks to MLflow (trials report to it through Ray
Tune), so the local sqlite store never sees two writers.  Every write is
idempotent, which is what lets a killed study resume without duplicates:

- the parent run is found again by its tags (``ablate.study``, ``ablate.role``);
- a variant run by ``ablate.variant``, a trial run by ``ablate.trial_id``, among the study's
  runs of that role (a trial run of an older ablate hangs from the study run itself);
- an epoch's metrics go out in one ``log_batch`` together with the tag
  ``ablate.epochs_logged`` (the epochs logged so far), and an epoch in that tag is never
  logged again (a resumed trial may report epoch 3 before the driver catches up on
  epoch 2, so this is a set, not a high-water mark).  MLflow's SQL store commits a
  batch's metrics before its tags, so a driver killed in between leaves an epoch logged
  but not in the tag: a run found on the server (not created by this Tracker) has its
  logged steps read back from its metric history before its first new epoch;
- a child run's params go out with the tag ``ablate.params`` (``pending`` from the run's
  creation) in their last batch, and its ending (the ``status`` tag) is set only when it
  differs from the one found.

Nothing is sent until the first call (``connect``): a study starts while MLflow is
down, and after a failed call ``invalidate`` makes the next one read all of the above
back from the server (a write whose answer was lost is then seen, not repeated).
See mlflow_mirror.py for what happens when the server cannot be reached.
"""

from __future__ import annotations

import json
import time

import yaml
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from ablate.metrics import METRICS
from ablate.mlflow_tags import (
    EXPERIMENT_KIND,
    LOGGED,
    PARAMS,
    ROLE,
    STUDY,
    TRIAL,
    VARIANT,
    bound_http_retries,
    study_run,
    study_runs,
)
from ablate.mlflow_tags import client as mlflow_client

DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the pure-Python one takes ~10 ms a config
WHERE = ("node", "host", "device")  # the tags tag_trial sets
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

    def __init__(self, uri: str | None, experiment: str, study: str, tags: dict[str, str], *, reopen: bool = True):
        from mlflow.tracking import get_tracking_uri

        bound_http_retries()
        self.uri = uri or get_tracking_uri()
        self.experiment, self.study, self.tags, self.reopen = experiment, study, tags, reopen
        self.client: MlflowClient | None = None
        self.parent_id: str | None = None  # None: not connected (yet, or since a failure)
        self.children: dict[str, str] = {}  # trial id -> run id
        self.variants: dict[str, str] = {}  # variant name -> run id
        self.logged: dict[str, set[int]] = {}  # trial id -> epochs logged
        self.tagged: dict[str, dict[str, str]] = {}  # trial id -> tags set by tag_trial
        self.ready: set[str] = set()  # trial ids whose run has its params and config.yaml
        self.ended: dict[str, str] = {}  # trial id -> the status label of its ended run
        self.exact: set[str] = set()  # trial ids whose `logged` is known to be whole (see the module doc)

    def connect(self) -> None:
        """Find (or create) the experiment and the parent run, and read back the child runs; once.

        With ``reopen`` (``ablate run``) the parent is marked RUNNING again and its tags updated.
        """
        if self.parent_id is not None:
            return
        if self.client is None:
            self.client = mlflow_client(self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(self.experiment, tags=dict([EXPERIMENT_KIND]))
        else:
            self.experiment_id = found.experiment_id
            if EXPERIMENT_KIND[0] not in found.tags:  # an experiment made by an older ablate (or by hand)
                self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)
        parent = study_run(self.client, self.experiment_id, self.study)
        if parent is not None:
            parent_id = parent.info.run_id
            if self.reopen:
                self.client.update_run(parent_id, status="RUNNING")
                for key, value in self.tags.items():  # the study may have been edited since
                    self.client.set_tag(parent_id, key, value)
        else:
            tags = {ROLE: "study", STUDY: self.study, **self.tags}
            parent_id = self.client.create_run(self.experiment_id, run_name=self.study, tags=tags).info.run_id
        self.variants = {run.data.tags[VARIANT]: run.info.run_id
                         for run in study_runs(self.client, self.experiment_id, self.study, "variant")}
        self.children, self.logged, self.tagged, self.ready, self.ended, self.exact = {}, {}, {}, set(), {}, set()
        for run in study_runs(self.client, self.experiment_id, self.study, "trial"):
            tid, tags = run.data.tags.get(TRIAL), run.data.tags
            if tid is None:
                continue
            self.children[tid] = run.info.run_id
            self.logged[tid] = {int(e) for e in tags.get(LOGGED, "").split(",") if e}
            self.tagged[tid] = {k: tags[k] for k in WHERE if k in tags}
            if tags.get(PARAMS, "pending" if not run.data.params else "") != "pending":  # (older runs: no tag)
                self.ready.add(tid)
            if run.info.status != "RUNNING" and "status" in tags:
                self.ended[tid] = tags["status"]
        self.parent_id = parent_id

    def invalidate(self) -> None:
        """After a failed call: what the server holds is read again on the next one."""
        self.parent_id = None

    def prepared(self, trial_id: str) -> bool:
        """Whether the trial's run exists with its params (``trial_run`` would send nothing)."""
        return self.parent_id is not None and trial_id in self.children and trial_id in self.ready

    def variant_run(self, variant: str) -> str:
        """The run of a variant under the study run, created the first time (its trials hang from it)."""
        self.connect()
        if variant not in self.variants:
            self.variants[variant] = self.client.create_run(self.experiment_id, run_name=variant, tags={
                "mlflow.parentRunId": self.parent_id, ROLE: "variant", STUDY: self.study, VARIANT: variant,
            }).info.run_id
        return self.variants[variant]

    def trial_run(self, trial_id: str, *, variant: str, name: str, tags: dict[str, str], params: dict[str, str],
                  config: dict, start_time: float | None = None) -> str:
        """The run of a trial under its variant's run, created (with params, tags and config.yaml) the first time.

        ``start_time`` (unix seconds): when the trial first started, for a run created late (a replay).
        """
        self.connect()
        run_id = self.children.get(trial_id)
        if run_id is None:
            parent = self.variant_run(variant)
            run = self.client.create_run(self.experiment_id, run_name=name,
                                         start_time=int(start_time * 1000) if start_time else None, tags={
                "mlflow.parentRunId": parent, ROLE: "trial", STUDY: self.study, TRIAL: trial_id,
                PARAMS: "pending", **tags})
            run_id = run.info.run_id
            self.children[trial_id], self.logged[trial_id] = run_id, set()
            self.exact.add(trial_id)
        if trial_id not in self.ready:  # (re-sending a param with the same value is allowed)
            self.client.log_text(run_id, yaml.dump(config, Dumper=DUMPER, sort_keys=False), "config.yaml")
            items = list(params.items())
            for start in range(0, len(items), 100):  # log_batch takes at most 100 params per call
                last = start + 100 >= len(items)
                self.client.log_batch(run_id, params=[Param(k, v) for k, v in items[start:start + 100]],
                                      tags=[RunTag(PARAMS, str(len(items)))] if last else [])
            self.ready.add(trial_id)
        return run_id

    def tag_trial(self, trial_id: str, tags: dict[str, str]) -> None:
        """Set tags on a trial's run (node, device), once per value."""
        seen = self.tagged.setdefault(trial_id, {})
        fresh = {k: str(v) for k, v in tags.items() if seen.get(k) != str(v)}
        if fresh:
            self.connect()
            self.client.log_batch(self.children[trial_id], tags=[RunTag(k, v) for k, v in fresh.items()])
            seen.update(fresh)

    def log_epoch(self, trial_id: str, row: dict) -> bool:
        """Log one epoch's metrics (step = epoch) once; False if it was logged before."""
        epoch = int(row["epoch"])
        logged = self.logged.setdefault(trial_id, set())
        if epoch in logged:
            return False
        self.connect()
        logged = self.logged.setdefault(trial_id, set())  # as read back by connect
        key = next((k for k in METRICS if row.get(k) is not None), None)
        if trial_id not in self.exact and key is not None:  # the steps really logged: a batch whose tag was lost counts
            logged |= {m.step for m in self.client.get_metric_history(self.children[trial_id], key)}
            self.exact.add(trial_id)
        if epoch in logged:
            return False
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, float(row[k]), stamp, epoch) for k in METRICS if row.get(k) is not None]
        tag = ",".join(str(e) for e in sorted(logged | {epoch}))
        self.client.log_batch(self.children[trial_id], metrics=metrics, tags=[RunTag(LOGGED, tag)])
        logged.add(epoch)
        return True

    def end_trial(self, trial_id: str, *, status: str, label: str, final: dict, end_time: float | None = None) -> None:
        """Tag the trial's ending, attach the COCO summary of its last epoch, close its run (once per ending)."""
        if self.ended.get(trial_id) == label and self.parent_id is not None:
            return
        self.connect()
        if self.ended.get(trial_id) == label:
            return
        run_id = self.children[trial_id]
        self.client.set_tag(run_id, "status", label)
        if final:
            self.client.log_text(run_id, coco_text(final), "coco_summary.txt")
        self.client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"),
                                   end_time=int(end_time * 1000) if end_time else None)
        self.ended[trial_id] = label

    def end_study(self, finished: bool) -> None:
        """Close the study's and variants' runs: FINISHED when every trial ended, else left RUNNING for a resume."""
        if finished:
            self.connect()
            for run_id in self.variants.values():
                self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
            self.client.set_terminated(self.parent_id, RunStatus.to_string(RunStatus.FINISHED))

    def discard(self) -> int:
        """Delete the study's, variants' and trials' runs (``--restart``); returns how many trial runs went."""
        self.connect()
        for run_id in [*self.children.values(), *self.variants.values()]:
            self.client.delete_run(run_id)
        self.client.delete_run(self.parent_id)
        return len(self.children)
