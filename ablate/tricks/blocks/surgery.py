"""Changes made inside a backbone body: its norm layers, its activations, its residual blocks.

They run after the body's weights are loaded and after torchvision bodies are traced by
``create_feature_extractor``: a traced body keeps every ``BatchNorm2d``, ``ReLU`` and ``Conv2d``
as a called submodule, so swapping a submodule under the same name changes what runs, and the
loaded weights are carried into the new module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d, StochasticDepth
from torchvision.ops.misc import FrozenBatchNorm2d


def replace_modules(root: nn.Module, kind: type[nn.Module], make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every submodule of type ``kind`` by ``make(old)``, under the same name; returns how many."""
    found = [(name, m) for name, m in root.named_modules() if type(m) is kind]
    for name, old in found:
        parent, _, child = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, child, make(old))
    return len(found)


# ---- model.norm: each builder returns convert(bn) -> the module that takes its place -------------


def batch_norm() -> Callable[[nn.BatchNorm2d], nn.Module]:
    return lambda bn: bn


def frozen_bn() -> Callable[[nn.BatchNorm2d], nn.Module]:
    def convert(bn: nn.BatchNorm2d) -> nn.Module:
        frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, key).copy_(getattr(bn, key).detach())
        return frozen

    return convert


def group_norm(groups: int) -> Callable[[nn.BatchNorm2d], nn.Module]:
    def convert(bn: nn.BatchNorm2d) -> nn.Module:
        gn = nn.GroupNorm(math.gcd(groups, bn.num_features), bn.num_features, eps=bn.eps)
        with torch.no_grad():  # keep a loaded affine; batch statistics have no GroupNorm counterpart
            gn.weight.copy_(bn.weight)
            gn.bias.copy_(bn.bias)
        return gn

    return convert


# ---- model.activation: each builder returns a fresh module ----------------------------------------


def relu() -> nn.Module:
    return nn.ReLU(inplace=True)


def leaky_relu(negative_slope: float) -> nn.Module:
    return nn.LeakyReLU(negative_slope, inplace=True)


def silu() -> nn.Module:
    return nn.SiLU(inplace=True)


def hardswish() -> nn.Module:
    return nn.Hardswish()


def mish() -> nn.Module:
    return nn.Mish()


# ---- model.plugins that change residual blocks ---------------------------------------------------

# the modules that hold a body's stages C3, C4, C5: torchvision ResNets' layer2..4, TinyBackbone's stages
STAGE_PREFIX = {"c3": ("layer2", "stages.0"), "c4": ("layer3", "stages.1"), "c5": ("layer4", "stages.2")}


def residual_blocks(body: nn.Module, stages: tuple[str, ...] = ("c3", "c4", "c5")) -> Iterator[tuple[str, nn.Module]]:
    """``(name, block)`` of every residual block in ``stages``, in depth order.

    A block is a module with ``conv1, bn1, conv2, bn2`` children (torchvision's BasicBlock and
    Bottleneck, and their traced copies).
    """
    prefixes = tuple(p for s in stages for p in STAGE_PREFIX[s])
    for name, m in body.named_modules():
        if name.startswith(prefixes) and all(hasattr(m, k) for k in ("conv1", "bn1", "conv2", "bn2")):
            yield name, m


class DeformConv(DeformConv2d):
    """``DeformConv2d`` that predicts its own offsets (and, for DCNv2, mask) from its input.

    The offset conv starts at zero, so a fresh DCN computes exactly the conv it replaced
    (mmdetection's init); the replaced conv's weights are kept.
    """

    def __init__(self, conv: nn.Conv2d, *, modulated: bool):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        points = conv.kernel_size[0] * conv.kernel_size[1]
        self.modulated = modulated
        self.offset = nn.Conv2d(conv.in_channels, (3 if modulated else 2) * points, conv.kernel_size, conv.stride,
                                conv.padding, conv.dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, Cin, H, W] -> [B, Cout, H', W']
        out = self.offset(x)  # [B, 2K (+K), H', W']
        if not self.modulated:
            return super().forward(x, out)
        offset, mask = out.split([2 * out.shape[1] // 3, out.shape[1] // 3], dim=1)
        return super().forward(x, offset, 2 * mask.sigmoid())  # 2 * sigmoid(0) = 1 at the start, as mmcv


def dcn(*, stages: list[str], modulated: bool, body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    """Replace the 3x3 ``conv2`` of each residual block in ``stages`` by a ``DeformConv``."""
    blocks = list(residual_blocks(body, tuple(stages)))
    if not blocks:
        raise ValueError("model.plugins: dcn found no residual block in this backbone")
    for _, block in blocks:
        block.conv2 = DeformConv(block.conv2, modulated=modulated)
    return {}


def dilation(*, stages: list[str], rate: int, body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    """Dilate the 3x3 ``conv2`` of each residual block in ``stages`` (padding follows): same weights, same stride."""
    blocks = list(residual_blocks(body, tuple(stages)))
    if not blocks:
        raise ValueError("model.plugins: dilation found no residual block in this backbone")
    for _, block in blocks:
        block.conv2.dilation, block.conv2.padding = (rate, rate), (rate, rate)
    return {}


def _drop_branch(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
    return module.drop_path(out)  # a forward hook: module-level so a model deep-copies (EMA) and pickles


def stochastic_depth(*, p: float, body: nn.Module, channels: list[int]) -> dict[str, nn.Module]:
    """Drop each residual branch per sample with ``p * l / L`` (block ``l`` of ``L``).

    The drop sits on the branch's last norm layer, just before the block adds the shortcut, so the
    traced body needs no change and the state dict keeps its keys.
    """
    blocks = list(residual_blocks(body))
    if not blocks:
        raise ValueError("model.plugins: stochastic_depth found no residual block in this backbone")
    for depth, (_, block) in enumerate(blocks, start=1):
        last = block.bn3 if hasattr(block, "bn3") else block.bn2
        last.add_module("drop_path", StochasticDepth(p * depth / len(blocks), "row"))
        last.register_forward_hook(_drop_branch)
    return {}
