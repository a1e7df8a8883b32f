"""The torch side: a detection ``Dataset`` over ``ImageRecord``s, its sampler and collate.

A train sample is decoded, resized so its shorter side is ``image_size`` (the longer
capped at ``image_size * 1333 / 800``, as torchvision's detectors do), augmented in
list order, tidied and scaled to float; with ``cache`` the decoded, base-resized images come
from a split's shared memory-mapped file (``ablate.data.decoded``) instead.  Its randomness comes from a seed the sampler
draws from the loader's generator, so a batch depends only on that generator: not on
the number of workers, nor on the global RNG of the trial process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ablate.data.coco import ImageRecord, base_size
from ablate.data.decoded import DecodedImages, open_or_build
from ablate.errors import DataError
from ablate.tricks.augment.geometric import Augment, Sample, make_sample, tidy

Target = dict[str, Any]  # {"boxes": float32 [N, 4] XYXY, "labels": int64 [N], "image_id": int}


def read_image(path: str, image_id: int) -> torch.Tensor:
    """Decode to uint8 [3, H, W] RGB; any failure is a ``DataError`` naming the file and image id.

    PIL rather than ``torchvision.io``, whose decoders are deprecated since torchvision 0.29.
    """
    try:
        with Image.open(path) as im:
            array = np.array(im.convert("RGB"))  # [H, W, 3]; convert forces the full decode
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise DataError(f"cannot read image '{path}' (image id {image_id}): {type(e).__name__}: {e}") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with torch's global CPU RNG seeded, then put its state back."""
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(state)


class DetectionDataset(Dataset):
    """Samples of a split.

    Args:
        records: the images and their training targets.
        image_size: shorter side after the base resize; None keeps the original size (val).
        augments: applied in order; each ``aug.n_extra`` extras are other records drawn
            at random, loaded and base-resized but not augmented.
        train: tidy the boxes after resizing and augmenting (clip, drop those under 1 px).

    Indexed by ``i`` or by ``(i, seed)``; with a seed the sample's randomness is fixed.
    """

    def __init__(self, records: Sequence[ImageRecord], *, image_size: int | None = None,
                 augments: Sequence[Augment] = (), train: bool = False):
        self.records, self.image_size, self.augments, self.train = list(records), image_size, list(augments), train
        self.decoded: DecodedImages | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        if isinstance(key, tuple):
            with seeded(key[1]):
                return self._make(key[0])
        return self._make(key)

    def cache(self, folder: Path, what: str) -> None:
        """Read the decoded, base-resized images from the shared cache in ``folder`` (built on first use)."""
        self.decoded = open_or_build(folder, self.records, self.image_size, self.decode, what=what)

    def decode(self, i: int) -> torch.Tensor:
        """Record ``i``'s image decoded, checked against its annotation and base-resized: uint8 [3, h, w]."""
        rec = self.records[i]
        image = read_image(rec.path, rec.image_id)
        if tuple(image.shape[-2:]) != (rec.height, rec.width):
            raise DataError(f"image '{rec.path}' (image id {rec.image_id}) is {image.shape[-1]}x{image.shape[-2]} "
                            f"pixels but its annotation says {rec.width}x{rec.height}")
        if self.image_size is not None:
            size = base_size(rec.height, rec.width, self.image_size)
            if size != (rec.height, rec.width):
                image = F.resize(image, list(size), antialias=True)
        return image

    def load(self, i: int) -> Sample:
        """Record ``i`` decoded and base-resized (from the cache when there is one), as an augmentation sample."""
        rec = self.records[i]
        image = self.decoded[i] if self.decoded is not None else self.decode(i)
        boxes = torch.from_numpy(rec.boxes)  # [N, 4] XYXY in the original pixels
        if tuple(image.shape[-2:]) != (rec.height, rec.width):
            original = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(rec.height, rec.width))
            boxes = F.resize(original, list(image.shape[-2:]))
        return make_sample(image, boxes, torch.from_numpy(rec.labels), image_id=rec.image_id)

    def _others(self, i: int, n: int) -> list[int]:
        """``n`` random indices other than ``i`` (``i`` itself when it is the only record)."""
        if len(self) == 1:
            return [i] * n
        draws = torch.randint(0, len(self) - 1, (n,))  # [n] over the other len - 1 records
        return [j + (j >= i) for j in draws.tolist()]

    def _make(self, i: int) -> tuple[torch.Tensor, Target]:
        sample = self.load(i)
        for aug in self.augments:
            sample = aug(sample, [self.load(j) for j in self._others(i, aug.n_extra)])
        if self.train:
            sample = tidy(sample)
        image, target = sample
        return to_float(image), {
            "boxes": target["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4),  # [N, 4]
            "labels": target["labels"].to(torch.int64),  # [N]
            "image_id": int(target["image_id"]),
        }


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 [3, H, W] -> plain float32 [3, H, W] in [0, 1]."""
    return image.as_subclass(torch.Tensor).to(torch.float32).div_(255)


class SeededSampler(Sampler[tuple[int, int]]):
    """Each epoch: a permutation of ``range(n)`` with one seed per sample, both from ``generator``."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.n, generator=self.generator)  # [n]
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.generator)  # [n]
        yield from zip(order.tolist(), seeds.tolist())


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Lists, not a stacked tensor: images in a batch may differ in size."""
    return [image for image, _ in batch], [target for _, target in batch]
