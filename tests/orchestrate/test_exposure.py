"""What a local Ray started by ``ablate run`` offers to other machines, probed while a study runs.

Ray 2.60 cannot be kept on loopback: its gRPC servers (GCS, raylet, every worker) bind to all
interfaces, and ``_node_ip_address="127.0.0.1"`` is turned into the node's own address.  What keeps
other machines out is Ray's token authentication, on by default for a local start.  This test
lists every port the study's Ray processes listen on beyond loopback, and checks that a client
without the token (or with a wrong one) is refused by the GCS and by the runtime-env agent's
HTTP server on the node's address, while the token's owner is answered (so the probe can fail).
A stand-in trainable (``run_study(trainable=...)``) holds the trial open while the probe runs.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pytest

from ablate.orchestrate import local_ray
from ablate.orchestrate.run import run_study

pytestmark = pytest.mark.slow

PROBE = r"""
import sys
from ray._raylet import GcsClient
try:
    print("ANSWERED", len(GcsClient(address=sys.argv[1], cluster_id=sys.argv[2]).get_all_node_info(timeout=10)))
except Exception as e:
    print("REFUSED", type(e).__name__, str(e)[:200])
"""


def _held_trainable(folder: Path):
    """Each trial says it runs (a file), waits for the probe to finish (another file), then reports."""

    def train(tune_config: dict, *, plan, storage, threads: int, use_gpu: bool) -> None:
        import json
        import time

        from ray import tune

        trial = plan.resolve(tune_config)
        (folder / f"running-{trial.trial_id}").write_text(str(os.getpid()))
        deadline = time.time() + 180
        while not (folder / "probed").exists() and time.time() < deadline:
            time.sleep(0.2)
        row = {"epoch": 1, "mAP": 0.2, "AP50": 0.4, "APs": 0.05, "APm": 0.2, "APl": 0.3, "loss": 1.0,
               "imgs_per_s": 50.0, "peak_mem_mb": 100.0, "epoch_time_s": 0.01}
        status = {"trial_id": trial.trial_id, "status": "completed", "epochs_done": 1, "history": [row]}
        storage.write_text(f"{storage.trial_path(trial.trial_id)}/status.json", json.dumps(status))
        tune.report({**row, "trial_id": trial.trial_id})

    return train


def _listeners() -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket this process and its descendants listen on."""
    me = psutil.Process()
    names = {p.pid: p.name() for p in me.children(recursive=True)} | {me.pid: "driver"}
    return sorted((names[c.pid], c.laddr.ip, c.laddr.port)
                  for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in names)


def _scripts() -> list[str]:
    """The file name of each Python script this process's descendants run (``dashboard.py``, ``raylet`` ...)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            words = p.cmdline()
        except psutil.Error:
            continue
        out.append(next((Path(w).name for w in words[1:] if w.endswith(".py")), Path(words[0]).name if words else ""))
    return sorted(out)


def _gcs_probe(address: str, cluster_id: str, env: dict) -> str:
    run = subprocess.run([sys.executable, "-c", PROBE, address, cluster_id], env=env, capture_output=True,
                         text=True, timeout=120)
    return run.stdout.strip() or run.stderr[-500:]


def _probe(folder: Path, found: dict) -> None:
    """Wait for a trial to run, then look at what the study's Ray offers on the node's address."""
    import ray

    try:
        deadline = time.time() + 240
        while not list(folder.glob("running-*")) and time.time() < deadline:
            time.sleep(0.2)
        node = ray._private.worker.global_worker.node
        found["node_ip"] = node.node_ip_address
        found["listeners"] = _listeners()
        found["scripts"] = _scripts()
        found["logs"] = node.get_logs_dir_path()
        address, cluster_id = node.gcs_address, node.cluster_id.hex()
        stranger = {**os.environ, "HOME": str(folder / "stranger")}
        stranger.pop("RAY_AUTH_TOKEN", None), stranger.pop("RAY_AUTH_TOKEN_PATH", None)
        found["gcs_address"] = address
        found["gcs_no_token"] = _gcs_probe(address, cluster_id, {**stranger, "RAY_AUTH_MODE": "disabled"})
        found["gcs_wrong_token"] = _gcs_probe(address, cluster_id,
                                              {**stranger, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "f" * 32})
        found["gcs_owner"] = _gcs_probe(address, cluster_id, dict(os.environ))
        found["agent_port"] = node.runtime_env_agent_port
        try:
            urllib.request.urlopen(f"http://{node.node_ip_address}:{node.runtime_env_agent_port}/", timeout=10)
            found["agent_no_token"] = "answered"
        except urllib.error.HTTPError as e:
            found["agent_no_token"] = e.code
    except Exception as e:  # noqa: BLE001 - the test reports it
        found["error"] = repr(e)
    finally:
        (folder / "probed").write_text("")


def test_a_local_ray_refuses_other_machines_that_lack_its_token_while_a_study_runs(
        study_file, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # Ray's default for a local start: token
    folder = tmp_path / "held"
    (folder / "stranger").mkdir(parents=True)
    path = study_file("exposed", train={"epochs": 1}, factors={"loss.box": ["diou"]})
    found: dict = {}
    prober = threading.Thread(target=_probe, args=(folder, found), daemon=True)
    prober.start()
    run_study(path, [], results_root=tmp_path / "results", trainable=_held_trainable(folder), max_concurrent=1)
    prober.join(60)
    for key, value in found.items():
        print(f"{key}: {value}")
    assert "error" not in found, found["error"]
    node_ip = ipaddress.ip_address(found["node_ip"])
    if node_ip.is_loopback:
        pytest.skip("this machine has no address beyond loopback")
    beyond = [(name, ip, port) for name, ip, port in found["listeners"] if not ipaddress.ip_address(ip).is_loopback]
    assert beyond, found["listeners"]  # Ray listens beyond loopback: what the rest of the test is about
    # nothing but Ray's own servers: the GCS, the raylet, the workers' and the driver's gRPC, the runtime-env agent
    others = [b for b in beyond if b[0] not in ("gcs_server", "raylet", "driver") and not b[0].startswith("ray::")]
    assert not others, others
    gcs_port = int(found["gcs_address"].rsplit(":", 1)[1])
    assert any(port == gcs_port for _, _, port in beyond)
    assert found["gcs_no_token"].startswith("REFUSED AuthenticationError"), found["gcs_no_token"]
    assert "InvalidAuthToken" in found["gcs_no_token"]
    assert found["gcs_wrong_token"].startswith("REFUSED AuthenticationError"), found["gcs_wrong_token"]
    assert found["gcs_owner"].startswith("ANSWERED"), found["gcs_owner"]  # the same probe with the token
    assert found["agent_no_token"] == 401, found["agent_no_token"]
    table = pd.read_parquet(tmp_path / "results" / "exposed" / "trials.parquet")
    assert set(table.status) == {"completed"}, table.status.tolist()
    # a lean local start (local_ray._lean): no dashboard API server, no autoscaler monitor, no log monitor
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= set(found["scripts"]), found["scripts"]
    assert not {"dashboard.py", "monitor.py", "log_monitor.py"} & set(found["scripts"]), found["scripts"]
    # one trial at a time: Ray prestarted one worker, not one per CPU (local_ray.Workers), so no idle one was there
    workers = [s for s in found["scripts"] if s.startswith("ray::") and not s.endswith("Agent")]
    assert len(workers) == 1 and "ray::IDLE" not in workers, found["scripts"]
    # and the trials' actor took it when the driver connected (no job: ffffffff in its log's name), not a new
    # process (tuner.actors_in_prestarted_workers); the second trial reused the first one's actor
    pids = [int(f.read_text()) for f in folder.glob("running-*")]
    logs = Path(found["logs"])
    assert len(pids) == 2 and len(set(pids)) == 1 and list(logs.glob(f"worker-*-ffffffff-{pids[0]}.out")), \
        (pids, sorted(f.name for f in logs.glob("worker-*.out")))


def test_the_lean_start_drops_only_what_ablate_never_uses_and_puts_ray_back():
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    start_api_server, init = Node.start_api_server, RayParams.__init__
    for verbose in (False, True):
        with local_ray._lean(log_monitor=verbose):
            params = RayParams(include_dashboard=False)
            assert params.no_monitor and params.include_log_monitor is verbose  # workers' lines need it
            assert Node.start_api_server(None, include_dashboard=False, raise_on_failure=False) is None
        assert Node.start_api_server is start_api_server and RayParams.__init__ is init
    assert not RayParams().no_monitor and RayParams().include_log_monitor is None  # Ray's own defaults again


def test_a_local_ray_without_authentication_is_a_warning(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert local_ray.exposure_note() is None
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert local_ray.exposure_note() is None
    monkeypatch.setenv("RAY_AUTH_MODE", "Disabled")
    note = local_ray.exposure_note()
    assert note.startswith("RAY_AUTH_MODE=disabled") and "every network interface" in note
