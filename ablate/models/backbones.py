"""Backbones: image -> C3, C4, C5 (strides 8, 16, 32), and C2 (stride 4) when asked, and the backbone+neck module.

Every body returns ``OrderedDict(c3=..., c4=..., c5=...)`` (``c2`` first when built with
``levels=ALL_LEVELS``, for a P2 pyramid: ``model.pyramid``) and is described by its channel
counts, which is all a neck needs.  Asking for C2 adds an output, never a parameter: the state
dict is the same either way.  The torchvision bodies keep
torchvision's parameter names (``conv1.weight``, ``layer1.0...``, ``features.0...``)
so torchvision's own classification checkpoints load with ``pretrained`` as they are.
Nothing is ever downloaded: weights are ``None``, a local file, or ``imagenet``: torchvision's own
ImageNet file for the backbone, read from torch's hub cache (``$TORCH_HOME/hub/checkpoints``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50, resnet101, vgg16
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import Conv2dNormActivation

from ablate.errors import ConfigError

LEVELS = ("c3", "c4", "c5")
ALL_LEVELS = ("c2", *LEVELS)  # C2 (stride 4) only for a pyramid with P2 (tricks/pyramids.py)
PYRAMID = ("p3", "p4", "p5", "p6", "p7")  # what RetinaNet/FCOS heads see by default, strides 8..128


class TinyBackbone(nn.Module):
    """A small ResNet-like CNN that trains on a CPU.

    A two-conv stem to stride 4, then three stages (C3, C4, C5), each a stride-2
    conv3x3+BN+ReLU followed by one torchvision ``BasicBlock`` (residual).  Channels
    are ``(8, 16, 32, 64, 128) x width``: at 192 px a batch of 8 takes ~35 ms forward
    and backward on one CPU core, so the detector's head (not the backbone) sets the
    pace of a CPU study.  BN keeps training stable at lr 0.01.

    Args:
        width: channel multiplier (the study's ``model.width``).
        levels: the outputs, ``LEVELS`` or ``ALL_LEVELS`` (C2: the stem's output).
    """

    def __init__(self, width: float = 1.0, levels: tuple[str, ...] = LEVELS):
        super().__init__()
        _check_levels(levels)
        c = [max(8, round(base * width)) for base in (8, 16, 32, 64, 128)]
        self.stem = nn.Sequential(Conv2dNormActivation(3, c[0], 3, stride=2), Conv2dNormActivation(c[0], c[1], 3, stride=2))
        self.stages = nn.ModuleList(
            nn.Sequential(Conv2dNormActivation(cin, cout, 3, stride=2), BasicBlock(cout, cout))
            for cin, cout in zip(c[1:4], c[2:5])
        )
        self.levels = tuple(levels)
        self.channels = c[1:5] if "c2" in levels else c[2:5]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.stem(x)  # [B, c1, H/4, W/4]
        out = OrderedDict(c2=x) if "c2" in self.levels else OrderedDict()
        for name, stage in zip(LEVELS, self.stages):
            x = stage(x)  # [B, c_i, H/s, W/s], s = 8, 16, 32
            out[name] = x
        return out


def _check_levels(levels: tuple[str, ...]) -> None:
    if tuple(levels) not in (LEVELS, ALL_LEVELS):
        raise ValueError(f"body levels must be {LEVELS} or {ALL_LEVELS}, got {tuple(levels)}")


def _torchvision_body(make: Callable[..., nn.Module], nodes: dict[str, str], style: str,
                      levels: tuple[str, ...]) -> nn.Module:
    # create_feature_extractor keeps the submodule names of the classification model
    # and drops what comes after the last node (avgpool, fc / classifier); C2's node comes
    # before C3's, so returning it keeps the same modules and the same state dict keys.
    model = make(weights=None)
    if style == "caffe":  # before tracing: the traced body has no Bottleneck modules left to find
        caffe_strides(model)
    return create_feature_extractor(model, return_nodes={nodes[level]: level for level in levels})


# name -> (factory, nodes at strides 4/8/16/32 (C2..C5), their channels).  ResNets' layer1 is C2.
# mobilenet_v3_large's features[3], [6], [12] are the last blocks before each stride-2 block, [16]
# the final 1x1 conv; vgg16's features[15], [22] and [29] are conv3_3, conv4_3 and conv5_3 (after
# ReLU), [30] the last max-pool.
_TORCHVISION = {
    "resnet18": (resnet18, ("layer1", "layer2", "layer3", "layer4"), [64, 128, 256, 512]),
    "resnet34": (resnet34, ("layer1", "layer2", "layer3", "layer4"), [64, 128, 256, 512]),
    "resnet50": (resnet50, ("layer1", "layer2", "layer3", "layer4"), [256, 512, 1024, 2048]),
    "resnet101": (resnet101, ("layer1", "layer2", "layer3", "layer4"), [256, 512, 1024, 2048]),
    "mobilenet_v3": (mobilenet_v3_large, ("features.3", "features.6", "features.12", "features.16"),
                     [24, 40, 112, 960]),
    "vgg16": (vgg16, ("features.15", "features.22", "features.29", "features.30"), [256, 512, 512, 512]),
}
BACKBONES = ("tiny", *_TORCHVISION)

# classification heads that detection never uses: skipped when loading a checkpoint
UNUSED_PREFIXES = ("fc.", "classifier.")


# backbone -> torchvision's ImageNet weights (V1: the file mmdetection's torchvision://resnet50 loads)
IMAGENET = {"resnet18": "ResNet18_Weights.IMAGENET1K_V1", "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
            "resnet50": "ResNet50_Weights.IMAGENET1K_V1", "resnet101": "ResNet101_Weights.IMAGENET1K_V1",
            "mobilenet_v3": "MobileNet_V3_Large_Weights.IMAGENET1K_V1", "vgg16": "VGG16_Weights.IMAGENET1K_V1"}

# model.style -> the pixel statistics the detector's transform normalises with (images arrive RGB in 0..1).
# caffe: BGR 0..255 minus mmdetection's caffe means, std 1; given here in RGB order and 0..1 units, since a
# caffe checkpoint's first conv is turned to RGB as it loads (load_weights), which is the same function.
PIXELS = {"pytorch": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
          "caffe": ([123.675 / 255, 116.28 / 255, 103.53 / 255], [1 / 255] * 3)}


def caffe_strides(body: nn.Module) -> None:
    """MSRA's caffe ResNet: a downsampling bottleneck strides in its first 1x1 conv, not the 3x3 (pytorch style).

    Only the placement moves (same parameters, same shapes), as mmdetection's ``style='caffe'``; basic blocks
    (ResNet-18/34) have no 1x1 conv and stay as they are.
    """
    for block in body.modules():
        if isinstance(block, Bottleneck) and block.conv2.stride != (1, 1):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)


def imagenet_file(backbone: str) -> Path:
    """Where torch's hub cache keeps torchvision's ImageNet weights of ``backbone``; it must be there.

    Raises:
        ConfigError: the backbone has no such weights, or the file is absent (the message names the
            file, the folder and the one command that fetches it on a connected machine).
    """
    if backbone not in IMAGENET:
        raise ConfigError(f"model.pretrained: imagenet: torchvision has no ImageNet weights for backbone "
                          f"'{backbone}' (imagenet applies to {', '.join(IMAGENET)}); give a local state dict "
                          "path, or null")
    enum, member = IMAGENET[backbone].split(".")
    weights = getattr(torchvision.models, enum)[member]
    name = os.path.basename(urlparse(weights.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained: imagenet: {name} is not in {path.parent} (torch's hub cache: $TORCH_HOME/hub/"
            f"checkpoints), and nothing is downloaded at run time. On a machine with internet access run: "
            f"python -c \"import torchvision; torchvision.models.{enum}.{member}.get_state_dict(progress=True)\" "
            f"then copy ~/.cache/torch/hub/checkpoints/{name} into {path.parent} here")
    return path


def weights_file(backbone: str, pretrained: str | None) -> str | None:
    """The local file ``model.pretrained`` names (``imagenet``: torchvision's, from the hub cache), checked to exist."""
    if pretrained is None:
        return None
    if pretrained == "imagenet":
        return str(imagenet_file(backbone))
    if not Path(pretrained).expanduser().is_file():
        raise ConfigError(f"model.pretrained: {pretrained} does not exist; give the path of a local state dict "
                          "file, imagenet (torchvision's weights from $TORCH_HOME), or null")
    return str(Path(pretrained).expanduser())


def build_body(name: str, *, width: float = 1.0, style: str = "pytorch",
               levels: tuple[str, ...] = LEVELS) -> tuple[nn.Module, list[int]]:
    """The backbone body and the channel counts of its outputs, ``[C3, C4, C5]`` (``[C2, ..., C5]``).

    Args:
        name: one of ``BACKBONES``.
        width: channel multiplier of ``tiny`` (the torchvision bodies ignore it).
        style: ``caffe`` moves ResNet bottlenecks' stride to their 1x1 conv (see ``caffe_strides``).
        levels: ``LEVELS``, or ``ALL_LEVELS`` to return C2 (stride 4) as well; same parameters either way.

    Example:
        >>> body, channels = build_body("resnet18")  # channels == [128, 256, 512]
        >>> body, channels = build_body("resnet18", levels=ALL_LEVELS)  # [64, 128, 256, 512]
    """
    if name == "tiny":
        body = TinyBackbone(width, levels)
        return body, list(body.channels)
    if name not in _TORCHVISION:
        raise ValueError(f"unknown backbone '{name}'; valid: {', '.join(BACKBONES)}")
    _check_levels(levels)
    make, nodes, channels = _TORCHVISION[name]
    by_level = dict(zip(ALL_LEVELS, channels))
    return _torchvision_body(make, dict(zip(ALL_LEVELS, nodes)), style, levels), [by_level[k] for k in levels]


def _few(keys: list[str], n: int = 5) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(body: nn.Module, path: str, *, bgr: bool = False) -> None:
    """Load a local backbone state dict into ``body``, strictly.

    The file's keys must be the body's keys; classification-head keys (``fc.*``,
    ``classifier.*``) are skipped so a torchvision ImageNet checkpoint loads as is.
    ``bgr``: the weights expect BGR input (caffe style): the first conv's input channels are
    reversed, so the body takes RGB as every loader gives it.

    Raises:
        ConfigError: the file is missing or unreadable, or its keys or shapes do not
            match (the message lists a few of the offending keys).
    """
    where = f"model.pretrained: {path}"
    if not Path(path).is_file():
        raise ConfigError(f"{where} does not exist; give the path of a local state dict file, or null")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip, or a non-tensor object refused by weights_only
        raise ConfigError(f"{where} could not be read as a torch state dict: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{where} is not a state dict (a mapping of parameter names to tensors)")
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    own = body.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys missing from the file: {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_few(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (file vs backbone): {_few(wrong, 3)}")
    if problems:
        raise ConfigError(f"{where} does not fit this backbone: " + "; ".join(problems))
    if bgr:
        first = next(k for k in ("conv1.weight", "features.0.weight", "features.0.0.weight") if k in state)
        state[first] = state[first].flip(1)  # [out, 3 (BGR -> RGB), k, k]
    body.load_state_dict(state)


class BackboneWithNeck(nn.Module):
    """``body`` then ``neck``: image batch -> the pyramid levels torchvision's heads want (P3..P7 by default).

    Args:
        body: returns ``OrderedDict(c3, c4, c5)`` (``c2`` first for a P2 pyramid).
        neck: a catalogue neck built with the pyramid's ``extra_levels`` (2 for P6, P7).
        out_channels: channels of every output level (read by RetinaNet/FCOS).
        names: the output levels, fine -> coarse (``tricks.pyramids.Pyramid.names``).
    """

    def __init__(self, body: nn.Module, neck: nn.Module, out_channels: int, names: tuple[str, ...] = PYRAMID):
        super().__init__()
        self.body, self.neck, self.out_channels, self.names = body, neck, out_channels, tuple(names)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        levels = self.neck(self.body(x))  # [c2,] c3, c4, c5, extra0, ...; each [B, C, H/s, W/s]
        if len(levels) != len(self.names):
            raise ValueError(f"the neck returned {len(levels)} levels, the heads need {len(self.names)} "
                             f"({', '.join(self.names)})")
        return OrderedDict(zip(self.names, levels.values()))
