"""Real Ray Tune studies on tiny shapes trials, each in its own results folder and MLflow store."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

# A trial of this size trains 2-3 epochs in a few seconds on one CPU thread and learns
# enough by epoch 2 that a 50x learning rate is clearly worse (tests/engine checks that).
TINY = {
    "model": {"detector": "fcos", "backbone": "tiny", "channels": 32},
    "data": {"image_size": 128, "shapes": {"train_images": 96, "val_images": 32, "seed": 0}},
    "train": {"epochs": 2, "batch_size": 4, "optimizer": {"name": "adamw", "lr": 0.016, "weight_decay": 0.05},
              "schedule": "cosine", "warmup": {"name": "linear", "iters": 10}},
    "loss": {"box": "giou"},
    "scheduler": {"name": "none"},
    "resources": {"cpu": 1},
}


@pytest.fixture(scope="session", autouse=True)
def shapes_cache(tmp_path_factory):
    """One shapes cache for the session; Ray workers inherit it through the environment."""
    old = os.environ.get("ABLATE_CACHE")
    os.environ["ABLATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ABLATE_CACHE", None)
    else:
        os.environ["ABLATE_CACHE"] = old


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run from tmp_path: `ablate run` writes reports/<study>/ in the current folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def study_file(tmp_path):
    """``study_file(name, **keys)`` writes a tiny study into tmp_path; MLflow goes to tmp_path/mlflow.db."""

    def make(name: str, **keys) -> os.PathLike:
        data = {"name": name, **copy.deepcopy(TINY),
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
        for key, value in keys.items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) and isinstance(value, dict) else value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make
