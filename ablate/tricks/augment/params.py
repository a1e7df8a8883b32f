"""The augmentations' user-facing parameters: typed, documented, closed (no torch here, see ``registry.Trick``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from ablate.tricks.registry import Params


def prob(default: float) -> Any:
    return Field(default, ge=0.0, le=1.0, description="probability of applying it to a sample, 0..1")


class FlipParams(Params):
    p: float = prob(0.5)


class MultiscaleParams(Params):
    p: float = prob(1.0)
    sizes: list[PositiveInt] = Field(
        default_factory=lambda: [160, 176, 192, 208, 224], min_length=1,
        description="shorter-side lengths in px, one drawn uniformly per sample; non-empty, each > 0",
    )
    max_size: PositiveInt | None = Field(
        None, description="cap on the longer side in px (> 0); null: no cap"
    )
    mode: Literal["value", "range"] = Field(
        "value", description="value: one of sizes | range: any integer from sizes[0] to sizes[1] (mmdetection's "
        "multiscale_mode='range', e.g. FCOS_mstrain's img_scale [(1333, 640), (1333, 800)]: sizes [640, 800])")

    @model_validator(mode="after")
    def _range_has_two_ends(self) -> MultiscaleParams:
        if self.mode == "range" and (len(self.sizes) != 2 or self.sizes[0] >= self.sizes[1]):
            raise ValueError(f"mode range takes sizes [low, high] with low < high, got {self.sizes}")
        return self


class RandomCropParams(Params):
    p: float = prob(0.5)
    min_scale: float = Field(0.3, gt=0, le=1, description="smallest crop side as a fraction of the image side, (0, 1]")
    max_scale: float = Field(
        1.0, gt=0, le=1, description="largest crop side as a fraction of the image side, [min_scale, 1]"
    )
    min_aspect_ratio: float = Field(0.5, gt=0, description="smallest crop width/height ratio, > 0")
    max_aspect_ratio: float = Field(2.0, gt=0, description="largest crop width/height ratio, >= min_aspect_ratio")
    trials: int = Field(40, ge=1, description="crops tried per drawn min-IoU before drawing again, >= 1")

    @model_validator(mode="after")
    def _ordered(self) -> RandomCropParams:
        if self.min_scale > self.max_scale or self.min_aspect_ratio > self.max_aspect_ratio:
            raise ValueError("need min_scale <= max_scale and min_aspect_ratio <= max_aspect_ratio")
        return self


class ZoomOutParams(Params):
    p: float = prob(0.5)
    max_ratio: float = Field(
        4.0, ge=1.0, description="largest canvas side / image side, >= 1 (drawn in [1, max_ratio])"
    )
    fill: tuple[int, int, int] = Field(
        (124, 116, 104), description="RGB of the new border, each 0..255 (default: ImageNet mean)"
    )

    @model_validator(mode="after")
    def _bytes(self) -> ZoomOutParams:
        if not all(0 <= c <= 255 for c in self.fill):
            raise ValueError(f"fill must be 3 values in 0..255, got {self.fill}")
        return self


class PhotometricParams(Params):
    p: float = prob(0.5)
    brightness: float = Field(0.2, ge=0, description="brightness factor drawn in [max(0, 1-b), 1+b], b >= 0")
    contrast: float = Field(0.2, ge=0, description="contrast factor drawn in [max(0, 1-c), 1+c], c >= 0")
    saturation: float = Field(0.2, ge=0, description="saturation factor drawn in [max(0, 1-s), 1+s], s >= 0")
    hue: float = Field(0.02, ge=0, le=0.5, description="hue shift drawn in [-h, h] turns, 0..0.5")


class PhotometricDistortParams(Params):
    p: float = prob(1.0)
    brightness: tuple[float, float] = Field((0.875, 1.125), description="brightness factor range (SSD's)")
    contrast: tuple[float, float] = Field((0.5, 1.5), description="contrast factor range")
    saturation: tuple[float, float] = Field((0.5, 1.5), description="saturation factor range")
    hue: tuple[float, float] = Field((-0.05, 0.05), description="hue shift range in turns, within -0.5..0.5")
    each: float = Field(0.5, ge=0, le=1, description="probability of each distortion (and of the channel shuffle)")

    @model_validator(mode="after")
    def _ranges(self) -> PhotometricDistortParams:
        for key in ("brightness", "contrast", "saturation", "hue"):
            low, high = getattr(self, key)
            if low > high or (key != "hue" and low < 0) or (key == "hue" and not -0.5 <= low <= high <= 0.5):
                raise ValueError(f"{key}: ({low}, {high}) is not a valid range (low <= high"
                                 + (", within -0.5..0.5)" if key == "hue" else ", both >= 0)"))
        return self


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


class RandomErasingParams(Params):
    p: float = prob(0.5)
    mode: Literal["image", "object", "both"] = Field(
        "both", description="image: one rectangle anywhere (IRE, as cutout) | object: one inside each box (ORE) "
        "| both: I+ORE, the paper's best for detection")
    box_p: float = Field(0.5, ge=0, le=1, description="probability of erasing inside each box (object, both), 0..1")
    scale_min: float = Field(0.02, gt=0, le=1, description="smallest erased area as a fraction of its region "
                             "(the image, or the box), (0, 1]")
    scale_max: float = Field(0.4, gt=0, le=1, description="largest erased area as a fraction of its region, "
                             "[scale_min, 1]")
    ratio_min: float = Field(0.3, gt=0, description="smallest erased width/height ratio, > 0")
    ratio_max: float = Field(3.3, gt=0, description="largest erased width/height ratio, >= ratio_min")
    value: Annotated[int, Field(ge=0, le=255)] | Literal["random"] = Field(
        "random", description="grey level written into the rectangle, 0..255 | random: uniform random pixels "
        "(the paper's)")

    @model_validator(mode="after")
    def _ordered(self) -> RandomErasingParams:
        if self.scale_min > self.scale_max or self.ratio_min > self.ratio_max:
            raise ValueError("need scale_min <= scale_max and ratio_min <= ratio_max")
        return self


class RotateParams(Params):
    p: float = prob(0.5)
    degrees: float = Field(10.0, ge=0, le=180, description="angle drawn uniformly in [-degrees, degrees], 0..180")
    fill: int = Field(114, ge=0, le=255, description="grey level of the corners rotated in, 0..255")


class AutoAugmentParams(Params):
    p: float = prob(1.0)
    policy: Literal["v0"] = Field(
        "v0", description="v0: the paper's policy, 5 sub-policies of 2 ops (the only one implemented)")


class MixupParams(Params):
    p: float = prob(0.5)
    alpha: float = Field(1.5, gt=0, description="blend weight lam ~ Beta(alpha, alpha), alpha > 0")


class CutMixParams(Params):
    p: float = prob(0.5)
    alpha: float = Field(1.0, gt=0, description="pasted area fraction 1 - lam, lam ~ Beta(alpha, alpha), alpha > 0")
    min_visible: float = Field(
        0.3, ge=0, le=1, description="a box stays while this fraction of its area shows (the sample's outside the "
        "pasted rectangle, the extra's inside it), 0..1")


class MosaicParams(Params):
    p: float = prob(0.5)
    size: int = Field(192, ge=32, description="side of the square output canvas in px, >= 32")
    center_jitter: float = Field(
        0.25, ge=0, le=0.45, description="centre drawn in size * [0.5 - j, 0.5 + j] on each axis, j in 0..0.45"
    )
    fill: int = Field(114, ge=0, le=255, description="grey level of the canvas left uncovered, 0..255")


class CopyPasteParams(Params):
    p: float = prob(0.5)
    n_sources: int = Field(1, ge=1, le=8, description="other samples the objects are taken from, 1..8")
    max_objects: int = Field(3, ge=1, description="most objects pasted per sample, >= 1")
    max_iou: float = Field(0.1, ge=0, le=1, description="largest IoU of a pasted box with any box already there, 0..1")
    trials: int = Field(10, ge=1, description="random places tried per object before giving it up, >= 1")


class AlbumentationsParams(Params):
    p: float = prob(1.0)
    transforms: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomBrightnessContrast", "p": 0.2}],
        min_length=1, description="applied in order, each {name: <an albumentations transform that supports "
        "bounding boxes>, <its keyword>: <value>, ...}; its own p (default 0.5) is the chance it applies")
    min_visibility: float = Field(
        0.0, ge=0, le=1, description="albumentations drops a box with less than this fraction of its area left, 0..1")

    @field_validator("transforms")
    @classmethod
    def _albumentations_knows_them(cls, transforms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # imports albumentations (OpenCV, torch): only a study that names this entry pays for it
        from ablate.tricks.augment.albu import check_transform

        for i, t in enumerate(transforms):
            if not isinstance(t.get("name"), str):
                raise ValueError(f"augment[].transforms[{i}] needs a name: an albumentations transform, "
                                 "e.g. {name: HorizontalFlip, p: 0.5}")
            check_transform(i, t["name"], {k: v for k, v in t.items() if k != "name"})
        return transforms
