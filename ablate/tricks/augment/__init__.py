"""Box-aware train-time augmentations.

``AUGMENTS[name].build(**params)`` returns an ``Augment`` (see ``geometric``): call it
as ``aug(sample, extras)`` where ``sample = (image, target)`` and ``extras`` holds
``aug.n_extra`` other samples drawn by the dataset (0 for single-image transforms,
1 for mixup, 3 for mosaic, ``n_sources`` for copy_paste).  Each applies with
probability ``p`` and then clips boxes to the image and drops those under 1 px,
labels kept aligned.  Randomness is torch's global RNG.  The builders live in
``geometric``, ``photometric`` and ``mixing``, imported when a trial builds one.
"""

from ablate.tricks.augment.params import (
    BlurParams,
    CopyPasteParams,
    CutoutParams,
    FlipParams,
    MixupParams,
    MosaicParams,
    MultiscaleParams,
    PhotometricParams,
    RandomCropParams,
    ZoomOutParams,
)
from ablate.tricks.registry import Trick

GEOMETRIC = "ablate.tricks.augment.geometric:"
PHOTOMETRIC = "ablate.tricks.augment.photometric:"
MIXING = "ablate.tricks.augment.mixing:"

AUGMENTS: dict[str, Trick] = {
    "hflip": Trick(GEOMETRIC + "hflip", FlipParams, "mirror left-right (v2.RandomHorizontalFlip)"),
    "vflip": Trick(GEOMETRIC + "vflip", FlipParams, "mirror top-bottom (v2.RandomVerticalFlip)"),
    "multiscale": Trick(GEOMETRIC + "multiscale", MultiscaleParams, "shorter side to one of `sizes` (v2.RandomShortestSize)"),
    "random_crop": Trick(GEOMETRIC + "random_crop", RandomCropParams, "SSD crop keeping a drawn min IoU with a box (RandomIoUCrop)"),
    "zoom_out": Trick(GEOMETRIC + "zoom_out", ZoomOutParams, "paste onto a larger mean-filled canvas (v2.RandomZoomOut)"),
    "photometric": Trick(PHOTOMETRIC + "photometric", PhotometricParams, "jitter brightness, contrast, saturation, hue (ColorJitter)"),
    "blur": Trick(PHOTOMETRIC + "blur", BlurParams, "Gaussian blur with a random sigma (v2.GaussianBlur)"),
    "cutout": Trick(PHOTOMETRIC + "cutout", CutoutParams, "erase a random rectangle, boxes unchanged (v2.RandomErasing)"),
    "mixup": Trick(MIXING + "Mixup", MixupParams, "blend with another sample, lam ~ Beta(alpha, alpha), keep both box sets"),
    "mosaic": Trick(MIXING + "Mosaic", MosaicParams, "tile the sample and 3 others in quadrants around a random centre"),
    "copy_paste": Trick(MIXING + "CopyPaste", CopyPasteParams, "paste box crops from other samples where they barely overlap"),
}
