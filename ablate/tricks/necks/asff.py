"""Adaptively Spatial Feature Fusion (Liu et al., 2019) on top of torchvision's FPN.

Each output level is a per-position softmax-weighted sum of every FPN level resized to it, the
weights learned from the levels themselves, then a 3x3 conv: a level can take a position from
whichever scale describes it best instead of summing them all.  Levels are resized by nearest
upsampling and by max-pooling down (the paper uses stride-2 convs to go down; max-pooling keeps
the cost of a CPU study small).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from ablate.tricks.necks.common import Neck

COMPRESS = 8  # channels each level's weight branch squeezes to (the paper's compress_c: 8 or 16)


def _resize(x: Tensor, size: torch.Size) -> Tensor:
    if x.shape[-2:] == size:
        return x
    if x.shape[-1] < size[-1]:
        return F.interpolate(x, size=size, mode="nearest")
    return F.adaptive_max_pool2d(x, size)


class ASFF(Neck):
    """FPN, then for each level: ``sum_i softmax_i(w) * resize(P_i)`` and a 3x3 conv."""

    def __init__(self, *, in_channels: list[int], out_channels: int, extra_levels: int = 0):
        super().__init__(out_channels, extra_levels)
        n = len(in_channels)
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels)
        self.compress = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(out_channels, COMPRESS, 1) for _ in range(n)) for _ in range(n))
        self.weights = nn.ModuleList(nn.Conv2d(COMPRESS * n, n, 1) for _ in range(n))
        self.out = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(n))

    def fuse(self, feats: list[Tensor]) -> list[Tensor]:
        p = list(self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats))).values())
        outs = []
        for level, (compress, weigh, out) in enumerate(zip(self.compress, self.weights, self.out)):
            resized = [_resize(x, p[level].shape[-2:]) for x in p]  # n x [B, C, H_l, W_l]
            w = weigh(torch.cat([c(x) for c, x in zip(compress, resized)], dim=1)).softmax(dim=1)  # [B, n, H_l, W_l]
            outs.append(out(sum(w[:, i : i + 1] * x for i, x in enumerate(resized))))
        return outs
