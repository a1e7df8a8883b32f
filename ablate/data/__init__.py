"""Datasets and loaders: COCO json, Pascal VOC (XML folders or VOCdevkit splits), Ultralytics YOLO and
the built-in synthetic ``shapes`` set, each read into the same validated ``Annotations``.

``build_data(config, seed=..., device=...)`` is the entry point; the loaders below it
(``load_coco``, ``load_voc``, ``load_voc_sets``, ``load_yolo``, ``ensure_shapes``) take keyword
arguments only.  ``subset.py`` cuts a train split to ``data.train_subset``; ``summary.py`` says
what a dataset holds (``ablate data``).
"""

from ablate.data.build import DataBundle, build_data
from ablate.data.coco import Annotations, ImageRecord, load_coco
from ablate.data.dataset import DetectionDataset, collate, read_image
from ablate.data.shapes import CLASSES as SHAPES_CLASSES
from ablate.data.shapes import default_cache_dir, ensure_shapes
from ablate.data.voc import load_voc

__all__ = [
    "SHAPES_CLASSES", "Annotations", "DataBundle", "DetectionDataset", "ImageRecord", "build_data",
    "collate", "default_cache_dir", "ensure_shapes", "load_coco", "load_voc", "read_image",
]
