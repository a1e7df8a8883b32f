"""Datasets and loaders: COCO json, Pascal VOC XML and the built-in synthetic ``shapes`` set.

``build_data(config, seed=..., device=...)`` is the entry point; the loaders below it
(``load_coco``, ``load_voc``, ``ensure_shapes``) take keyword arguments only.
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
