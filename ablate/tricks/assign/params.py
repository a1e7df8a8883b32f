"""The assigners' user-facing parameters (no torch here, see ``registry.Trick``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ablate.tricks.registry import Params


class MaxIoUParams(Params):
    fg_iou: float = Field(0.5, gt=0, le=1, description="IoU with a GT box (0..1) from which an anchor is positive")
    bg_iou: float = Field(0.4, ge=0, le=1, description="IoU below which an anchor is background; in between: ignored")
    low_quality: bool = Field(
        True, description="also make each GT's best anchors positive when none reaches fg_iou (RetinaNet, Faster R-CNN)")

    @model_validator(mode="after")
    def _ordered(self) -> MaxIoUParams:
        if self.bg_iou > self.fg_iou:
            raise ValueError(f"bg_iou ({self.bg_iou}) must not exceed fg_iou ({self.fg_iou})")
        return self


class AtssParams(Params):
    topk: int = Field(9, ge=1, le=100, description="candidates per pyramid level and GT: the anchors whose centres "
                      "are nearest the GT's centre (9 in the paper)")


class FcosRangesParams(Params):
    center_radius: float = Field(
        1.5, ge=0, description="centre sampling: a point is positive only within this many strides of the GT's "
        "centre (1.5 in torchvision and FCOS v2); 0: anywhere inside the box")
