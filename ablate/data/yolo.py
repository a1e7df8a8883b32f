"""Ultralytics YOLO labels -> the same validated COCO form as ``coco.py``, so evaluation is identical.

``data.yaml`` with Ultralytics' keys: ``path`` (the dataset root; relative to the yaml's folder),
``train`` and ``val`` (an images folder, a ``.txt`` list of image paths, or a list of them; relative
to ``path``), ``names`` (a list, or a dict ``{0: name, ...}``) and optionally ``nc``.  Or the two
images folders and the class names given in the study (``data.train_images``, ``data.val_images``,
``data.classes``).

Each image's label file is found as Ultralytics finds it: the last ``/images/`` of the image's path
becomes ``/labels/`` and the suffix ``.txt``; an image without a label file has no objects.  A label
line is ``class cx cy w h``, the box normalised to [0, 1] by the image's width and height.  Boxes
are converted to COCO pixels (rounded to 1e-6 px, so a set written from pixel boxes reads back
exactly) and go through ``from_coco_dict``: a box reaching outside the image is clipped or dropped
and counted, as for COCO and VOC.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from ablate.data.coco import Annotations, from_coco_dict
from ablate.errors import DataError

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".mpo")  # Ultralytics' that PIL reads


def read_data_yaml(path: Path) -> tuple[list[Path], list[Path], list[str]]:
    """(train sources, val sources, class names) of an Ultralytics ``data.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.yaml: YOLO data file not found: {path} (an Ultralytics data.yaml with path, train, "
                        "val and names)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not an Ultralytics data file: expected a mapping with train, val and names")
    missing = [k for k in ("train", "val", "names") if data.get(k) in (None, "", [])]
    if missing:
        raise DataError(f"{path}: missing '{missing[0]}' (an Ultralytics data file has path, train, val and names)")
    root = Path(str(data.get("path") or ".")).expanduser()
    root = root if root.is_absolute() else path.parent / root
    names = _names(data["names"], path)
    if "nc" in data and data["nc"] != len(names):
        raise DataError(f"{path}: nc is {data['nc']} but names lists {len(names)} classes; make them agree")

    def sources(key: str) -> list[Path]:
        value = data[key] if isinstance(data[key], list) else [data[key]]
        return [p if p.is_absolute() else root / p for p in (Path(str(v)).expanduser() for v in value)]

    return sources("train"), sources("val"), names


def _names(value: Any, path: Path) -> list[str]:
    if isinstance(value, dict):
        if sorted(value) != list(range(len(value))):
            raise DataError(f"{path}: names: the keys must be the class ids 0..{len(value) - 1}, got "
                            f"{sorted(value, key=str)}")
        value = [value[k] for k in range(len(value))]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and str(v) for v in value):
        raise DataError(f"{path}: names must be a list of class names or a dict {{0: name, ...}}, got {value!r}")
    names = [str(v) for v in value]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{path}: names lists {', '.join(repr(n) for n in dupes)} more than once")
    return names


def image_files(source: Path, where: str = "") -> list[Path]:
    """An images folder (every image under it, sorted) or a ``.txt`` list (paths relative to its folder)."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if source.suffix == ".txt" and source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [p if p.is_absolute() else source.parent / p for p in map(Path, lines)]
    raise DataError(f"{where + ': ' if where else ''}YOLO images not found: {source} (give an images folder or a "
                    ".txt list of image paths)")


def label_file(image: Path) -> Path:
    """Ultralytics' ``img2label_paths``: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    return Path(b.join(text.rsplit(a, 1)).rsplit(".", 1)[0] + ".txt")


def load_yolo(sources: list[Path], names: list[str], *, where: str) -> Annotations:
    """One split: the images of ``sources`` (image ids 1..N in that order) and their label files.

    Args:
        names: the class names, class id k -> ``names[k]``.
        where: the data file or folder, for messages.
    """
    files = [f for s in sources for f in image_files(Path(s), where)]
    if not files:
        raise DataError(f"{where}: no images in {', '.join(map(str, sources))} (suffixes: {', '.join(IMAGE_SUFFIXES)})")
    common = Path(os.path.commonpath([str(f.parent) for f in files]))
    images, anns = [], []
    for iid, image in enumerate(files, start=1):
        if not image.is_file():
            raise DataError(f"{where}: image not found: {image}")
        try:
            with Image.open(image) as im:
                width, height = im.size  # the header only
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ... for bad files
            raise DataError(f"cannot read image '{image}': {type(e).__name__}: {e}") from None
        images.append({"id": iid, "file_name": os.path.relpath(image, common), "width": width, "height": height})
        labels = label_file(image)
        if labels.is_file():
            for cls, box in _lines(labels, len(names), where):
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": cls + 1,
                             "bbox": _pixels(box, width, height), "iscrowd": 0})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    return from_coco_dict({"images": images, "annotations": anns, "categories": categories}, common, source=where)


def _lines(path: Path, classes: int, where: str) -> list[tuple[int, tuple[float, float, float, float]]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            extra = " (a segmentation polygon? ablate reads boxes)" if len(fields) > 5 else ""
            raise DataError(f"{path}: line {n}: expected 5 numbers 'class cx cy w h' (the box normalised to 0-1), "
                            f"got {len(fields)} values{extra}: {line.strip()[:80]!r}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DataError(f"{path}: line {n}: expected 5 numbers 'class cx cy w h', got {line.strip()[:80]!r}") from None
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < classes:
            raise DataError(f"{path}: line {n}: class id {fields[0]} is not one of the {classes} classes that "
                            f"names in {where} lists (ids 0..{classes - 1})")
        if not all(math.isfinite(v) for v in values[1:]):
            raise DataError(f"{path}: line {n}: the box must be 4 finite numbers, got {line.strip()[:80]!r}")
        out.append((int(cls), tuple(values[1:])))
    return out


def _pixels(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    """Normalised ``cx cy w h`` -> COCO ``[x, y, w, h]`` pixels, rounded to 1e-6 px."""
    cx, cy, w, h = box
    return [round((cx - w / 2) * width, 6), round((cy - h / 2) * height, 6), round(w * width, 6),
            round(h * height, 6)]
