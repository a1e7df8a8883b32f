"""Necks: fuse backbone levels into a pyramid of ``out_channels`` maps.

Each entry builds as ``build(**params, in_channels=[...], out_channels=C,
extra_levels=E)`` and returns a module mapping an ``OrderedDict`` of levels
(fine -> coarse) to the same keys plus ``extra0``..``extra{E-1}``; see ``common.Neck``.
The modules live in this package's files, imported when a trial builds one.
"""

from __future__ import annotations

from pydantic import Field

from ablate.tricks.registry import Lazy, NoParams, Params, Trick


class BiFPNParams(Params):
    repeats: int = Field(2, ge=1, description="number of stacked BiFPN cells (EfficientDet-D0 uses 3)")


def _common():  # imported when a trial builds one of its entries
    from ablate.tricks.necks import common

    return common


def _fpn():  # imported when a trial builds one of its entries
    from ablate.tricks.necks import fpn

    return fpn


def _pan():  # imported when a trial builds one of its entries
    from ablate.tricks.necks import pan

    return pan


def _asff():  # imported when a trial builds one of its entries
    from ablate.tricks.necks import asff

    return asff


def _bifpn():  # imported when a trial builds one of its entries
    from ablate.tricks.necks import bifpn

    return bifpn


NECKS: dict[str, Trick] = {
    "none": Trick(Lazy(lambda: _common().NoFusion), NoParams, "1x1 projections only, no cross-level fusion (baseline)"),
    "fpn": Trick(Lazy(lambda: _fpn().FPN), NoParams, "Feature Pyramid Network: top-down path with lateral connections (torchvision)"),
    "pan": Trick(Lazy(lambda: _pan().PAN), NoParams, "PANet: FPN plus a bottom-up path augmentation"),
    "asff": Trick(Lazy(lambda: _asff().ASFF), NoParams, "ASFF: FPN levels fused per position by learned softmax weights (Liu et al. 2019, YOLOv3-ASFF)"),
    "bifpn": Trick(Lazy(lambda: _bifpn().BiFPN), BiFPNParams, "EfficientDet BiFPN: repeated bidirectional fusion with learnable weights"),
}

# The necks that fuse any number of body levels (2 or more), so C2-C5 for a pyramid with P2 as well as
# C3-C5 (model.pyramid, tricks/pyramids.py); a neck built for exactly C3-C5 stays out of this set,
# and the study refuses it with a P2 pyramid, naming model.pyramid and model.neck.
ANY_LEVELS = frozenset({"none", "fpn", "pan", "asff", "bifpn"})
