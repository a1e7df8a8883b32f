"""COCO annotations -> validated, repaired, in-memory records.

Real annotation files are messy.  Each problem is either repaired and counted
(a box partly outside the image is clipped; an empty box, or one entirely outside,
is dropped) or stopped with a ``DataError`` that names the file and the record
(image id, annotation id, key).  Every image file is checked to exist up front, so
a bad path fails before training rather than an hour into it.

Labels are contiguous, ``0..C-1`` in sorted category-id order; ``cat_ids[label]``
maps back.  Crowd annotations stay in the evaluation ground truth (``gt``) and out
of the training targets, as pycocotools and torchvision's references treat them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ablate.errors import DataError

CLIPPED = "boxes clipped to the image"
DEGENERATE = "degenerate boxes dropped"  # zero or negative width or height
OUTSIDE = "boxes outside the image dropped"
REQUIRED = ("images", "annotations", "categories")


@dataclass(frozen=True)
class ImageRecord:
    """One image and its training targets (numpy, not tensors: cheap to send to workers)."""

    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] XYXY absolute pixels, clipped; crowd excluded
    labels: np.ndarray  # int64 [N] in 0..C-1


@dataclass
class Annotations:
    """A validated split: records to train on and the COCO dict to evaluate against."""

    source: str  # the annotation file (or XML folder), for messages
    records: list[ImageRecord]
    classes: list[str]  # label -> name
    cat_ids: list[int]  # label -> COCO category id
    gt: dict[str, Any]  # COCO dict in original coordinates; crowd kept; annotation ids 1..M
    repairs: dict[str, int] = field(default_factory=dict)  # repair kind -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # repair kind -> the first few records, for messages

    @property
    def categories(self) -> list[dict[str, Any]]:
        return [{"id": c, "name": n} for c, n in zip(self.cat_ids, self.classes)]


def read_json(path: Path) -> Any:
    """Parse ``path``; an unreadable, empty or invalid file is a ``DataError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: empty file; expected a COCO json with {', '.join(REQUIRED)}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def load_coco(ann_file: Path, image_dir: Path, *, categories: list[dict[str, Any]] | None = None) -> Annotations:
    """Load a COCO json whose ``file_name``s are relative to ``image_dir``.

    Args:
        categories: the label space to use (``[{"id", "name"}]``, e.g. the train
            split's ``Annotations.categories`` when loading val); None: this file's.
    """
    return from_coco_dict(read_json(ann_file), image_dir, source=str(ann_file), categories=categories)


def from_coco_dict(
    data: Any, image_dir: Path, *, source: str, categories: list[dict[str, Any]] | None = None
) -> Annotations:
    """Validate and repair a COCO dict (see ``load_coco``); ``source`` names it in messages."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: not a COCO annotation file: the top level is a {_kind(data)}, "
                        f"expected an object with {', '.join(REQUIRED)}")
    if not data:
        raise DataError(f"{source}: empty JSON object; a COCO file needs {', '.join(REQUIRED)}")
    images, anns, cats = (_section(data, key, source) for key in REQUIRED)
    cats = _categories(categories if categories is not None else cats, source)
    label_of = {c["id"]: k for k, c in enumerate(cats)}
    by_id = _images(images, source)
    _check_files(by_id, Path(image_dir), source)

    repairs: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    boxes: dict[int, list[list[float]]] = {i: [] for i in by_id}
    labels: dict[int, list[int]] = {i: [] for i in by_id}
    gt_anns, seen = [], set()
    for k, ann in enumerate(anns):
        aid = _field(ann, "id", int, source, f"annotations[{k}]")
        where = f"annotation id {aid}"
        if aid in seen:
            raise DataError(f"{source}: duplicate annotation id {aid}")
        seen.add(aid)
        image_id = _field(ann, "image_id", int, source, where)
        cat = _field(ann, "category_id", int, source, where)
        if image_id not in by_id:
            raise DataError(f"{source}: {where} refers to image_id {image_id}, which is not in 'images'")
        if cat not in label_of:
            raise DataError(f"{source}: {where} has category_id {cat}, which is not a category "
                            f"(ids: {_preview(label_of)})")
        crowd = _field(ann, "iscrowd", int, source, where, default=0)
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) and math.isfinite(v) for v in bbox)):
            raise DataError(f"{source}: {where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
        img = by_id[image_id]
        xyxy, repair = clip_box(bbox, img["width"], img["height"])
        if repair:
            repairs[repair] = repairs.get(repair, 0) + 1
            if len(examples.setdefault(repair, [])) < 3:
                examples[repair].append(f"{where} of image '{img['file_name']}'")
        if xyxy is None:
            continue
        x0, y0, x1, y1 = xyxy
        area = ann.get("area")
        area = float(area) if _is_number(area) and area > 0 else (x1 - x0) * (y1 - y0)
        # ids renumbered from 1: pycocotools treats a ground-truth id of 0 as "unmatched"
        gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": cat,
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area, "iscrowd": 1 if crowd else 0})
        if not crowd:
            boxes[image_id].append(xyxy)
            labels[image_id].append(label_of[cat])

    records = [
        ImageRecord(i, str(Path(image_dir) / img["file_name"]), img["width"], img["height"],
                    np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4), np.asarray(labels[i], dtype=np.int64))
        for i, img in by_id.items()
    ]
    gt = {"images": list(by_id.values()), "annotations": gt_anns, "categories": cats}
    return Annotations(source, records, [c["name"] for c in cats], [c["id"] for c in cats], gt, repairs, examples)


def clip_box(bbox: list[float], width: int, height: int) -> tuple[list[float] | None, str | None]:
    """COCO [x, y, w, h] -> (clipped XYXY or None when dropped, the repair made or None)."""
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, DEGENERATE
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None, OUTSIDE
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        return [x0, y0, x1, y1], CLIPPED
    return [x0, y0, x1, y1], None


# ---- validation helpers -------------------------------------------------------


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _preview(ids: Any, n: int = 10) -> str:
    ids = sorted(ids)
    return ", ".join(map(str, ids[:n])) + (", ..." if len(ids) > n else "")


def _section(data: dict, key: str, source: str) -> list[dict]:
    if key not in data:
        raise DataError(f"{source}: not a COCO annotation file: missing key '{key}' "
                        f"(a COCO file has {', '.join(REQUIRED)})")
    value = data[key]
    if not isinstance(value, list):
        raise DataError(f"{source}: '{key}' must be a list, got a {_kind(value)}")
    for k, rec in enumerate(value):
        if not isinstance(rec, dict):
            raise DataError(f"{source}: {key}[{k}] must be an object, got a {_kind(rec)}")
    return value


_MISSING = object()


def _field(rec: dict, key: str, kind: type, source: str, where: str, default: Any = _MISSING) -> Any:
    """``rec[key]`` checked to be an int (not a bool) or a non-empty str."""
    value = rec.get(key, default)
    if value is _MISSING:
        raise DataError(f"{source}: {where}: missing '{key}'")
    ok = (kind is int and isinstance(value, int) and not isinstance(value, bool)) or (
        kind is str and isinstance(value, str) and value != "")
    if not ok:
        what = "an integer" if kind is int else "a non-empty string"
        raise DataError(f"{source}: {where}: '{key}' must be {what}, got {value!r}")
    return value


def _categories(cats: list[dict], source: str) -> list[dict[str, Any]]:
    """``[{"id", "name"}]`` sorted by id: the label order."""
    out: dict[int, str] = {}
    for k, c in enumerate(cats):
        cid = _field(c, "id", int, source, f"categories[{k}]")
        if cid in out:
            raise DataError(f"{source}: duplicate category id {cid}")
        out[cid] = _field(c, "name", str, source, f"category id {cid}")
    if not out:
        raise DataError(f"{source}: 'categories' is empty; a detector needs at least one class")
    return [{"id": cid, "name": out[cid]} for cid in sorted(out)]


def _images(images: list[dict], source: str) -> dict[int, dict[str, Any]]:
    """image id -> ``{"id", "file_name", "width", "height"}``, in file order."""
    if not images:
        raise DataError(f"{source}: 'images' is empty")
    by_id: dict[int, dict[str, Any]] = {}
    for k, img in enumerate(images):
        iid = _field(img, "id", int, source, f"images[{k}]")
        where = f"image id {iid}"
        if iid in by_id:
            raise DataError(f"{source}: duplicate image id {iid}")
        rec = {"id": iid, "file_name": _field(img, "file_name", str, source, where)}
        for key in ("width", "height"):
            rec[key] = _field(img, key, int, source, where)
            if rec[key] <= 0:
                raise DataError(f"{source}: {where}: '{key}' must be positive, got {rec[key]}")
        by_id[iid] = rec
    return by_id


def _check_files(by_id: dict[int, dict[str, Any]], image_dir: Path, source: str) -> None:
    if not image_dir.is_dir():
        raise DataError(f"{source}: image folder not found: {image_dir}")
    missing = [(i, img["file_name"]) for i, img in by_id.items() if not os.path.isfile(image_dir / img["file_name"])]
    if missing:
        shown = ", ".join(f"'{image_dir / name}' (image id {i})" for i, name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{source}: {len(missing)} of {len(by_id)} image files not found: {shown}{more}")


MAX_RATIO = 1333 / 800  # longest / shortest side allowed by the base resize (torchvision's default)


def base_size(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h, w) with the shorter side ``image_size`` and the longer at most ``image_size * 1333 / 800``."""
    scale = image_size / min(height, width)
    scale = min(scale, image_size * MAX_RATIO / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))
