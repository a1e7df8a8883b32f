"""Tiny but real trials: the built-in shapes data at 128 px, a few epochs, one thread."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from ablate.study.paths import merge
from ablate.study.schema import TrialConfig

TINY = {
    "model": {"detector": "fcos", "backbone": "tiny", "channels": 32},
    "data": {"image_size": 128, "shapes": {"train_images": 96, "val_images": 32, "seed": 0}},
    "train": {"epochs": 3, "batch_size": 4, "optimizer": {"name": "adamw", "lr": 0.016, "weight_decay": 0.05},
              "schedule": "cosine", "warmup": {"name": "linear", "iters": 10}},
    "loss": {"box": "giou"},
}


@pytest.fixture(scope="session", autouse=True)
def shapes_cache(tmp_path_factory):
    """One shapes cache for the whole session, so each set is generated once."""
    old = os.environ.get("ABLATE_CACHE")
    os.environ["ABLATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    torch.set_num_threads(1)
    yield
    if old is None:
        os.environ.pop("ABLATE_CACHE", None)
    else:
        os.environ["ABLATE_CACHE"] = old


@pytest.fixture
def tiny_raw() -> dict:
    """The tiny configuration as plain data, to write into a study file."""
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny():
    """``tiny(**sections)``: the tiny trial config with some sections merged over it."""

    def make(**overrides) -> TrialConfig:
        return TrialConfig.model_validate(merge(TINY, overrides))

    return make
