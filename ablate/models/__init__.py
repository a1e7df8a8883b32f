"""Detectors with ablate's backbones, necks, losses and post-processing: torchvision's RetinaNet, FCOS, SSD and
Faster R-CNN, an ATSS head and a small DETR-style set predictor (the names: ``ablate.tricks.detectors``).

``build_model(config, num_classes=...)`` is the entry point; see ``build.py``.
"""

from ablate.models.backbones import BACKBONES, BackboneWithNeck, TinyBackbone, build_body, load_weights
from ablate.models.build import build_model
from ablate.models.detector import Detector
from ablate.models.fcos import CatalogueFCOS
from ablate.models.retinanet import CatalogueRetinaNet

__all__ = [
    "BACKBONES",
    "BackboneWithNeck",
    "CatalogueFCOS",
    "CatalogueRetinaNet",
    "Detector",
    "TinyBackbone",
    "build_body",
    "build_model",
    "load_weights",
]
