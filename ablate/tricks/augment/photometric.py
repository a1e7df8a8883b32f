"""Photometric augmentations (torchvision v2): pixels change, boxes do not."""

from __future__ import annotations

from pydantic import Field, model_validator
from torchvision.transforms import v2

from ablate.tricks.augment.geometric import Augment, V2Augment, prob
from ablate.tricks.registry import Params

# ---- parameters -------------------------------------------------------------


class PhotometricParams(Params):
    p: float = prob(0.5)
    brightness: float = Field(0.2, ge=0, description="brightness factor drawn in [max(0, 1-b), 1+b], b >= 0")
    contrast: float = Field(0.2, ge=0, description="contrast factor drawn in [max(0, 1-c), 1+c], c >= 0")
    saturation: float = Field(0.2, ge=0, description="saturation factor drawn in [max(0, 1-s), 1+s], s >= 0")
    hue: float = Field(0.02, ge=0, le=0.5, description="hue shift drawn in [-h, h] turns, 0..0.5")


class BlurParams(Params):
    p: float = prob(0.2)
    kernel_size: int = Field(5, ge=1, description="Gaussian kernel side in px, odd, >= 1")
    sigma_min: float = Field(0.1, gt=0, description="smallest standard deviation in px, > 0")
    sigma_max: float = Field(2.0, gt=0, description="largest standard deviation in px, >= sigma_min")

    @model_validator(mode="after")
    def _valid(self) -> BlurParams:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.sigma_min > self.sigma_max:
            raise ValueError(f"need sigma_min <= sigma_max, got {self.sigma_min} > {self.sigma_max}")
        return self


class CutoutParams(Params):
    p: float = prob(0.5)
    scale_min: float = Field(0.02, gt=0, le=1, description="smallest erased area as a fraction of the image, (0, 1]")
    scale_max: float = Field(
        0.33, gt=0, le=1, description="largest erased area as a fraction of the image, [scale_min, 1]"
    )
    ratio_min: float = Field(0.3, gt=0, description="smallest erased width/height ratio, > 0")
    ratio_max: float = Field(3.3, gt=0, description="largest erased width/height ratio, >= ratio_min")
    value: int = Field(0, ge=0, le=255, description="grey level written into the erased rectangle, 0..255")

    @model_validator(mode="after")
    def _ordered(self) -> CutoutParams:
        if self.scale_min > self.scale_max or self.ratio_min > self.ratio_max:
            raise ValueError("need scale_min <= scale_max and ratio_min <= ratio_max")
        return self


# ---- builders ---------------------------------------------------------------


def photometric(p: float, brightness: float, contrast: float, saturation: float, hue: float) -> Augment:
    return V2Augment(v2.ColorJitter(brightness, contrast, saturation, hue), p)


def blur(p: float, kernel_size: int, sigma_min: float, sigma_max: float) -> Augment:
    return V2Augment(v2.GaussianBlur(kernel_size, sigma=(sigma_min, sigma_max)), p)


def cutout(p: float, scale_min: float, scale_max: float, ratio_min: float, ratio_max: float, value: int) -> Augment:
    # image only: v2.RandomErasing passes boxes through but warns about it on every call
    erase = v2.RandomErasing(p=1.0, scale=(scale_min, scale_max), ratio=(ratio_min, ratio_max), value=value)
    return V2Augment(erase, p, image_only=True)
