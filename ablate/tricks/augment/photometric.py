"""Photometric augmentations (torchvision v2): pixels change, boxes do not."""

from __future__ import annotations

from torchvision.transforms import v2

from ablate.tricks.augment.geometric import Augment, V2Augment

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
