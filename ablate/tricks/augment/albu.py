"""An albumentations pipeline as an ``Augment``; its transform names are checked against albumentations itself.

Imported only when a study names the ``albumentations`` entry: albumentations imports
OpenCV and torch.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from ablate.errors import did_you_mean
from ablate.tricks.augment.geometric import Augment, Sample

# they turn the uint8 0..255 image into floats (or back), which the sample contract forbids
NOT_UINT8 = frozenset({"Normalize", "ToFloat", "FromFloat"})


def albumentations() -> Any:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else its import asks PyPI for a newer version
    import albumentations

    return albumentations


@functools.cache
def transform_names() -> tuple[str, ...]:
    """The 2-D transforms that take boxes: image-only ones (boxes pass unchanged) and dual ones that move them."""
    from albumentations.core.transforms_interface import DualTransform, ImageOnlyTransform
    from albumentations.core.type_definitions import Targets

    a = albumentations()
    names = []
    for name in dir(a):
        cls = getattr(a, name)
        if not isinstance(cls, type) or name in NOT_UINT8 or cls in (DualTransform, ImageOnlyTransform):
            continue
        if issubclass(cls, ImageOnlyTransform) or (
                issubclass(cls, DualTransform) and Targets.BBOXES in getattr(cls, "_targets", ())):
            names.append(name)
    return tuple(names)


def check_transform(i: int, name: str, kwargs: dict[str, Any]) -> Any:
    """Build ``augment[].transforms[i]``, or fail naming that key, the transform and what would have worked."""
    names = transform_names()
    if name not in names:
        raise ValueError(f"augment[].transforms[{i}].name: '{name}' is not an albumentations transform that "
                         f"supports bounding boxes{did_you_mean(name, names)}")
    cls = getattr(albumentations(), name)
    accepted = [k for k, v in inspect.signature(cls).parameters.items()
                if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD) and k != "always_apply"]
    for key in kwargs:  # albumentations only warns about an unknown keyword
        if key not in accepted:
            raise ValueError(f"augment[].transforms[{i}].{key}: {name} takes no '{key}'"
                             f"{did_you_mean(key, accepted)}; it takes {', '.join(accepted)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # its own pydantic check of the values
        raise ValueError(f"augment[].transforms[{i}] ({name}): {e}") from None


class Albumentations(Augment):
    """``A.Compose(transforms)`` with pascal_voc (XYXY px) boxes and their labels.

    Each transform keeps its own ``p``.  The image goes to albumentations as uint8
    [H, W, 3] and comes back as uint8 [3, H', W']; a box albumentations drops (less than
    ``min_visibility`` of its area left) loses its label with it.  Its random draws are
    seeded from torch's global RNG, so a seeded run replays.
    """

    def __init__(self, p: float, transforms: list[dict[str, Any]], min_visibility: float):
        super().__init__(p)
        a = albumentations()
        ops = [check_transform(i, t["name"], {k: v for k, v in t.items() if k != "name"})
               for i, t in enumerate(transforms)]
        self.compose = a.Compose(ops, bbox_params=a.BboxParams(
            format="pascal_voc", label_fields=["labels"], min_visibility=min_visibility, clip=True))

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        image, target = sample
        # one seed each: seeded alike, two transforms with the same p would fire together
        seeds = torch.randint(2**31, (len(self.compose.transforms) + 1,)).tolist()
        self.compose.set_random_seed(seeds[0])
        for transform, seed in zip(self.compose.transforms, seeds[1:]):
            transform.set_random_seed(seed)
        boxes = target["boxes"].as_subclass(torch.Tensor)  # [N, 4]
        ok = ((boxes[:, 2:] - boxes[:, :2]) > 0).all(1)  # albumentations rejects empty boxes; tidy drops them anyway
        out = self.compose(image=image.permute(1, 2, 0).contiguous().numpy(),
                           bboxes=boxes[ok].numpy(), labels=target["labels"][ok].numpy())
        pixels = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1)  # [3, H', W'] uint8
        new = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32)).reshape(-1, 4)
        h, w = pixels.shape[-2:]
        boxes = tv_tensors.wrap(new, like=target["boxes"], canvas_size=(h, w))
        labels = torch.as_tensor(np.asarray(out["labels"], dtype=np.int64)).reshape(-1)
        return tv_tensors.Image(pixels), {**target, "boxes": boxes, "labels": labels}
