"""Necks: fuse backbone levels into a pyramid of ``out_channels`` maps.

Each entry builds as ``build(**params, in_channels=[...], out_channels=C,
extra_levels=E)`` and returns a module mapping an ``OrderedDict`` of levels
(fine -> coarse) to the same keys plus ``extra0``..``extra{E-1}``; see ``common.Neck``.
"""

from __future__ import annotations

from pydantic import Field

from ablate.tricks.necks.bifpn import BiFPN
from ablate.tricks.necks.common import Neck, NoFusion
from ablate.tricks.necks.fpn import FPN
from ablate.tricks.necks.pan import PAN
from ablate.tricks.registry import NoParams, Params, Trick


class BiFPNParams(Params):
    repeats: int = Field(2, ge=1, description="number of stacked BiFPN cells (EfficientDet-D0 uses 3)")


NECKS: dict[str, Trick] = {
    "none": Trick(NoFusion, NoParams, "1x1 projections only, no cross-level fusion (baseline)"),
    "fpn": Trick(FPN, NoParams, "Feature Pyramid Network: top-down path with lateral connections (torchvision)"),
    "pan": Trick(PAN, NoParams, "PANet: FPN plus a bottom-up path augmentation"),
    "bifpn": Trick(BiFPN, BiFPNParams, "EfficientDet BiFPN: repeated bidirectional fusion with learnable weights"),
}

__all__ = ["NECKS", "BiFPNParams", "Neck"]
