"""The Mirror without Ray: an unreachable MLflow costs seconds once, is said once, and keeps every
record pending; a replay into a real (sqlite) store sends each trial and epoch once, however often it runs."""

from __future__ import annotations

import json
import socket
import time

from mlflow.tracking import MlflowClient

from ablate.orchestrate.mlflow_mirror import PENDING, Mirror, read_pending, sync_study
from ablate.orchestrate.mlflow_runs import Tracker
from ablate.results.store import ResultsStore


def _store(folder, trials: int = 2, epochs: int = 3) -> ResultsStore:
    store = ResultsStore(folder)
    for i in range(trials):
        tid = f"trial{i}"
        for e in range(1, epochs + 1):
            store.add_epoch(tid, {"epoch": e, "mAP": 0.1 * e + i / 100, "loss": 2.0 / e})
        store.upsert_trial(tid, study="s", variant=i, variant_name=f"v{i}", seed=0, design="grid",
                           config=json.dumps({"train": {"epochs": epochs, "lr": 0.01}}), **{"factor.loss.box": "giou"},
                           status="completed", status_label="completed", started_at=1.7e9 + i, ended_at=1.7e9 + 60)
    store.flush()
    return store


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_mlflow_fails_fast_once_then_waits_and_keeps_everything_pending(tmp_path):
    store = _store(tmp_path / "s")
    notes: list[str] = []
    uri = f"http://127.0.0.1:{_closed_port()}"
    mirror = Mirror(store, Tracker(uri, "s", "s", {"design": "grid"}), note=notes.append)
    began = time.time()
    assert not mirror.send("trial0")
    assert time.time() - began < 20  # MLflow's own retries bounded (default: minutes)
    began = time.time()
    assert not mirror.send("trial1") and time.time() - began < 0.5  # within RETRY_S: not even tried
    assert len(notes) == 1 and f"MLflow at {uri} unreachable ([Errno 111] Connection refused)" in notes[0], notes
    assert mirror.end_study(True) == 2  # one more (forced) try at the end, still down
    saved = read_pending(tmp_path / "s")
    assert saved["trials"] == ["trial0", "trial1"] and saved["finished"] is True and saved["tracking_uri"] == uri
    assert len(notes) == 1


def test_sync_sends_each_trial_and_epoch_once_and_a_replay_changes_nothing(tmp_path):
    store = _store(tmp_path / "s")
    mirror = Mirror(store, Tracker(f"http://127.0.0.1:{_closed_port()}", "s", "s", {"design": "grid"}),
                    note=lambda line: None)
    mirror.send("trial0")
    mirror.send("trial1")
    mirror.end_study(True)  # both pending, the parent's ending too

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert sync_study("s", results=tmp_path, tracking_uri=uri, note=lambda line: None) == (2, 0)
    assert not (tmp_path / "s" / PENDING).exists()

    def snapshot() -> dict:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("s")
        runs = client.search_runs([experiment.experiment_id], "", max_results=100)
        return {r.data.tags.get("ablate.trial_id") or r.data.tags.get("ablate.variant", "parent"): (
            r.info.run_id, r.info.status, r.info.start_time, r.data.tags.get("status"), r.data.params.get("train.lr"),
            sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "mAP"))) for r in runs}

    first = snapshot()
    assert set(first) == {"parent", "v0", "v1", "trial0", "trial1"}
    assert first["parent"][1] == first["v0"][1] == first["v1"][1] == "FINISHED"
    table = ResultsStore(tmp_path / "s")  # the run ids went back into Parquet
    for tid in ("trial0", "trial1"):
        run_id, status, start, label, lr, maps = first[tid]
        started_ms = int(table.trials[tid]["started_at"] * 1000)  # the trial's own start, not the replay's
        assert (status, label, lr, start) == ("FINISHED", "completed", "0.01", started_ms)
        assert maps == [(r["epoch"], r["mAP"]) for r in table.history(tid)]
        assert table.trials[tid]["mlflow_run_id"] == run_id

    # an answer lost in an outage: the trial is still marked although MLflow has it all; replaying it adds nothing
    again = Mirror(table, Tracker(uri, "s", "s", {"design": "grid"}, reopen=False), note=lambda line: None)
    again.pending = {"trial0", "trial1"}
    assert again.sync(force=True) == 0
    assert snapshot() == first
    assert sync_study("s", results=tmp_path, note=lambda line: None) == (0, 0)  # nothing pending: nothing sent


def test_an_epoch_whose_tag_was_lost_is_not_logged_again(tmp_path):
    """MLflow's SQL store commits a batch's metrics, then its tags: a driver killed in between."""
    from mlflow.entities import Metric

    store = _store(tmp_path / "s", trials=1, epochs=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert Mirror(store, Tracker(uri, "s", "s", {}), note=lambda line: None).send("trial0")
    store.add_epoch("trial0", {"epoch": 3, "mAP": 0.5, "loss": 0.5})
    run_id = store.trials["trial0"]["mlflow_run_id"]
    client = MlflowClient(uri)
    client.log_batch(run_id, metrics=[Metric(k, 0.5, 0, 3) for k in ("mAP", "loss")])  # no ablate.epochs_logged
    assert Mirror(store, Tracker(uri, "s", "s", {}), note=lambda line: None).send("trial0")  # a new driver
    assert sorted(m.step for m in client.get_metric_history(run_id, "mAP")) == [1, 2, 3]


def test_runs_nest_study_variant_seed_in_a_training_experiment(tmp_path):
    """MLflow's layout for a search over settings: the study run, a run per variant, a run per seed under it."""
    store = _store(tmp_path / "s", trials=2)
    store.upsert_trial("trial2", study="s", variant=0, variant_name="v0", seed=1, design="grid",
                       config=json.dumps({"train": {"epochs": 1}}), status="completed", status_label="completed")
    store.add_epoch("trial2", {"epoch": 1, "mAP": 0.2, "loss": 1.0})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("s")  # made by hand (or by an older ablate): no kind yet
    mirror = Mirror(store, Tracker(uri, "s", "s", {}), note=lambda line: None)
    for tid in ("trial0", "trial1", "trial2"):
        assert mirror.send(tid)
    mirror.end_study(True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("s")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI overview
    runs = client.search_runs([experiment.experiment_id], "", max_results=100)
    by_role = {role: [r for r in runs if r.data.tags["ablate.role"] == role] for role in ("study", "variant", "trial")}
    assert [len(by_role[k]) for k in ("study", "variant", "trial")] == [1, 2, 3]
    study = by_role["study"][0].info.run_id
    variants = {r.data.tags["ablate.variant"]: r for r in by_role["variant"]}
    assert {v.data.tags["mlflow.parentRunId"] for v in variants.values()} == {study}
    parent_of = {r.data.tags["ablate.trial_id"]: r.data.tags["mlflow.parentRunId"] for r in by_role["trial"]}
    assert parent_of == {"trial0": variants["v0"].info.run_id, "trial2": variants["v0"].info.run_id,
                         "trial1": variants["v1"].info.run_id}
    # a new driver finds the variant runs again instead of making second ones
    again = Tracker(uri, "s", "s", {})
    again.connect()
    assert again.variants == {name: v.info.run_id for name, v in variants.items()}
