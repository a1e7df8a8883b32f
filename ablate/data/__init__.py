"""Datasets and loaders: COCO json, Pascal VOC (XML folders or VOCdevkit splits), Ultralytics YOLO and
the built-in synthetic ``shapes`` set, each read into the same validated ``Annotations``.

``build_data(config, seed=..., device=...)`` is the entry point; the loaders below it
(``load_coco``, ``load_voc``, ``load_voc_sets``, ``load_yolo``, ``ensure_shapes``) take keyword
arguments only.  ``subset.py`` cuts a train split to ``data.train_subset``; ``summary.py`` says
what a dataset holds (``ablate data``).
"""

from __future__ import annotations

import importlib

# name -> module, imported at first use (PEP 562): the driver of `ablate run` reads and checks data
# through ablate.data.splits and .check without importing torch (orchestrate/run.py)
_WHERE = {
    "DataBundle": "build", "build_data": "build", "Annotations": "coco", "ImageRecord": "coco", "load_coco": "coco",
    "DetectionDataset": "dataset", "collate": "dataset", "read_image": "dataset", "SHAPES_CLASSES": "shapes",
    "default_cache_dir": "shapes", "ensure_shapes": "shapes", "load_voc": "voc",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'ablate.data' has no attribute {name!r}")
    module = importlib.import_module(f"ablate.data.{_WHERE[name]}")
    return getattr(module, "CLASSES" if name == "SHAPES_CLASSES" else name)
