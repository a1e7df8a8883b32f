"""Tiny but real trials: the built-in shapes data at 128 px, a few epochs, one thread."""

from __future__ import annotations

import pytest
import torch

from ablate.study.config import TrialConfig
from ablate.study.paths import merge


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny(tiny_raw):
    """``tiny(**sections)``: the tiny trial config with some sections merged over it."""

    def make(**overrides) -> TrialConfig:
        return TrialConfig.model_validate(merge(tiny_raw, overrides))

    return make
