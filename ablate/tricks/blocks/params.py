"""The parameters of the backbone options (``blocks/__init__.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ablate.tricks.registry import Params

Level = Literal["c3", "c4", "c5"]


class GroupNormParams(Params):
    groups: int = Field(32, ge=1, description="groups per layer (32 as Wu & He); a layer with fewer channels, or "
                        "channels not divisible by it, takes gcd(groups, channels)")


class LeakyReluParams(Params):
    negative_slope: float = Field(0.1, gt=0, lt=1, description="slope for x < 0 (0.1 as YOLOv3)")


class DcnParams(Params):
    stages: list[Level] = Field(["c3", "c4", "c5"], min_length=1, description="stages whose residual blocks get a "
                                "deformable 3x3 conv (mmdetection's stage_with_dcn: c3, c4, c5)")
    modulated: bool = Field(False, description="DCNv2: a learned mask modulates each sampling point")


class DilationParams(Params):
    stages: list[Level] = Field(["c5"], min_length=1, description="stages whose residual blocks' 3x3 convs dilate "
                                "(the last stage, as DetNet / TridentNet)")
    rate: int = Field(2, ge=2, le=8, description="dilation of those convs; their receptive field grows, their stride "
                      "stays")


class StochasticDepthParams(Params):
    p: float = Field(0.1, ge=0, lt=1, description="drop rate of the last residual block; block l of L drops with "
                     "p * l / L (the paper's linear rule)")


class AttentionParams(Params):
    levels: list[Level] = Field(["c3", "c4", "c5"], min_length=1, description="stage outputs the block runs on")
    ratio: int = Field(16, ge=1, le=64, description="channel reduction inside the block (16 as the papers)")


class SamParams(Params):
    levels: list[Level] = Field(["c3", "c4", "c5"], min_length=1, description="stage outputs the block runs on")


class NonLocalParams(Params):
    levels: list[Level] = Field(["c5"], min_length=1, description="stage outputs the block runs on (its cost grows "
                                "with the square of the map's positions: c5 as mmdetection's nl configs)")


class DropBlockParams(Params):
    levels: list[Level] = Field(["c4", "c5"], min_length=1, description="stage outputs it drops blocks of (the paper: "
                                "groups 3 and 4 of ResNet, c4 and c5)")
    p: float = Field(0.1, ge=0, lt=1, description="share of units dropped (the paper's 1 - keep_prob, 0.1)")
    block_size: int = Field(3, ge=1, le=15, description="side of a dropped square in map cells (7 in the paper at "
                            "224 px; 3 fits a 6x6 C5 of a 192 px image)")


class SppParams(Params):
    pools: list[int] = Field([5, 9, 13], min_length=1, description="max-pool kernel sizes, odd (YOLOv3-SPP: 5, 9, 13)")

    @field_validator("pools")
    @classmethod
    def _odd(cls, v: list[int]) -> list[int]:
        if any(k < 1 or k % 2 == 0 for k in v):
            raise ValueError(f"pool sizes must be odd and positive (a 'same' max-pool), got {v}")
        return v


class SppfParams(Params):
    chain: int = Field(3, ge=1, le=6, description="chained 5x5 max-pools; 3 reach SPP's 5, 9, 13 (YOLOv5)")


class AsppParams(Params):
    rates: list[int] = Field([6, 12, 18], min_length=1, description="dilation rates of the 3x3 branches "
                             "(DeepLabv3: 6, 12, 18 at output stride 16)")


class GroupedParams(Params):
    groups: int = Field(8, ge=2, le=256, description="conv groups; model.channels must divide by it (ResNeXt: 32)")


class RepConvParams(Params):
    identity: bool = Field(True, description="add the identity branch (RepVGG: when input and output match)")
