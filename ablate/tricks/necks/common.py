"""What every neck shares: the dict-in/dict-out interface and the extra levels.

A neck maps backbone levels (fine -> coarse) to as many levels of ``out_channels``
channels at the same strides, then appends ``extra_levels`` coarser ones the way
torchvision's ``LastLevelP6P7`` does (RetinaNet and FCOS want P3-P7 from C3-C5).
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn


def resize_to(x: Tensor, like: Tensor) -> Tensor:
    """Nearest-resize ``x`` to the spatial size of ``like``; a no-op when they match.

    Backbones round odd sizes up or down, so a 2x up/down-sampled map can be off by one.
    """
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class ExtraLevels(nn.Module):
    """``num`` stride-2 3x3 convs chained on the coarsest output, ReLU between them."""

    def __init__(self, channels: int, num: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num))
        for conv in self.convs:  # as LastLevelP6P7
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.constant_(conv.bias, 0)

    def forward(self, coarsest: Tensor) -> list[Tensor]:
        outs, x = [], coarsest
        for i, conv in enumerate(self.convs):
            x = conv(F.relu(x) if i > 0 else x)
            outs.append(x)
        return outs


class Neck(nn.Module):
    """Base of every neck: subclasses implement ``fuse`` on a list of levels.

    Args:
        out_channels: channels of every output level (read by the detector heads).
        extra_levels: coarser levels appended after the fused ones, keys ``extra0``, ...
    """

    def __init__(self, out_channels: int, extra_levels: int = 0):
        super().__init__()
        if extra_levels < 0:
            raise ValueError(f"extra_levels must be >= 0, got {extra_levels}")
        self.out_channels = out_channels
        self.extra = ExtraLevels(out_channels, extra_levels)

    def fuse(self, feats: list[Tensor]) -> list[Tensor]:  # [B, C_i, H_i, W_i] -> [B, out, H_i, W_i]
        raise NotImplementedError

    def forward(self, x: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        outs = self.fuse(list(x.values()))
        extras = self.extra(outs[-1])
        names = list(x.keys()) + [f"extra{i}" for i in range(len(extras))]
        return OrderedDict(zip(names, outs + extras))


class NoFusion(Neck):
    """1x1 lateral projections to ``out_channels``; levels never see each other."""

    def __init__(self, *, in_channels: list[int], out_channels: int, extra_levels: int = 0):
        super().__init__(out_channels, extra_levels)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)

    def fuse(self, feats: list[Tensor]) -> list[Tensor]:
        return [conv(f) for conv, f in zip(self.lateral, feats)]
