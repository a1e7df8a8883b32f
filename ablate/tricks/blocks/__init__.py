"""Backbone options: normalisation, activation, plug-in blocks, and a context block on C5.

Four kinds, each a plain dict:

- ``NORMS`` (``model.norm``): ``build(**params)`` returns ``convert(bn) -> module``, applied to every
  ``BatchNorm2d`` of the backbone body after its weights are loaded (affine and statistics carried over).
- ``ACTIVATIONS`` (``model.activation``): ``build(**params)`` returns a new activation module, which
  replaces every ``ReLU`` of the body.
- ``PLUGINS`` (``model.plugins``, a list): ``build(**params, body=..., channels=...)`` may change the
  body in place (deformable convs, stochastic depth) and returns ``{level: module}``, modules run on
  the body's ``c3``/``c4``/``c5`` outputs (attention blocks, DropBlock).
- ``HEAD_CONVS`` (``model.head_conv``): ``build(**params, conv=...)`` returns what replaces each 3x3
  conv of a dense head's towers (depthwise-separable, grouped, RepVGG's re-parameterisable block).
- ``CONTEXT`` (``model.context``): ``build(**params, channels=C5)`` returns a ``C5 -> C5`` block run
  on the last level before the neck (SPP, SPPF, ASPP, RFB).

``ablate/models/body.py`` applies them.  The modules live in ``surgery.py``, ``attention.py``,
``convs.py`` and ``context.py``, imported when a trial builds one.
"""

from ablate.tricks.blocks.params import (
    AsppParams,
    AttentionParams,
    DcnParams,
    DilationParams,
    DropBlockParams,
    GroupedParams,
    GroupNormParams,
    LeakyReluParams,
    NonLocalParams,
    RepConvParams,
    SamParams,
    SppfParams,
    SppParams,
    StochasticDepthParams,
)
from ablate.tricks.registry import Lazy, NoParams, Trick


def _surgery():  # imported when a trial builds one of its entries
    from ablate.tricks.blocks import surgery

    return surgery


def _attention():  # imported when a trial builds one of its entries
    from ablate.tricks.blocks import attention

    return attention


def _convs():  # imported when a trial builds one of its entries
    from ablate.tricks.blocks import convs

    return convs


def _context():  # imported when a trial builds one of its entries
    from ablate.tricks.blocks import context

    return context


NORMS: dict[str, Trick] = {
    "bn": Trick(Lazy(lambda: _surgery().batch_norm), NoParams, "BatchNorm with batch statistics (Ioffe & Szegedy 2015; torchvision's default)"),
    "frozen_bn": Trick(Lazy(lambda: _surgery().frozen_bn), NoParams, "BatchNorm frozen to its loaded statistics and affine (detectron2/mmdet with pretrained bodies; torchvision FrozenBatchNorm2d)"),
    "gn": Trick(Lazy(lambda: _surgery().group_norm), GroupNormParams, "GroupNorm, independent of the batch size (Wu & He 2018)"),
}

ACTIVATIONS: dict[str, Trick] = {
    "relu": Trick(Lazy(lambda: _surgery().relu), NoParams, "ReLU (Nair & Hinton 2010): the bodies' own"),
    "leaky_relu": Trick(Lazy(lambda: _surgery().leaky_relu), LeakyReluParams, "LeakyReLU (Maas et al. 2013; YOLOv3's 0.1 slope)"),
    "silu": Trick(Lazy(lambda: _surgery().silu), NoParams, "SiLU / Swish (Ramachandran et al. 2017; YOLOv5, EfficientDet)"),
    "hardswish": Trick(Lazy(lambda: _surgery().hardswish), NoParams, "hard-swish (Howard et al. 2019, MobileNetV3): Swish without the exponential"),
    "mish": Trick(Lazy(lambda: _surgery().mish), NoParams, "Mish (Misra 2019; YOLOv4's backbone)"),
}

PLUGINS: dict[str, Trick] = {
    "dcn": Trick(Lazy(lambda: _surgery().dcn), DcnParams, "deformable 3x3 convs in the residual blocks of the chosen stages (Dai et al. 2017; v2: Zhu et al. 2019); torchvision DeformConv2d"),
    "dilation": Trick(Lazy(lambda: _surgery().dilation), DilationParams, "dilated 3x3 convs in the last stage's residual blocks (DetNet, Li et al. 2018): a wider view at the same stride (DC5's halved stride would break the fixed P3-P7 strides)"),
    "stochastic_depth": Trick(Lazy(lambda: _surgery().stochastic_depth), StochasticDepthParams, "drop each residual branch per sample, rate rising linearly with depth (Huang et al. 2016); torchvision StochasticDepth"),
    "dropblock": Trick(Lazy(lambda: _attention().dropblock), DropBlockParams, "drop contiguous square regions of the chosen stages' outputs (Ghiasi et al. 2018); torchvision DropBlock2d"),
    "se": Trick(Lazy(lambda: _attention().se), AttentionParams, "squeeze-and-excitation channel attention on the stage outputs (Hu et al. 2018); torchvision SqueezeExcitation"),
    "gc": Trick(Lazy(lambda: _attention().gc), AttentionParams, "global context block on the stage outputs (GCNet, Cao et al. 2019), added to the map"),
    "non_local": Trick(Lazy(lambda: _attention().non_local), NonLocalParams, "non-local (self-attention) block, embedded Gaussian (Wang et al. 2018)"),
    "sam": Trick(Lazy(lambda: _attention().sam), SamParams, "YOLOv4's point-wise spatial attention (modified SAM of CBAM, Bochkovskiy et al. 2020)"),
    "cbam": Trick(Lazy(lambda: _attention().cbam), AttentionParams, "CBAM: channel then spatial attention (Woo et al. 2018)"),
}

CONTEXT: dict[str, Trick] = {
    "none": Trick(Lazy(lambda: _context().identity), NoParams, "C5 goes to the neck as it is"),
    "spp": Trick(Lazy(lambda: _context().SPP), SppParams, "spatial pyramid pooling: max-pools 5, 9, 13 concatenated (YOLOv3-SPP; He et al. 2015)"),
    "sppf": Trick(Lazy(lambda: _context().SPPF), SppfParams, "SPP-Fast: the same pools as chained 5x5 max-pools, fewer FLOPs (YOLOv5)"),
    "aspp": Trick(Lazy(lambda: _context().aspp), AsppParams, "atrous spatial pyramid pooling (DeepLabv3, Chen et al. 2017); torchvision ASPP"),
    "rfb": Trick(Lazy(lambda: _context().RFB), NoParams, "receptive field block: branches of growing dilation (RFBNet, Liu et al. 2018)"),
}

HEAD_CONVS: dict[str, Trick] = {
    "plain": Trick(Lazy(lambda: _convs().plain), NoParams, "the head's regular 3x3 convs (RetinaNet, FCOS, ATSS)"),
    "depthwise": Trick(Lazy(lambda: _convs().depthwise), NoParams, "depthwise-separable 3x3 convs in the head (MobileNet, Howard et al. 2017; SSDlite)"),
    "grouped": Trick(Lazy(lambda: _convs().grouped), GroupedParams, "grouped 3x3 convs in the head (ResNeXt, Xie et al. 2017)"),
    "repconv": Trick(Lazy(lambda: _convs().repconv), RepConvParams, "RepVGG re-parameterisation (Ding et al. 2021): 3x3 + 1x1 + identity while training, fused into one 3x3 for eval"),
}

RESIDUAL_BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "resnet101")  # dcn, stochastic_depth need blocks
BODY_SURGERY = ("dcn", "dilation", "stochastic_depth")  # plugins that change the body's blocks, not its outputs
