"""`ablate run --address` on a real multi-node Ray cluster on loopback: separate raylets
(Ray's own `cluster_utils.Cluster`), each with one CPU and a custom resource, sharing
this machine's filesystem as a cluster shares NFS."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1},
                                                       "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, resources={name: 1}) for name in ("node_a", "node_b")]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()



def _run(path: Path, root: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--results", str(root),
                             "--address", address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_trials_spread_over_nodes_and_a_lost_node_costs_only_its_epoch(cluster, study_file, statuses, tiny_raw,
                                                                      tmp_path):
    c, (node_a, node_b) = cluster
    path = study_file("multi", train={"epochs": 3}, factors={"loss.box": ["diou", "ciou", "eiou"]},
                      data=tiny_raw["data"])  # epochs long enough that the node is lost mid-trial
    root = tmp_path / "results"
    driver = _run(path, root, c.address)
    try:
        deadline = time.time() + 240
        victim = None
        while time.time() < deadline and victim is None:  # a trial on node_b that has finished an epoch
            for tid, s in statuses(root, "multi").items():
                if s["epochs_done"] >= 1 and s["status"] == "running" and s["starts"][-1]["node"] == node_b.node_id:
                    victim = tid
            assert driver.poll() is None, driver.stdout.read()
            time.sleep(0.1)
        assert victim, "no trial ran on node_b"
        c.remove_node(node_b)  # the node is lost mid-trial
        output, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output

    trials = pd.read_parquet(root / "multi" / "trials.parquet").set_index("trial_id")
    assert (trials.status == "completed").all() and len(trials) == 4, trials[["status", "status_label"]]
    nodes = {n for value in trials.node for n in value.split(",")}
    assert len(nodes) >= 2 and node_b.node_id in nodes  # the study used more than one node
    moved = statuses(root, "multi")[victim]
    assert [s["node"] for s in moved["starts"]][0] == node_b.node_id
    assert moved["starts"][-1]["node"] != node_b.node_id and moved["starts"][-1]["epoch"] > 1  # resumed elsewhere
    assert moved["epochs_done"] == 3
    epochs = pd.read_parquet(root / "multi" / "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and len(epochs) == 4 * 3
