"""Geometric augmentations (torchvision v2) and the base every augmentation shares.

A sample is ``(image, target)``: ``image`` a ``tv_tensors.Image`` uint8 [3, H, W],
``target`` a dict with ``"boxes"`` (``tv_tensors.BoundingBoxes``, XYXY, float32,
``canvas_size=(H, W)``) and ``"labels"`` (int64 [N]); any other key is per image
(``"image_id"``, ...) and is carried through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field, PositiveInt, model_validator
from torchvision import tv_tensors
from torchvision.transforms import v2

from ablate.tricks.registry import Params

Sample = tuple[tv_tensors.Image, dict[str, Any]]


def make_sample(image: torch.Tensor, boxes: Any, labels: Any, **extra: Any) -> Sample:
    """Wrap plain tensors (uint8 [3, H, W], XYXY [N, 4], [N]) into the sample contract."""
    image = tv_tensors.Image(image)
    boxes = tv_tensors.BoundingBoxes(
        torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        format="XYXY", canvas_size=tuple(image.shape[-2:]),
    )
    return image, {"boxes": boxes, "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1), **extra}


def _labels(sample: Sample) -> torch.Tensor:
    # module-level, not a lambda: the dataset may be pickled into DataLoader workers
    return sample[1]["labels"]


_CLAMP = v2.ClampBoundingBoxes(clamping_mode="hard")
_SANITIZE = v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels)


def tidy(sample: Sample) -> Sample:
    """Clip boxes to the canvas, then drop those under 1 px wide or high (and their labels)."""
    return _SANITIZE(_CLAMP(sample))


class Augment:
    """Applies ``apply`` with probability ``p``, then ``tidy``; the sample is untouched otherwise.

    ``n_extra`` is how many other samples the caller must pass as ``extras``.
    """

    n_extra: int = 0

    def __init__(self, p: float):
        self.p = p

    def __call__(self, sample: Sample, extras: Sequence[Sample] = ()) -> Sample:
        if len(extras) != self.n_extra:
            raise ValueError(f"{type(self).__name__} needs {self.n_extra} extra samples, got {len(extras)}")
        if torch.rand(()) >= self.p:  # global RNG, like v2's own p
            return sample
        return tidy(self.apply(sample, tuple(extras)))

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        raise NotImplementedError


class V2Augment(Augment):
    """A torchvision v2 transform as an ``Augment``; ``image_only`` hides the boxes from it."""

    def __init__(self, transform: v2.Transform, p: float, image_only: bool = False):
        super().__init__(p)
        self.transform, self.image_only = transform, image_only

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        if self.image_only:
            return self.transform(sample[0]), sample[1]
        return self.transform(sample)

    def __repr__(self) -> str:
        return f"V2Augment({self.transform!r}, p={self.p})"


def prob(default: float) -> Any:
    return Field(default, ge=0.0, le=1.0, description="probability of applying it to a sample, 0..1")


# ---- parameters -------------------------------------------------------------


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


# ---- builders ---------------------------------------------------------------


def hflip(p: float) -> Augment:
    return V2Augment(v2.RandomHorizontalFlip(p=1.0), p)


def vflip(p: float) -> Augment:
    return V2Augment(v2.RandomVerticalFlip(p=1.0), p)


def multiscale(p: float, sizes: list[int], max_size: int | None) -> Augment:
    return V2Augment(v2.RandomShortestSize(min_size=list(sizes), max_size=max_size), p)


def random_crop(
    p: float, min_scale: float, max_scale: float, min_aspect_ratio: float, max_aspect_ratio: float, trials: int
) -> Augment:
    crop = v2.RandomIoUCrop(min_scale, max_scale, min_aspect_ratio, max_aspect_ratio, trials=trials)
    return V2Augment(crop, p)


def zoom_out(p: float, max_ratio: float, fill: tuple[int, int, int]) -> Augment:
    zoom = v2.RandomZoomOut(fill={tv_tensors.Image: list(fill), "others": 0}, side_range=(1.0, max_ratio), p=1.0)
    return V2Augment(zoom, p)
