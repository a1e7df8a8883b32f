"""Tiny configurations and batches for detector tests (CPU, a few seconds each)."""

from __future__ import annotations

import pytest
import torch

from ablate.models import build_model
from ablate.study.config import TrialConfig
from ablate.study.paths import merge

NUM_CLASSES = 3


# small and fast: 16-channel heads, half-width tiny backbone, 96 px
TINY = {"model": {"detector": {"name": "retinanet", "anchor_scale": 2.0}, "backbone": "tiny", "width": 0.5,
                  "channels": 16}, "data": {"image_size": 96}}


def _make_config(**sections) -> TrialConfig:
    return TrialConfig.model_validate(merge(TINY, sections))  # a section naming another detector replaces it


def _make_detector(config: TrialConfig, seed: int = 0):
    torch.manual_seed(seed)
    return boxes_like_trained(build_model(config, num_classes=NUM_CLASSES))


def boxes_like_trained(model):
    """An untrained FCOS predicts points (ReLU of ~0 distances); give every point a box of 2 strides each side.

    RetinaNet needs nothing: its zero deltas decode to the anchors themselves.
    """
    head = getattr(model.model, "head", None)
    if hasattr(head, "regression_head") and hasattr(head.regression_head, "bbox_ctrness"):
        with torch.no_grad():
            head.regression_head.bbox_reg.bias.fill_(2.0)
    if hasattr(model.model, "bbox_embed"):  # an untrained DETR gives every query about the same small box
        with torch.no_grad():
            model.model.bbox_embed.layers[-1].bias[2:].fill_(3.0)  # w, h: sigmoid(3) = 95% of the image
    return model


def _make_batch(sizes=((96, 96), (96, 96)), seed: int = 0, empty: tuple[int, ...] = ()):
    """Images ``[3, h, w]`` in 0..1 and targets with 1-2 boxes each (none for indices in ``empty``)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i, (h, w) in enumerate(sizes):
        images.append(torch.rand(3, h, w, generator=g))
        boxes = torch.tensor([[0.1 * w, 0.2 * h, 0.6 * w, 0.7 * h], [0.5 * w, 0.5 * h, 0.9 * w, 0.8 * h]])
        labels = torch.tensor([i % NUM_CLASSES, (i + 2) % NUM_CLASSES])
        if i in empty:
            boxes, labels = boxes[:0], labels[:0]
        targets.append({"boxes": boxes.float(), "labels": labels.long(), "image_id": i})
    return images, targets


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions gain nothing from threads, and OpenMP barriers stall badly on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_config():
    """``make_config(model={"detector": "fcos"}, loss={"box": "giou"})``: TINY with these overrides."""
    return _make_config


@pytest.fixture
def make_detector():
    """``make_detector(config, seed=0)``: ``build_model`` for NUM_CLASSES classes under a fixed seed.

    FCOS gets non-degenerate boxes (see ``boxes_like_trained``) so evaluation tests see real boxes.
    """
    return _make_detector


@pytest.fixture
def make_batch():
    """``make_batch(sizes=((h, w), ...), seed=0, empty=(indices without boxes,))`` -> images, targets."""
    return _make_batch


def _spy_on_head(model):
    """Run ``model``'s head loss as usual, keeping its inputs (matched anchors included) in the returned dict."""
    head, seen = model.model.head, {}
    original = head.compute_loss

    def spy(*args):
        seen["args"] = args
        return original(*args)

    head.compute_loss = spy  # instance attribute shadows the method
    return seen


@pytest.fixture
def spy_on_head():
    """``seen = spy_on_head(model)``: after ``model(images, targets)``, ``seen["args"]`` holds what its head loss got."""
    return _spy_on_head
