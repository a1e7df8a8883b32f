"""Real Ray Tune studies on tiny shapes trials (tests/conftest.py's TINY on a smaller set, SMALL_DATA), each in its own
results folder and MLflow store."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

# Most tests here are about the orchestration (records, faults, resumes), not what a trial learns: 48 images at
# 96 px train an epoch in well under a second, a third of TINY's time.  A test that needs a trial to learn (ASHA's
# cut) or an epoch long enough to act in the middle of (a kill, Ctrl-C, a lost node) passes data=TINY["data"].
SMALL_DATA = {"image_size": 96, "shapes": {"train_images": 48, "val_images": 16, "seed": 0}}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run from tmp_path: `ablate run` writes reports/<study>/ in the current folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def study_file(tmp_path, tiny_raw, empty_mlflow_store):
    """``study_file(name, **keys)`` writes a tiny study (SMALL_DATA, 2 epochs) into tmp_path; MLflow goes to
    tmp_path/mlflow.db, a copy of an empty store (tests/conftest.py) unless ``tracking`` names another."""

    def make(name: str, **keys) -> os.PathLike:
        data = {"name": name, **tiny_raw, "data": SMALL_DATA, "scheduler": {"name": "none"}, "resources": {"cpu": 1},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
        data["train"]["epochs"] = 2
        for key, value in keys.items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) and isinstance(value, dict) else value
        store = tmp_path / "mlflow.db"
        if data["tracking"]["uri"] == f"sqlite:///{store}" and not store.exists():
            shutil.copyfile(empty_mlflow_store, store)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make
