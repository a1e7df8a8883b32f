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

from ablate.data import decoded
from ablate.data.coco import Annotations
from ablate.data.dataset import DetectionDataset, SeededSampler, collate
from ablate.data.shapes import default_cache_dir
from ablate.data.splits import load_splits, require_boxes
from ablate.study.config import Data, TrialConfig
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
        cache_dir: where ``shapes`` is generated and the decoded images are kept (``decoded/``, unless
            ``ABLATE_DECODE_CACHE=0``); None: ``$ABLATE_CACHE`` or ``~/.cache/ablate``.
    """
    d = config.data
    train, val = load_splits(d, cache_dir)
    require_boxes(train, val)
    warnings = _report(train, val)
    augments = [build_selected(AUGMENTS, s, "augmentation") for s in config.augment]
    train_set = DetectionDataset(train.records, image_size=d.image_size, augments=augments, train=True)
    val_set = DetectionDataset(val.records)
    if decoded.enabled():
        folder = default_cache_dir(cache_dir) / "decoded"
        train_set.cache(folder, f"{train.source} images at {d.image_size} px")
        val_set.cache(folder, f"{val.source} images")

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


def _report(train: Annotations, val: Annotations) -> dict[str, int]:
    """Log each repair once per split with its count; return the totals."""
    totals: dict[str, int] = {}
    for split in (train, val):
        for kind, n in sorted(split.repairs.items()):
            log.warning("%s: %s: %d", split.source, kind, n)
            totals[kind] = totals.get(kind, 0) + n
    return totals
