"""Real Ray Tune studies on tiny shapes trials (tests/conftest.py's TINY), each in its own results folder and MLflow store."""

from __future__ import annotations

import os

import pytest
import yaml


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run from tmp_path: `ablate run` writes reports/<study>/ in the current folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def study_file(tmp_path, tiny_raw):
    """``study_file(name, **keys)`` writes a tiny study into tmp_path; MLflow goes to tmp_path/mlflow.db."""

    def make(name: str, **keys) -> os.PathLike:
        data = {"name": name, **tiny_raw, "scheduler": {"name": "none"}, "resources": {"cpu": 1},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
        data["train"]["epochs"] = 2
        for key, value in keys.items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) and isinstance(value, dict) else value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make
