"""Both splits of a dataset read and validated into ``Annotations`` (``load_splits``), without torch: the
driver of ``ablate run`` checks a study's data with these (check.py) before it imports torch, and
``build_data`` builds its loaders on them.
"""

from __future__ import annotations

from pathlib import Path

from ablate.data.coco import Annotations, load_coco
from ablate.data.shapes import ensure_shapes
from ablate.data.subset import subset
from ablate.data.voc import load_voc, load_voc_sets
from ablate.data.yolo import load_yolo, read_data_yaml
from ablate.errors import DataError
from ablate.study.config import Data
from ablate.study.loader import expand_env


def _path(root: str | None, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or root is None else Path(root).expanduser() / p


def load_splits(d: Data, cache_dir: Path | None = None) -> tuple[Annotations, Annotations]:
    """Both splits, loaded and validated (train cut to ``data.train_subset``); val in the train split's label space."""
    train, val = _load(d, cache_dir)
    return (subset(train, d.train_subset) if d.train_subset else train), val


def _load(d: Data, cache_dir: Path | None) -> tuple[Annotations, Annotations]:
    if d.dataset == "shapes":
        s = d.shapes
        root = ensure_shapes(train_images=s.train_images, val_images=s.val_images, image_size=d.image_size,
                             seed=s.seed, cache_dir=cache_dir)
        train = load_coco(root / "train.json", root / "train")
        return train, load_coco(root / "val.json", root / "val", categories=train.categories)
    roots = d.root if isinstance(d.root, list) else [d.root] if d.root is not None else []
    roots = [expand_env(r, key="data.root") for r in roots]  # ${ABLATE_COCO_ROOT}/...
    root = roots[0] if roots else None
    if d.dataset == "yolo":
        if d.yaml is not None:
            where = _path(root, d.yaml)
            train_sources, val_sources, names = read_data_yaml(where)
        else:
            where, names = _path(root, d.train_images), list(d.classes)
            train_sources, val_sources = [where], [_path(root, d.val_images)]
        return load_yolo(train_sources, names, where=str(where)), load_yolo(val_sources, names, where=str(where))
    if d.dataset == "voc" and d.train_split is not None:  # VOCdevkit year folders; val from the first (VOC07+12)
        folders = [Path(r).expanduser() for r in roots]
        train = load_voc_sets(folders, d.train_split, classes=d.classes)
        return train, load_voc_sets(folders[:1], d.val_split, classes=train.classes)
    train_ann, val_ann = _path(root, d.train_ann), _path(root, d.val_ann)
    if d.dataset == "coco":
        # without an image folder, file names are relative to data.root or to the json's folder
        default = Path(root).expanduser() if root else None
        train_images = _path(root, d.train_images) if d.train_images else default or train_ann.parent
        val_images = _path(root, d.val_images) if d.val_images else default or val_ann.parent
        train = load_coco(train_ann, train_images)
        return train, load_coco(val_ann, val_images, categories=train.categories)
    # voc: without an image folder, the JPEGImages folder beside the XML folder (VOCdevkit's layout)
    train_images = _path(root, d.train_images) if d.train_images else train_ann.parent / "JPEGImages"
    val_images = _path(root, d.val_images) if d.val_images else val_ann.parent / "JPEGImages"
    train = load_voc(train_ann, train_images, classes=d.classes)
    return train, load_voc(val_ann, val_images, classes=train.classes)


def require_boxes(train: Annotations, val: Annotations) -> None:
    """A split a detector can learn from and be scored on: boxes in train, ground truth in val.

    Records whose boxes were all dropped (degenerate, outside the image) are only a
    warning, as in mmdetection and detectron2; a split left with no box at all is an error.
    """
    if not any(len(r.boxes) for r in train.records):
        dropped = "; ".join(f"{kind}: {n}" for kind, n in sorted(train.repairs.items()))
        raise DataError(f"{train.source}: the train split has no boxes to train on ({len(train.records)} images"
                        f"{', ' + dropped if dropped else ', no annotation'}); a detector needs annotated "
                        "objects: give non-crowd annotations with positive width and height inside the image")
    if not any(not a["iscrowd"] for a in val.gt["annotations"]):
        raise DataError(f"{val.source}: the val split has no ground-truth boxes ({len(val.records)} images), so "
                        "COCO AP is undefined (-1) and no trial could be compared; point data.val_ann at an "
                        "annotated split")
