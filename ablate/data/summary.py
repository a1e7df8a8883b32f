"""What a dataset holds, before any training: ``ablate data``, the report's Data section, the MLflow parent's data.json.

Per split: images, boxes per class (the training boxes; crowd and VOC ``difficult`` objects counted
apart), boxes per image, object sizes in COCO's small / medium / large (area < 32², < 96², else)
twice: as the network sees them after the study's resize, and as COCO evaluation scores them (the
ground truth's own area, in the original image: a size class with no box there reads -1 in
APs/APm/APl), image sizes, and the repairs loading made.  Then files with the same content, within
a split and shared by train and val.  Every format goes through the same ``Annotations``, so the same
set written as COCO, VOC or YOLO gives the same summary.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import Counter, defaultdict
from typing import Any

from ablate.data.coco import Annotations, base_size

SMALL, MEDIUM = 32**2, 96**2  # COCO's area ranges
SIZES = ("small", "medium", "large")


def _size(area: float) -> str:
    return "small" if area < SMALL else "medium" if area < MEDIUM else "large"


def split_summary(split: Annotations, image_size: int) -> dict[str, Any]:
    """The numbers of one split (``image_size``: the study's ``data.image_size``)."""
    per_class = Counter()
    per_image, resized = [], Counter({s: 0 for s in SIZES})
    for r in split.records:
        per_image.append(len(r.boxes))
        per_class.update(split.classes[int(label)] for label in r.labels)
        h, _ = base_size(r.height, r.width, image_size)
        scale = h / r.height
        for x0, y0, x1, y1 in r.boxes.tolist():
            resized[_size((x1 - x0) * (y1 - y0) * scale * scale)] += 1
    scored = Counter({s: 0 for s in SIZES})
    for a in split.gt["annotations"]:
        if not a["iscrowd"]:
            scored[_size(a["area"])] += 1
    sizes = Counter((r.width, r.height) for r in split.records)
    widths, heights = [r.width for r in split.records], [r.height for r in split.records]
    return {
        "images": len(split.records),
        "boxes": sum(per_image),
        "ignored_boxes": sum(1 for a in split.gt["annotations"] if a["iscrowd"]),
        "boxes_per_class": {c: per_class.get(c, 0) for c in split.classes},
        "boxes_per_image": {"mean": round(statistics.fmean(per_image), 3), "median": statistics.median(per_image),
                            "max": max(per_image), "images_without_boxes": sum(1 for n in per_image if n == 0)},
        "sizes_after_resize": dict(resized),
        "sizes_scored": dict(scored),
        "image_sizes": {"distinct": len(sizes), "width": [min(widths), statistics.median(widths), max(widths)],
                        "height": [min(heights), statistics.median(heights), max(heights)],
                        "most_common": [[w, h, n] for (w, h), n in sizes.most_common(3)]},
        "repairs": dict(sorted(split.repairs.items())),
    }


def duplicates(splits: dict[str, Annotations]) -> dict[str, Any]:
    """Files with the same bytes: groups within each split, and files shared by two splits.

    Only files of equal size are hashed, so a set of distinct JPEGs costs a ``stat`` per file.
    """
    by_size: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for name, split in splits.items():
        for r in split.records:
            by_size[os.path.getsize(r.path)].append((name, r.path))
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for files in by_size.values():
        if len(files) > 1:
            for name, path in files:
                with open(path, "rb") as f:
                    by_hash[hashlib.sha256(f.read()).hexdigest()].append((name, path))
    groups = [sorted(g) for g in by_hash.values() if len({p for _, p in g}) > 1]
    across = [g for g in groups if len({n for n, _ in g}) > 1]
    return {"groups": len(groups), "files": sum(len(g) for g in groups), "across_splits": len(across),
            "examples": [[p for _, p in g][:3] for g in groups[:5]]}


def summarize(splits: dict[str, Annotations], *, image_size: int, dataset: str) -> dict[str, Any]:
    """The whole summary: ``splits`` by name (``train``, ``val``), and the warnings it leads to."""
    first = next(iter(splits.values()))
    out = {"dataset": dataset, "image_size": image_size, "classes": list(first.classes),
           "splits": {name: split_summary(s, image_size) for name, s in splits.items()},
           "duplicates": duplicates(splits)}
    warnings = []
    for name, s in out["splits"].items():
        empty = [k for k in SIZES if s["sizes_scored"][k] == 0]
        if name == "val" and empty:
            warnings.append(f"val has no {' and no '.join(empty)} objects, so "
                            f"{', '.join('AP' + k[0] for k in empty)} will read -1")
        missing = [c for c, n in s["boxes_per_class"].items() if n == 0]
        if missing:
            warnings.append(f"{name} has no box of class {', '.join(missing)}")
    if out["duplicates"]["across_splits"]:
        warnings.append(f"{out['duplicates']['across_splits']} file(s) are in train and in val: the val score "
                        "flatters the model")
    out["warnings"] = warnings
    return out
