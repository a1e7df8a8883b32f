"""AutoAugment's learned detection policy (Zoph et al. 2020), box-aware through ``v2.functional``.

Each op is ``(name, probability, level)``, level 0..10; the level maps to an argument as
in the reference (tensorflow/tpu ``models/official/detection/utils/autoaugment_utils.py``):

- TranslateX/Y_BBox: +-level/10 * 250 px, image and boxes; Only_BBoxes: +-level/10 * 120 px
- ShearX/Y_BBox: shear factor +-level/10 * 0.3 about the top-left corner
- Rotate_BBox: +-level/10 * 30 degrees about the centre
- Cutout: a square of side 2 * level/10 * 100 px, centred on a uniform pixel
- Color, Sharpness: enhance factor level/10 * 1.8 + 0.1 (Color: saturation)
- Equalize: histogram equalisation, no argument

Signs are drawn per use.  Pixels moved in or erased take grey 128.  An ``_Only_BBoxes``
op always runs and applies to each box with probability p / 3, moving only the pixels
inside that box (the box does not move), as the reference does.  The pixel magnitudes
are the reference's for COCO images of about 640 px; here they scale with the image's
longer side / 640 so a small image is not pushed off its canvas.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ablate.tricks.augment.geometric import Augment, Sample, warp

FILL = 128  # the reference's replace value
REF_SIDE = 640  # the image side the reference's pixel magnitudes were chosen for

POLICIES = {
    "v0": [  # the policy of the paper's results
        [("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)],
        [("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)],
        [("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)],
        [("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)],
        [("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)],
    ],
}


def _signed(x: float) -> float:
    return x if torch.rand(()) < 0.5 else -x


def _px(level: int, const: float, image: torch.Tensor) -> int:
    return round(level / 10 * const * max(image.shape[-2:]) / REF_SIDE)


def _enhance(level: int) -> float:
    return level / 10 * 1.8 + 0.1


def _translate(sample: Sample, level: int, axis: int) -> Sample:
    d = float(_signed(_px(level, 250, sample[0])))
    return warp(sample, F.affine, FILL, angle=0.0, translate=[d, 0.0] if axis == 0 else [0.0, d], scale=1.0,
                shear=[0.0, 0.0])


def _shear(sample: Sample, level: int, axis: int) -> Sample:
    deg = math.degrees(math.atan(_signed(level / 10 * 0.3)))  # v2 takes the shear as an angle: factor = tan
    return warp(sample, F.affine, FILL, angle=0.0, translate=[0.0, 0.0], scale=1.0,
                shear=[deg, 0.0] if axis == 0 else [0.0, deg], center=[0.0, 0.0])


def _cutout(sample: Sample, level: int) -> Sample:
    image, target = sample
    h, w = image.shape[-2:]
    pad, cy, cx = _px(level, 100, image), int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
    y0, y1, x0, x1 = max(0, cy - pad), min(h, cy + pad), max(0, cx - pad), min(w, cx + pad)
    if y1 <= y0 or x1 <= x0:
        return sample
    return F.erase(image, y0, x0, y1 - y0, x1 - x0, torch.tensor(FILL, dtype=torch.uint8)), target


def _translate_y_only_bboxes(sample: Sample, level: int, box_p: float) -> Sample:
    image, target = sample
    image = image.clone()
    h, w = image.shape[-2:]
    d = float(_signed(_px(level, 120, image)))  # one shift for every box, as the reference's graph draws it
    boxes = target["boxes"].tolist()
    for k in torch.randperm(len(boxes)).tolist():  # shuffled: a later box overwrites an overlapping earlier one
        if torch.rand(()) >= box_p:
            continue
        x0, y0, x1, y1 = boxes[k]
        x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, math.ceil(x1)), min(h, math.ceil(y1))
        if x1 > x0 and y1 > y0:
            crop = image[:, y0:y1, x0:x1]  # [3, bh, bw]
            image[:, y0:y1, x0:x1] = F.affine(crop, angle=0.0, translate=[0.0, d], scale=1.0, shear=[0.0, 0.0],
                                              fill=[float(FILL)] * 3)
    return tv_tensors.Image(image), target


OPS: dict[str, Callable[..., Sample]] = {
    "TranslateX_BBox": lambda s, level: _translate(s, level, 0),
    "TranslateY_BBox": lambda s, level: _translate(s, level, 1),
    "ShearX_BBox": lambda s, level: _shear(s, level, 0),
    "ShearY_BBox": lambda s, level: _shear(s, level, 1),
    "Rotate_BBox": lambda s, level: warp(s, F.rotate, FILL, angle=_signed(level / 10 * 30)),
    "Equalize": lambda s, level: (F.equalize(s[0]), s[1]),
    "Color": lambda s, level: (F.adjust_saturation(s[0], _enhance(level)), s[1]),
    "Sharpness": lambda s, level: (F.adjust_sharpness(s[0], _enhance(level)), s[1]),
    "Cutout": _cutout,
    "TranslateY_Only_BBoxes": _translate_y_only_bboxes,  # called with the per-box probability too
}


class AutoAugment(Augment):
    """Apply one sub-policy of ``POLICIES[policy]``, drawn uniformly per sample, its ops in order."""

    def __init__(self, p: float, policy: str):
        super().__init__(p)
        self.policy = POLICIES[policy]

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        for name, prob, level in self.policy[int(torch.randint(len(self.policy), ()))]:
            if name.endswith("_Only_BBoxes"):
                sample = OPS[name](sample, level, prob / 3)  # the reference's per-box probability
            elif torch.rand(()) < prob:
                sample = OPS[name](sample, level)
        return sample
