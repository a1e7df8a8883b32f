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
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

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


def warp(sample: Sample, kernel: Any, fill: int, **params: Any) -> Sample:
    """Move the image and its boxes alike with a v2 geometric kernel (``F.rotate``, ``F.affine``).

    Each box becomes the axis-aligned box enclosing its moved corners, clamped to the
    canvas (v2's box kernels); pixels moved in from outside take the grey level ``fill``.
    """
    image, target = sample
    return kernel(image, **params, fill=[float(fill)] * 3), {**target, "boxes": kernel(target["boxes"], **params)}


class Rotate(Augment):
    """Rotate about the image centre by an angle drawn uniformly in [-degrees, degrees] (counter-clockwise > 0).

    The canvas keeps its size, so corners leave it and boxes are clipped by ``tidy``.
    """

    def __init__(self, p: float, degrees: float, fill: int):
        super().__init__(p)
        self.degrees, self.fill = degrees, fill

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        angle = float((2 * torch.rand(()) - 1) * self.degrees)
        return warp(sample, F.rotate, self.fill, angle=angle)


# ---- builders ---------------------------------------------------------------


def hflip(p: float) -> Augment:
    return V2Augment(v2.RandomHorizontalFlip(p=1.0), p)


def vflip(p: float) -> Augment:
    return V2Augment(v2.RandomVerticalFlip(p=1.0), p)


def multiscale(p: float, sizes: list[int], max_size: int | None, mode: str = "value") -> Augment:
    if mode == "range":  # every integer size equally likely: RandomShortestSize draws uniformly from its list
        sizes = list(range(sizes[0], sizes[1] + 1))
    return V2Augment(v2.RandomShortestSize(min_size=list(sizes), max_size=max_size), p)


def random_crop(
    p: float, min_scale: float, max_scale: float, min_aspect_ratio: float, max_aspect_ratio: float, trials: int
) -> Augment:
    crop = v2.RandomIoUCrop(min_scale, max_scale, min_aspect_ratio, max_aspect_ratio, trials=trials)
    return V2Augment(crop, p)


def zoom_out(p: float, max_ratio: float, fill: tuple[int, int, int]) -> Augment:
    zoom = v2.RandomZoomOut(fill={tv_tensors.Image: list(fill), "others": 0}, side_range=(1.0, max_ratio), p=1.0)
    return V2Augment(zoom, p)
