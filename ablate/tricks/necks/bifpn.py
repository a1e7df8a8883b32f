"""BiFPN (Tan et al., EfficientDet, 2020): repeated weighted bidirectional fusion.

Each fusion node sums its inputs with learnable non-negative weights normalised
the "fast" way, ``w_i / (sum_j w_j + 1e-4)`` after a ReLU, then applies a
depthwise-separable 3x3 conv, BatchNorm and SiLU.  Works for any >= 2 levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.tricks.necks.common import Neck, resize_to

EPS = 1e-4


class FusionNode(nn.Module):
    """Fast normalised weighted sum of ``n_inputs`` same-shape maps, then a conv."""

    def __init__(self, channels: int, n_inputs: int):
        super().__init__()
        self.weights = nn.Parameter(torch.ones(n_inputs))
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),  # depthwise
            nn.Conv2d(channels, channels, 1, bias=False),  # pointwise
            nn.BatchNorm2d(channels),
            nn.SiLU(),
        )

    def forward(self, inputs: list[Tensor]) -> Tensor:
        w = F.relu(self.weights)
        w = w / (w.sum() + EPS)
        return self.conv(sum(wi * x for wi, x in zip(w, inputs)))


class BiFPNCell(nn.Module):
    """One top-down + bottom-up pass over ``levels`` maps of ``channels`` channels."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        # top-down node i (levels-2 .. 0): P_i and upsampled td_{i+1}
        self.top_down = nn.ModuleList(FusionNode(channels, 2) for _ in range(levels - 1))
        # bottom-up node i (1 .. levels-1): P_i, td_i, downsampled out_{i-1};
        # the coarsest has no td of its own (td = P there), so it fuses two inputs.
        self.bottom_up = nn.ModuleList(
            FusionNode(channels, 3 if i < levels - 1 else 2) for i in range(1, levels)
        )

    def forward(self, p: list[Tensor]) -> list[Tensor]:
        td = list(p)
        for i in reversed(range(len(p) - 1)):
            td[i] = self.top_down[i]([p[i], resize_to(td[i + 1], p[i])])
        out = [td[0]]
        for i in range(1, len(p)):
            down = resize_to(F.max_pool2d(out[-1], 3, stride=2, padding=1), p[i])
            inputs = [p[i], td[i], down] if i < len(p) - 1 else [p[i], down]
            out.append(self.bottom_up[i - 1](inputs))
        return out


class BiFPN(Neck):
    """1x1 conv + BN projections to ``out_channels``, then ``repeats`` BiFPN cells."""

    def __init__(self, *, repeats: int = 2, in_channels: list[int], out_channels: int, extra_levels: int = 0):
        super().__init__(out_channels, extra_levels)
        if len(in_channels) < 2:
            raise ValueError(f"bifpn needs at least 2 input levels, got {len(in_channels)}")
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
            for c in in_channels
        )
        self.cells = nn.Sequential(*(BiFPNCell(out_channels, len(in_channels)) for _ in range(repeats)))

    def fuse(self, feats: list[Tensor]) -> list[Tensor]:
        return self.cells([conv(f) for conv, f in zip(self.lateral, feats)])
