"""Every malformed study and dataset in cases.yaml is refused by `ablate run` before anything starts.

Each case goes through the real CLI in this process (typer's CliRunner): a non-zero exit,
a message with the expected fragment that names the file and the key or record, no
traceback, no Ray, and nothing written to the results folder, the reports folder or MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray
import yaml
from typer.testing import CliRunner

from ablate.cli import app

HERE = Path(__file__).resolve().parent
CASES = yaml.safe_load((HERE / "cases.yaml").read_text())
ALL = [("study", c) for c in CASES["studies"]] + [("data", c) for c in CASES["datasets"]]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _generate(case: dict, folder: Path) -> Path:
    """The one case too big to commit: a study file past the 1 MiB limit."""
    path = folder / Path(case["study"]).name
    path.write_text("name: huge\n" + "# padding\n" * 150_000)
    return path


@pytest.mark.parametrize(("kind", "case"), ALL, ids=[f"{k}:{Path(c['study']).stem}" for k, c in ALL])
def test_refused_before_anything_starts(kind, case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `ablate run` writes reports/ and MLflow's default store in the working folder
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("ABLATE_BAD_DATA", str(HERE / "data"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(a or k))
    path = _generate(case, tmp_path) if case.get("generated") else HERE / case["study"]
    before = _tree(HERE)

    result = CliRunner().invoke(app, ["run", str(path), "--results", str(tmp_path / "results")])
    text = result.output

    assert result.exit_code == 2, text  # an AblateError (exit 1 would be an unexpected exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in text and "--debug" not in text, text
    assert case["expect"] in text, text
    assert case.get("file", path.name) in text, text
    assert case["key"] in text, text
    assert not started and not ray.is_initialized()
    assert sorted(os.listdir(tmp_path)) == ([path.name] if case.get("generated") else [])  # no results/, reports/, mlruns/
    assert not store.exists()
    assert _tree(HERE) == before  # nothing written beside the corpus either
