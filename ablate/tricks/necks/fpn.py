"""Feature Pyramid Network (Lin et al., 2017): torchvision's top-down path."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor
from torchvision.ops import FeaturePyramidNetwork

from ablate.tricks.necks.common import Neck


class FPN(Neck):
    """Lateral 1x1 convs, nearest-upsampled top-down sums, 3x3 output convs."""

    def __init__(self, *, in_channels: list[int], out_channels: int, extra_levels: int = 0):
        super().__init__(out_channels, extra_levels)
        # extra levels come from the shared Neck base, not torchvision's extra_blocks,
        # so every neck names and builds them the same way.
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels)

    def fuse(self, feats: list[Tensor]) -> list[Tensor]:
        return list(self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats))).values())
