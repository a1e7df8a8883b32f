"""The 3x3 convs of a dense head's towers (``model.head_conv``): each builder takes the conv it replaces.

Every replacement maps ``[B, C, H, W]`` to the same shape as the conv, and is initialised as
torchvision's RetinaNet/FCOS heads initialise theirs (normal, std 0.01; zero bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _init(*convs: nn.Conv2d) -> None:
    for conv in convs:
        nn.init.normal_(conv.weight, std=0.01)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)


def plain(*, conv: nn.Conv2d) -> nn.Module:
    return conv


def depthwise(*, conv: nn.Conv2d) -> nn.Module:
    """A depthwise 3x3 then a pointwise 1x1: about 1/9 + 1/C of the FLOPs (MobileNet; SSDlite's heads)."""
    dw = nn.Conv2d(conv.in_channels, conv.in_channels, 3, padding=1, groups=conv.in_channels, bias=False)
    pw = nn.Conv2d(conv.in_channels, conv.out_channels, 1)
    _init(dw, pw)
    return nn.Sequential(dw, pw)


def grouped(*, groups: int, conv: nn.Conv2d) -> nn.Module:
    """The same 3x3 conv in ``groups`` groups: 1/groups of its weights and FLOPs (ResNeXt)."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1, groups=groups)
    _init(out)
    return out


class RepConv(nn.Module):
    """RepVGG's block without its per-branch BN (the head's norm follows the sum): 3x3 + 1x1 (+ identity).

    Training runs the branches; eval runs the one 3x3 conv they sum to (``fused``), which is the same
    function: the 1x1 kernel padded to 3x3 and the identity as a centred one-hot kernel.
    """

    def __init__(self, channels: int, identity: bool):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.identity = identity
        _init(self.conv3, self.conv1)

    def fused(self) -> tuple[Tensor, Tensor]:
        """The single 3x3 kernel ``[C, C, 3, 3]`` and bias ``[C]`` equal to the branches' sum."""
        weight = self.conv3.weight + F.pad(self.conv1.weight, [1, 1, 1, 1])
        if self.identity:
            eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
            weight = weight + F.pad(eye[..., None, None], [1, 1, 1, 1])
        return weight, self.conv3.bias + self.conv1.bias

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.conv3(x) + self.conv1(x) + (x if self.identity else 0)
        return F.conv2d(x, *self.fused(), padding=1)


def repconv(*, identity: bool, conv: nn.Conv2d) -> nn.Module:
    if conv.in_channels != conv.out_channels:
        raise ValueError(f"repconv needs a conv with as many input as output channels, got {conv}")
    return RepConv(conv.in_channels, identity)


def replace_head_convs(head: nn.Module, make) -> int:
    """Replace each 3x3 conv of the head's towers (``<branch>.conv.*``), not its predictors; returns how many."""
    found = [(name, m) for name, m in head.named_modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and name.split(".")[1:2] == ["conv"]]
    for name, conv in found:
        parent, _, child = name.rpartition(".")
        setattr(head.get_submodule(parent), child, make(conv))
    return len(found)
