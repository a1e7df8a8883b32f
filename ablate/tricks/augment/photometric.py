"""Photometric augmentations (torchvision v2): pixels change, boxes do not."""

from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ablate.tricks.augment.geometric import Augment, Sample, V2Augment

# ---- builders ---------------------------------------------------------------


def photometric(p: float, brightness: float, contrast: float, saturation: float, hue: float) -> Augment:
    return V2Augment(v2.ColorJitter(brightness, contrast, saturation, hue), p)


def photometric_distort(p: float, brightness: tuple, contrast: tuple, saturation: tuple, hue: tuple,
                        each: float) -> Augment:
    return V2Augment(v2.RandomPhotometricDistort(brightness, contrast, saturation, hue, p=each), p)


def blur(p: float, kernel_size: int, sigma_min: float, sigma_max: float) -> Augment:
    return V2Augment(v2.GaussianBlur(kernel_size, sigma=(sigma_min, sigma_max)), p)


def cutout(p: float, scale_min: float, scale_max: float, ratio_min: float, ratio_max: float, value: int) -> Augment:
    # image only: v2.RandomErasing passes boxes through but warns about it on every call
    erase = v2.RandomErasing(p=1.0, scale=(scale_min, scale_max), ratio=(ratio_min, ratio_max), value=value)
    return V2Augment(erase, p, image_only=True)


class RandomErasing(Augment):
    """Random Erasing for detection (Zhong et al. 2020): IRE, ORE or I+ORE; boxes unchanged.

    ``mode``: image (IRE) erases one rectangle anywhere, as ``cutout`` does; object (ORE)
    erases one rectangle inside each box, each box with probability ``box_p``; both
    (I+ORE) does the two.  A rectangle covers a drawn fraction of its region's area with a
    log-uniform width/height ratio (10 draws, as torchvision; none fits: nothing erased);
    inside a box it stays within the box's whole pixels.  ``value``: a grey level, or
    ``"random"`` for uniform random pixels (the paper's).
    """

    def __init__(self, p: float, mode: str, box_p: float, scale_min: float, scale_max: float,
                 ratio_min: float, ratio_max: float, value: int | str):
        super().__init__(p)
        self.mode, self.box_p, self.value = mode, box_p, value
        self.scale, self.log_ratio = (scale_min, scale_max), (math.log(ratio_min), math.log(ratio_max))

    def _erase(self, image: torch.Tensor, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
        """Erase a random rectangle inside columns x0..x1-1, rows y0..y1-1 of image [3, H, W]."""
        h, w = y1 - y0, x1 - x0
        for _ in range(10):
            area = h * w * float(torch.empty(()).uniform_(*self.scale))
            ratio = math.exp(float(torch.empty(()).uniform_(*self.log_ratio)))
            eh, ew = round(math.sqrt(area / ratio)), round(math.sqrt(area * ratio))
            if 0 < eh <= h and 0 < ew <= w:
                i, j = y0 + int(torch.randint(0, h - eh + 1, ())), x0 + int(torch.randint(0, w - ew + 1, ()))
                v = (torch.randint(0, 256, (3, eh, ew), dtype=torch.uint8) if self.value == "random"
                     else torch.tensor(self.value, dtype=torch.uint8))
                return F.erase(image, i, j, eh, ew, v)
        return image

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        image, target = sample
        h, w = image.shape[-2:]
        if self.mode in ("image", "both"):
            image = self._erase(image, 0, 0, w, h)
        if self.mode in ("object", "both"):
            for x0, y0, x1, y1 in target["boxes"].tolist():
                if torch.rand(()) < self.box_p:  # rounded inwards so no pixel outside the box changes
                    x0, y0, x1, y1 = max(0, math.ceil(x0)), max(0, math.ceil(y0)), min(w, int(x1)), min(h, int(y1))
                    if x1 > x0 and y1 > y0:
                        image = self._erase(image, x0, y0, x1, y1)
        return tv_tensors.Image(image), target
