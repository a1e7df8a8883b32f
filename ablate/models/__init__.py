"""Detectors: torchvision RetinaNet and FCOS with ablate's backbones, necks, losses and post-processing.

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
