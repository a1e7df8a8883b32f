"""Path Aggregation Network (Liu et al., 2018): FPN plus a bottom-up path.

``N_0 = P_0`` and ``N_{i+1} = relu(conv3x3(relu(conv3x3_s2(N_i)) + P_{i+1}))``, so
fine localisation signal reaches the coarse levels in a few layers instead of
through the whole backbone.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from ablate.tricks.necks.common import Neck, resize_to


class PAN(Neck):
    """torchvision FPN top-down, then PANet's bottom-up path augmentation."""

    def __init__(self, *, in_channels: list[int], out_channels: int, extra_levels: int = 0):
        super().__init__(out_channels, extra_levels)
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels)
        steps = len(in_channels) - 1
        self.down = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(steps))
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(steps))

    def fuse(self, feats: list[Tensor]) -> list[Tensor]:
        p = list(self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats))).values())
        n = [p[0]]
        for i, (down, smooth) in enumerate(zip(self.down, self.smooth)):
            d = resize_to(F.relu(down(n[-1])), p[i + 1])
            n.append(F.relu(smooth(d + p[i + 1])))
        return n
