"""Box-aware train-time augmentations.

``AUGMENTS[name].build(**params)`` returns an ``Augment``: call it as
``aug(sample, extras)`` where ``sample = (image, target)`` (see ``geometric``) and
``extras`` holds ``aug.n_extra`` other samples drawn by the dataset (0 for
single-image transforms, 1 for mixup, 3 for mosaic, ``n_sources`` for copy_paste).
Each applies with probability ``p`` and then clips boxes to the image and drops
those under 1 px, labels kept aligned.  Randomness is torch's global RNG.
"""

from ablate.tricks.augment.geometric import (
    Augment,
    FlipParams,
    MultiscaleParams,
    RandomCropParams,
    Sample,
    ZoomOutParams,
    hflip,
    make_sample,
    multiscale,
    random_crop,
    tidy,
    vflip,
    zoom_out,
)
from ablate.tricks.augment.mixing import CopyPaste, CopyPasteParams, Mixup, MixupParams, Mosaic, MosaicParams
from ablate.tricks.augment.photometric import BlurParams, CutoutParams, PhotometricParams, blur, cutout, photometric
from ablate.tricks.registry import Trick

AUGMENTS: dict[str, Trick] = {
    "hflip": Trick(hflip, FlipParams, "mirror left-right (v2.RandomHorizontalFlip)"),
    "vflip": Trick(vflip, FlipParams, "mirror top-bottom (v2.RandomVerticalFlip)"),
    "multiscale": Trick(multiscale, MultiscaleParams, "shorter side to one of `sizes` (v2.RandomShortestSize)"),
    "random_crop": Trick(random_crop, RandomCropParams, "SSD crop keeping a drawn min IoU with a box (RandomIoUCrop)"),
    "zoom_out": Trick(zoom_out, ZoomOutParams, "paste onto a larger mean-filled canvas (v2.RandomZoomOut)"),
    "photometric": Trick(photometric, PhotometricParams, "jitter brightness, contrast, saturation, hue (ColorJitter)"),
    "blur": Trick(blur, BlurParams, "Gaussian blur with a random sigma (v2.GaussianBlur)"),
    "cutout": Trick(cutout, CutoutParams, "erase a random rectangle, boxes unchanged (v2.RandomErasing)"),
    "mixup": Trick(Mixup, MixupParams, "blend with another sample, lam ~ Beta(alpha, alpha), keep both box sets"),
    "mosaic": Trick(Mosaic, MosaicParams, "tile the sample and 3 others in quadrants around a random centre"),
    "copy_paste": Trick(CopyPaste, CopyPasteParams, "paste box crops from other samples where they barely overlap"),
}

__all__ = ["AUGMENTS", "Augment", "Sample", "make_sample", "tidy"]
