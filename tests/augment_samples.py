"""Tiny uint8 samples and a catalogue builder shared by the augmentation tests (on sys.path through
pyproject's pytest pythonpath)."""

from __future__ import annotations

import torch

from ablate.tricks.augment import AUGMENTS
from ablate.tricks.augment.geometric import make_sample
from ablate.tricks.registry import build

BOXES = [[4.0, 6.0, 20.5, 30.0], [30.0, 10.0, 60.0, 40.0], [0.0, 50.0, 63.5, 64.0]]


def sample(fill=None, h=64, w=64, boxes=BOXES, labels=(1, 2, 3), seed=0):
    """A 3 x h x w uint8 image (random, or filled with ``fill``) with ``boxes`` and ``labels``."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) if fill is None \
        else torch.full((3, h, w), fill, dtype=torch.uint8)
    return make_sample(image, boxes, list(labels), image_id=seed)


def make(name, **params):
    """The catalogue augmentation ``name`` with ``params``."""
    return build(AUGMENTS, name, "augmentation", params)
