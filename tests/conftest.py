"""Shared helpers: write small study files into a temporary folder."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

import ablate  # noqa: F401 -- first: it sets Ray's switches before any test module imports Ray (ablate/ray_env.py)

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"


@pytest.fixture
def write(tmp_path):
    """``write("a.yaml", {...} or "yaml text")`` -> the file's path."""

    def _write(name: str, content: dict | str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return _write


# A trial of this size (the built-in shapes data at 128 px) trains an epoch in a second or two
# on one CPU thread and learns enough by epoch 2 that a 50x learning rate is clearly worse.
TINY = {
    "model": {"detector": "fcos", "backbone": "tiny", "channels": 32},
    "data": {"image_size": 128, "shapes": {"train_images": 96, "val_images": 32, "seed": 0}},
    "train": {"epochs": 3, "batch_size": 4, "optimizer": {"name": "adamw", "lr": 0.016, "weight_decay": 0.05},
              "schedule": "cosine", "warmup": {"name": "linear", "iters": 10}},
    "loss": {"box": "giou"},
}


@pytest.fixture(scope="session", autouse=True)
def shapes_cache(tmp_path_factory):
    """One shapes cache for the whole session (Ray workers inherit it), so each set is generated once."""
    old = os.environ.get("ABLATE_CACHE")
    os.environ["ABLATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ABLATE_CACHE", None)
    else:
        os.environ["ABLATE_CACHE"] = old


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables made, made once: a test copies it where its study's store goes, as a
    user's second study finds the store the first one made.  A new store's first opening migrates its tables, 2 s
    of CPU beside Ray's start in each test's driver; tests that need a store to be absent use another path."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tiny_raw() -> dict:
    """The tiny trial configuration as plain data, to write into a study file."""
    return copy.deepcopy(TINY)


@pytest.fixture
def statuses():
    """``statuses(root, study)``: trial id -> its status.json, for the trials whose file is whole now."""

    def read(root: Path, study: str) -> dict[str, dict]:
        out = {}
        for path in (Path(root) / study / "trials").glob("*/status.json"):
            try:
                out[path.parent.name] = json.loads(path.read_text())
            except ValueError:  # being replaced right now
                pass
        return out

    return read
