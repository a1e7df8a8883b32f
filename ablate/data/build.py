"""``build_data``: the one function that reads ``config.data`` (and ``augment``, ``train.batch_size``).

Everything below it takes keyword arguments.  It loads and validates both splits up
front (every image file checked to exist), builds the augmentations from the catalogue,
and returns the loaders plus what the engine needs to evaluate and to resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader

from ablate.data.coco import Annotations, load_coco
from ablate.data.dataset import DetectionDataset, SeededSampler, collate
from ablate.data.shapes import ensure_shapes
from ablate.data.subset import subset
from ablate.data.voc import load_voc, load_voc_sets
from ablate.data.yolo import load_yolo, read_data_yaml
from ablate.errors import DataError
from ablate.study.config import Data, TrialConfig
from ablate.study.loader import expand_env
from ablate.tricks.augment import AUGMENTS
from ablate.tricks.registry import build_selected

log = logging.getLogger(__name__)

_VAL_SEED = 0x5EED  # the val loader's own generator: iterating it never touches the global RNG


@dataclass
class DataBundle:
    """What a trial needs from its data.

    Batches from both loaders are ``(images, targets)``: ``images`` a list of float32
    [3, H, W] in [0, 1]; ``targets`` a list of ``{"boxes": float32 [N, 4] XYXY pixels,
    "labels": int64 [N] in 0..C-1, "image_id": int}``.  Val images are the originals
    (no resize), in a fixed order; ``val_gt`` is their ground truth as a COCO dict (the engine indexes it for its evaluator).

    ``generator`` drives the train loader's order and every augmentation draw: save
    ``generator.get_state()`` with a checkpoint and ``set_state`` it before the next
    epoch's ``iter(train)`` to resume with the very same batches.
    """

    train: DataLoader
    val: DataLoader
    val_gt: dict[str, Any]  # COCO ``{images, annotations, categories}`` of the val split
    classes: list[str]  # label -> name; the detector has len(classes) classes
    cat_ids: list[int]  # label -> COCO category id, for writing detections
    warnings: dict[str, int]  # repair kind -> count, over both splits
    num_train: int
    num_val: int
    generator: torch.Generator


def build_data(config: TrialConfig, *, seed: int, device: torch.device, cache_dir: Path | None = None) -> DataBundle:
    """Build the train and val loaders of a trial.

    Args:
        config: the trial's configuration (``data``, ``augment``, ``train.batch_size``).
        seed: seeds the train order and augmentations (same seed, same batches).
        device: the training device; decides ``pin_memory: null``.
        cache_dir: where ``shapes`` is generated; None: ``$ABLATE_CACHE`` or ``~/.cache/ablate``.
    """
    d = config.data
    train, val = load_splits(d, cache_dir)
    require_boxes(train, val)
    warnings = _report(train, val)
    augments = [build_selected(AUGMENTS, s, "augmentation") for s in config.augment]
    train_set = DetectionDataset(train.records, image_size=d.image_size, augments=augments, train=True)
    val_set = DetectionDataset(val.records)

    batch = config.train.batch_size
    generator = torch.Generator().manual_seed(seed)
    # drop a short last batch (BatchNorm fails on a batch of 1) unless it is the only one
    sampler = BatchSampler(SeededSampler(len(train_set), generator), batch, drop_last=len(train_set) > batch)
    common = _loader_options(d, device)
    train_loader = DataLoader(train_set, batch_sampler=sampler, generator=generator, **common)
    val_loader = DataLoader(val_set, batch_size=batch, shuffle=False, drop_last=False,
                            generator=torch.Generator().manual_seed(_VAL_SEED), **common)
    return DataBundle(
        train=train_loader, val=val_loader, val_gt=val.gt, classes=train.classes,
        cat_ids=train.cat_ids, warnings=warnings, num_train=len(train_set), num_val=len(val_set),
        generator=generator,
    )


def _loader_options(d: Data, device: torch.device) -> dict[str, Any]:
    pin = d.pin_memory if d.pin_memory is not None else device.type == "cuda"
    options = {"collate_fn": collate, "num_workers": d.num_workers, "pin_memory": pin,
               "persistent_workers": d.persistent_workers}
    if d.num_workers > 0 and d.prefetch_factor is not None:  # torch rejects it without workers
        options["prefetch_factor"] = d.prefetch_factor
    return options


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


def _report(train: Annotations, val: Annotations) -> dict[str, int]:
    """Log each repair once per split with its count; return the totals."""
    totals: dict[str, int] = {}
    for split in (train, val):
        for kind, n in sorted(split.repairs.items()):
            log.warning("%s: %s: %d", split.source, kind, n)
            totals[kind] = totals.get(kind, 0) + n
    return totals
