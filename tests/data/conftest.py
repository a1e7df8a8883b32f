"""Tiny datasets written into ``tmp_path``: PNGs, COCO json, VOC XML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Keep every generated ``shapes`` set out of the user's real cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("ABLATE_CACHE", str(path))
    return path


@pytest.fixture
def png(tmp_path):
    """``png("img/a.png", w, h)`` writes a small flat-colour RGB PNG and returns its path."""

    def _png(name: str, width: int = 40, height: int = 30, colour=(200, 30, 30)) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height), colour).save(path)
        return path

    return _png


def _base() -> dict:
    """Two 40x30 images, categories 7 ('dog') and 3 ('cat'), three annotations (one crowd)."""
    return {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [20, 10, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [0, 0, 12, 12], "area": 144, "iscrowd": 1},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }


@pytest.fixture
def base() -> dict:
    """A fresh copy of the small valid COCO dict, for a test to break."""
    return _base()


@pytest.fixture
def coco(tmp_path, png):
    """``coco(data)`` writes ``data`` (a dict, or raw text; None: ``base``) as ann.json, plus its images.

    Returns ``(ann_path, image_dir)``.  Images are written for every entry in ``images``
    with a string ``file_name`` (a test deletes one to make it missing).
    """

    def _coco(data: dict | str | None = None, name: str = "ann.json") -> tuple[Path, Path]:
        data = _base() if data is None else data
        image_dir = tmp_path / "images"
        image_dir.mkdir(exist_ok=True)
        if isinstance(data, dict):
            for img in data.get("images", []) if isinstance(data.get("images"), list) else []:
                if isinstance(img, dict) and isinstance(img.get("file_name"), str):
                    w, h = img.get("width"), img.get("height")
                    ok = isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0
                    png(f"images/{img['file_name']}", *((w, h) if ok else (40, 30)))
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
        return path, image_dir

    return _coco
