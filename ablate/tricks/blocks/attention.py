"""Blocks run on a backbone's stage outputs (``model.plugins``): attention and DropBlock.

Each builder returns ``{level: module}`` for the levels it names; every module maps
``[B, C, H, W]`` to the same shape.  Blocks that add to the map (GC, non-local) start with a
zero last conv, so a fresh block is the identity, as mmdetection initialises them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import DropBlock2d, SqueezeExcitation

LEVELS = ("c3", "c4", "c5")


def _per_level(levels: list[str], channels: list[int], make) -> dict[str, nn.Module]:
    width = dict(zip(LEVELS, channels))
    return {level: make(width[level]) for level in levels}


class GlobalContext(nn.Module):
    """GCNet's context block: attention pooling to one vector, a bottleneck transform, added everywhere."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LayerNorm([hidden, 1, 1]),
                                       nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.mask(x).flatten(2).softmax(dim=-1)  # [B, 1, HW]
        context = torch.einsum("bcn,bon->bc", x.flatten(2), weights)[..., None, None]  # [B, C, 1, 1]
        return x + self.transform(context)


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block: every position attends to every other."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 2)
        self.theta, self.phi, self.g = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q, k, v = (conv(x).flatten(2).transpose(1, 2) for conv in (self.theta, self.phi, self.g))  # [B, HW, C/2]
        y = nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)  # exp(q.k) / sum: the paper's form
        return x + self.out(y.transpose(1, 2).reshape(b, -1, h, w))


class SpatialAttention(nn.Module):
    """YOLOv4's modified SAM: a conv gives one sigmoid gate per position and channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv(x).sigmoid()


class CBAM(nn.Module):
    """Channel attention from average- and max-pooled vectors, then spatial attention from a 7x7 conv."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))  # [B, C, 1, 1]
        x = x * gate.sigmoid()
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # [B, 2, H, W]
        return x * self.spatial(pooled).sigmoid()


def se(*, levels: list[str], ratio: int, body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    return _per_level(levels, channels, lambda c: SqueezeExcitation(c, max(1, c // ratio)))


def gc(*, levels: list[str], ratio: int, body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    return _per_level(levels, channels, lambda c: GlobalContext(c, ratio))


def non_local(*, levels: list[str], body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    return _per_level(levels, channels, NonLocal)


def sam(*, levels: list[str], body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    return _per_level(levels, channels, SpatialAttention)


def cbam(*, levels: list[str], ratio: int, body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    return _per_level(levels, channels, lambda c: CBAM(c, ratio))


def dropblock(*, levels: list[str], p: float, block_size: int, body: nn.Module,
              channels: list[int]) -> dict[str, nn.Module]:
    return _per_level(levels, channels, lambda c: DropBlock2d(p, block_size))
