"""Box-aware train-time augmentations.

``AUGMENTS[name].build(**params)`` returns an ``Augment`` (see ``geometric``): call it
as ``aug(sample, extras)`` where ``sample = (image, target)`` and ``extras`` holds
``aug.n_extra`` other samples drawn by the dataset (0 for single-image transforms,
1 for mixup and cutmix, 3 for mosaic, ``n_sources`` for copy_paste).  Each applies with
probability ``p`` and then clips boxes to the image and drops those under 1 px,
labels kept aligned.  Randomness is torch's global RNG.  The builders live in
``geometric``, ``photometric``, ``mixing``, ``autoaugment`` and ``albu``, imported when a
trial builds one (``albu`` also when a study naming it is validated).
"""

from ablate.tricks.augment.params import (
    AlbumentationsParams,
    AutoAugmentParams,
    BlurParams,
    CopyPasteParams,
    CutMixParams,
    CutoutParams,
    FlipParams,
    MixupParams,
    MosaicParams,
    MultiscaleParams,
    PhotometricDistortParams,
    PhotometricParams,
    RandomCropParams,
    RandomErasingParams,
    RotateParams,
    ZoomOutParams,
)
from ablate.tricks.registry import Lazy, Trick


def _geometric():  # imported when a trial builds one of its entries
    from ablate.tricks.augment import geometric

    return geometric


def _photometric():  # imported when a trial builds one of its entries
    from ablate.tricks.augment import photometric

    return photometric


def _mixing():  # imported when a trial builds one of its entries
    from ablate.tricks.augment import mixing

    return mixing


def _autoaugment():  # imported when a trial builds it
    from ablate.tricks.augment import autoaugment

    return autoaugment


def _albu():  # imported when a trial builds it
    from ablate.tricks.augment import albu

    return albu


AUGMENTS: dict[str, Trick] = {
    "hflip": Trick(Lazy(lambda: _geometric().hflip), FlipParams, "mirror left-right (v2.RandomHorizontalFlip)"),
    "vflip": Trick(Lazy(lambda: _geometric().vflip), FlipParams, "mirror top-bottom (v2.RandomVerticalFlip)"),
    "multiscale": Trick(Lazy(lambda: _geometric().multiscale), MultiscaleParams, "shorter side to one of `sizes` (v2.RandomShortestSize)"),
    "random_crop": Trick(Lazy(lambda: _geometric().random_crop), RandomCropParams, "SSD crop keeping a drawn min IoU with a box (RandomIoUCrop)"),
    "zoom_out": Trick(Lazy(lambda: _geometric().zoom_out), ZoomOutParams, "paste onto a larger mean-filled canvas (v2.RandomZoomOut)"),
    "photometric": Trick(Lazy(lambda: _photometric().photometric), PhotometricParams, "jitter brightness, contrast, saturation, hue (ColorJitter)"),
    "photometric_distort": Trick(Lazy(lambda: _photometric().photometric_distort), PhotometricDistortParams,
                                 "SSD's photometric distortions in random order, channel shuffle included "
                                 "(v2.RandomPhotometricDistort); SSD's policy: [photometric_distort, zoom_out, "
                                 "random_crop, hflip]"),
    "blur": Trick(Lazy(lambda: _photometric().blur), BlurParams, "Gaussian blur with a random sigma (v2.GaussianBlur)"),
    "cutout": Trick(Lazy(lambda: _photometric().cutout), CutoutParams, "erase a random rectangle, boxes unchanged (v2.RandomErasing)"),
    "mixup": Trick(Lazy(lambda: _mixing().Mixup), MixupParams, "blend with another sample, lam ~ Beta(alpha, alpha), keep both box sets"),
    "mosaic": Trick(Lazy(lambda: _mixing().Mosaic), MosaicParams, "tile the sample and 3 others in quadrants around a random centre"),
    "copy_paste": Trick(Lazy(lambda: _mixing().CopyPaste), CopyPasteParams, "paste box crops from other samples where they barely overlap"),
    "cutmix": Trick(Lazy(lambda: _mixing().CutMix), CutMixParams,
                    "paste a rectangle of another sample, boxes of both kept where visible (CutMix, Yun et al. 2019; "
                    "YOLOv4's bag of freebies)"),
    "random_erasing": Trick(Lazy(lambda: _photometric().RandomErasing), RandomErasingParams,
                            "erase a rectangle inside each box (object mode, what cutout lacks), in the image, or both "
                            "(Random Erasing, Zhong et al. 2020)"),
    "rotate": Trick(Lazy(lambda: _geometric().Rotate), RotateParams,
                    "rotate by a random angle, boxes enclose their rotated corners (v2.functional.rotate)"),
    "autoaugment": Trick(Lazy(lambda: _autoaugment().AutoAugment), AutoAugmentParams,
                         "learned detection policy v0, one random sub-policy per sample (Zoph et al. 2020, "
                         "Learning Data Augmentation Strategies for Object Detection)"),
    "albumentations": Trick(Lazy(lambda: _albu().Albumentations), AlbumentationsParams,
                            "an albumentations Compose of named transforms with pascal_voc boxes (Buslaev et al. 2020)"),
}
