"""Context blocks on the last backbone level (``model.context``): ``[B, C, H, W]`` -> same shape.

They widen C5's receptive field before the neck, as YOLOv3-SPP, YOLOv5 (SPPF), DeepLabv3 (ASPP)
and RFBNet do; the output keeps C5's channels, so any neck takes it unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops.misc import Conv2dNormActivation


def identity(*, channels: int) -> nn.Module:
    return nn.Identity()


class SPP(nn.Module):
    """1x1 conv to C/2, stride-1 max-pools of each size concatenated with it, 1x1 conv back to C."""

    def __init__(self, *, pools: list[int], channels: int):
        super().__init__()
        hidden = max(1, channels // 2)
        self.reduce = Conv2dNormActivation(channels, hidden, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in pools)
        self.expand = Conv2dNormActivation(hidden * (len(pools) + 1), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)  # [B, C/2, H, W]
        return self.expand(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class SPPF(nn.Module):
    """SPP with chained 5x5 pools: pool(pool(x)) is a 9x9 pool, so three give SPP's 5, 9, 13 in fewer ops."""

    def __init__(self, *, chain: int, channels: int):
        super().__init__()
        hidden = max(1, channels // 2)
        self.reduce = Conv2dNormActivation(channels, hidden, 1)
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.chain = chain
        self.expand = Conv2dNormActivation(hidden * (chain + 1), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.reduce(x)]
        for _ in range(self.chain):
            outs.append(self.pool(outs[-1]))
        return self.expand(torch.cat(outs, dim=1))


def aspp(*, rates: list[int], channels: int) -> nn.Module:
    """torchvision's DeepLabv3 ASPP (1x1, dilated 3x3s, image pooling; BN, dropout 0.5) to C channels."""
    return ASPP(channels, rates, out_channels=channels)


class RFB(nn.Module):
    """RFB: three branches (1x1 then 3x3 at dilation 1; 3x3 then dilation 3; 5x5 as two 3x3s then dilation 5),
    concatenated, fused by a 1x1 conv, scaled by 0.1 and added to a 1x1 shortcut, then ReLU (RFBNet's RFB)."""

    def __init__(self, *, channels: int):
        super().__init__()
        c = max(1, channels // 4)

        def branch(*layers: tuple[int, int, int]) -> nn.Sequential:  # (in, out, kernel) convs with BN and ReLU
            convs = [Conv2dNormActivation(i, o, k) for i, o, k in layers]
            return nn.Sequential(*convs)

        self.branches = nn.ModuleList([
            nn.Sequential(branch((channels, c, 1)), Conv2dNormActivation(c, c, 3, dilation=1, activation_layer=None)),
            nn.Sequential(branch((channels, c, 1), (c, c, 3)),
                          Conv2dNormActivation(c, c, 3, dilation=3, activation_layer=None)),
            nn.Sequential(branch((channels, c, 1), (c, c, 3), (c, c, 3)),
                          Conv2dNormActivation(c, c, 3, dilation=5, activation_layer=None)),
        ])
        self.fuse = Conv2dNormActivation(3 * c, channels, 1, activation_layer=None)
        self.shortcut = Conv2dNormActivation(channels, channels, 1, activation_layer=None)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fuse(torch.cat([b(x) for b in self.branches], dim=1))
        return torch.relu(0.1 * y + self.shortcut(x))
