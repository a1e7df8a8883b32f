"""ray_cluster.yaml (AWS) and ray_cluster.local.yaml (on-premise) pass Ray's own validation.

No cloud and no SSH: each file goes through what ``ray up`` does before it contacts a
provider (``prepare_config``: Ray's defaults for the provider merged in, the local
provider's node type made up from head_ip/worker_ips; then ``validate_config``: Ray's
JSON schema, ray-schema.json, and its cross-field checks).  The local file also goes
through ``_bootstrap_config``, the whole of ``ray up``'s preparation for that provider.
Then what ablate needs of a cluster: every ``ray start`` from ablate's environment, the
settings every node and the head must have, the COCO studies fitting one worker node.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from pathlib import Path

import click
import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from ablate.study import load_study
from ablate.study.loader import ENV_VAR

REPO = Path(__file__).resolve().parents[1]
AWS, LOCAL = REPO / "ray_cluster.yaml", REPO / "ray_cluster.local.yaml"
FILES = [AWS, LOCAL]
COCO = sorted((REPO / "studies" / "coco").glob("*.yaml"))
VENV_RAY = "~/ablate/.venv/bin/ray"


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def validated(config: dict) -> dict:
    """What ``ray up`` checks before it talks to the provider; raises what it would."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def commands(config: dict) -> list[str]:
    return [c for key, value in config.items() if key.endswith("_commands") for c in value]


# -- Ray's validation --------------------------------------------------------------------

@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_passes_ray_validation(path):
    config = validated(raw(path))
    assert config["cluster_name"] == "ablate"
    assert config["head_node_type"] in config["available_node_types"]


def test_local_variant_passes_ray_up_preparation():
    from ray.autoscaler._private.commands import _bootstrap_config

    config = _bootstrap_config(raw(LOCAL), no_config_cache=True)
    (node_type,) = config["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(raw(LOCAL)["provider"]["worker_ips"])


def test_aws_head_takes_no_trials_and_workers_autoscale_with_gpus():
    config = validated(raw(AWS))
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert all(t["min_workers"] < t["max_workers"] <= config["max_workers"] for t in workers)


@pytest.mark.parametrize("study", COCO, ids=lambda p: p.stem)
def test_a_coco_trial_fits_one_aws_worker(study):
    resources = load_study(study).resources
    config = validated(raw(AWS))
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert all(t["resources"]["CPU"] >= resources.cpu and t["resources"]["GPU"] >= resources.gpu for t in workers)


# -- and it rejects what it should (so the tests above can fail) -------------------------

@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_an_unknown_top_level_key_is_rejected(path):
    config = raw(path)
    config["storage"] = "/mnt/shared"  # not a cluster-launcher key
    with pytest.raises(jsonschema.ValidationError, match="storage"):
        validated(config)


def test_a_node_type_without_resources_is_rejected():
    config = raw(AWS)
    del config["available_node_types"]["gpu_worker"]["resources"]
    with pytest.raises(jsonschema.ValidationError, match="resources"):
        validated(config)


def test_more_min_workers_than_max_workers_is_rejected():
    config = raw(AWS)
    config["available_node_types"]["gpu_worker"]["min_workers"] = config["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        validated(config)


def test_a_local_cluster_without_its_hosts_is_rejected():
    config = raw(LOCAL)
    del config["provider"]["worker_ips"]
    with pytest.raises(click.ClickException):
        validated(config)


# -- what ablate needs of the nodes ------------------------------------------------------

@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_command_is_valid_bash(path):
    for command in commands(raw(path)):
        result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stderr}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_ray_runs_from_ablates_locked_environment(path):
    """Trials run with the Python of the node's `ray start`: it must be the one ablate is installed in."""
    config = raw(path)
    assert any("uv sync --locked" in c for c in config["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        calls = [word for c in config[key] for word in shlex.split(c.replace(";", " ; ")) if word.endswith("ray")]
        assert calls and set(calls) == {VENV_RAY}, (key, calls)


def node_env(config: dict, tmp_path: Path, role: str) -> dict[str, str]:
    """The variables a node's shells see after setup: the commands that write ~/.ablate_env, run in a fake home."""
    home = tmp_path / role
    home.mkdir()
    (home / ".bashrc").touch()  # every node has one
    keys = ["setup_commands", f"{role}_setup_commands"]
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "RAY_HEAD_IP": "10.1.2.3"}
    for command in (c for key in keys for c in config[key] if ".ablate_env" in c):
        subprocess.run(["bash", "-c", command], env=env, check=True)
    out = subprocess.run(["bash", "-c", "source ~/.bashrc && env -0"], env=env, check=True, capture_output=True, text=True)
    return dict(line.split("=", 1) for line in out.stdout.split("\0") if "=" in line)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_nodes_get_the_data_and_tracking_settings(path, tmp_path):
    config = raw(path)
    head, worker = node_env(config, tmp_path, "head"), node_env(config, tmp_path, "worker")
    needed = {m.group(1).strip("{}") for s in COCO for m in ENV_VAR.finditer(str(load_study(s).data.root))}
    assert needed == {"ABLATE_COCO_ROOT"}
    for env in (head, worker):
        assert needed <= set(env), "a COCO study's data.root is read on the worker nodes"
        assert env["ABLATE_COCO_ROOT"].startswith(env["ABLATE_SHARED"] + "/")
    assert head["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert worker["MLFLOW_TRACKING_URI"] == "http://10.1.2.3:5000"
    assert head["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert "MLFLOW_BACKEND_STORE_URI" not in worker  # the database password stays on the head


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_head_starts_the_tracking_server(path):
    (server,) = [c for c in raw(path)["head_start_ray_commands"] if "mlflow\" server" in c or "mlflow server" in c]
    for option in ('--backend-store-uri "$MLFLOW_BACKEND_STORE_URI"',
                   '--artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"', "--host 0.0.0.0", "--port 5000"):
        assert option in server


def test_the_docs_use_only_options_that_exist():
    """Every `ablate run|report --option` in docs/cluster.md is an option of that command."""
    import typer

    from ablate.cli import app

    group = typer.main.get_command(app)
    text = (REPO / "docs" / "cluster.md").read_text()
    used = re.findall(r"ablate (run|report)\b([^\n`]*)", text)
    assert {name for name, _ in used} == {"run", "report"}
    for name, rest in used:
        known = {opt for p in group.commands[name].params for opt in p.opts}
        for option in re.findall(r"(?<!\S)(--[a-z-]+)", rest):
            assert option in known, f"ablate {name} has no {option}"
