"""Shared helpers: write small study files into a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
