"""Records a detection toolbox repairs rather than refuses: `ablate run` warns, naming them, and goes on.

mmdetection skips boxes under a pixel wide or high and detectron2 filters empty boxes
and clips the rest, so a degenerate box, or one outside its image, is dropped (or
clipped) with a warning, not an error.  ``--dry-run`` shows the data pre-flight
without starting anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app

DATA = Path(__file__).resolve().parent / "data"

CASES = {
    "warn_repairable.yaml": [
        "repairable.json: degenerate boxes dropped: 2 (e.g. annotation id 3 of image 'a.png', "
        "annotation id 4 of image 'b.png')",
        "repairable.json: boxes clipped to the image: 1 (e.g. annotation id 5 of image 'a.png')",
        "repairable.json: boxes outside the image dropped: 1 (e.g. annotation id 6 of image 'b.png')",
    ],
    "warn_voc_repairable.yaml": [
        "voc/repairable: degenerate boxes dropped: 1 (e.g. annotation id 2 of image 'a.png')",
        "voc/repairable: boxes clipped to the image: 1 (e.g. annotation id 3 of image 'a.png')",
    ],
}


@pytest.mark.parametrize("study", CASES)
def test_repaired_records_are_named_in_a_warning(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ABLATE_BAD_DATA", str(DATA))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(app, ["run", str(DATA / "studies" / study), "--dry-run",
                                      "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    for warning in CASES[study]:
        assert f"warning: {DATA}/" in result.output and warning in result.output, result.output
    assert "dry run: nothing started" in result.output
    assert os.listdir(tmp_path) == []
