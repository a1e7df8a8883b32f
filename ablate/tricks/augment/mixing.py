"""Augmentations that mix samples, which torchvision v2 lacks: mixup, cutmix, mosaic, copy-paste.

Geometry goes through ``v2.functional`` so image and boxes always move together.
"""

from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms.v2 import functional as F

from ablate.tricks.augment.geometric import Augment, Sample

# ---- helpers ----------------------------------------------------------------


def _resize(image: tv_tensors.Image, boxes: tv_tensors.BoundingBoxes, h: int, w: int):
    if (h, w) == tuple(image.shape[-2:]):
        return image, boxes
    return F.resize(image, [h, w], antialias=True), F.resize(boxes, [h, w])


def _fit(image: tv_tensors.Image, boxes: tv_tensors.BoundingBoxes, h: int, w: int, upscale: bool):
    """Resize keeping the aspect ratio so the image fits in h x w; returns the new size too."""
    ih, iw = image.shape[-2:]
    scale = min(h / ih, w / iw) if upscale else min(h / ih, w / iw, 1.0)
    nh, nw = max(1, min(h, round(ih * scale))), max(1, min(w, round(iw * scale)))
    return (*_resize(image, boxes, nh, nw), nh, nw)


def _merge(target: dict, boxes: list[torch.Tensor], labels: list[torch.Tensor], canvas: tuple[int, int]) -> dict:
    like = target["boxes"]
    out = tv_tensors.wrap(torch.cat([b.as_subclass(torch.Tensor) for b in boxes]).to(like.dtype), like=like,
                          canvas_size=canvas)
    return {**target, "boxes": out, "labels": torch.cat(labels)}


# ---- mixup ------------------------------------------------------------------


class Mixup(Augment):
    """Detection mixup (Zhang et al. 2019, "Bag of Freebies"): blend two images, keep both box sets.

    The extra keeps its aspect ratio, is shrunk only if larger than the sample, and
    sits at the top left, padded with zeros; the output has the sample's canvas.
    """

    n_extra = 1

    def __init__(self, p: float, alpha: float):
        super().__init__(p)
        self.beta = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        (image, target), (other, other_target) = sample, extras[0]
        h, w = image.shape[-2:]
        lam = float(self.beta.sample())
        other, other_boxes, oh, ow = _fit(other, other_target["boxes"], h, w, upscale=False)
        pad = [0, 0, w - ow, h - oh]  # left, top, right, bottom
        other, other_boxes = F.pad(other, pad, fill=0), F.pad(other_boxes, pad)
        mixed = (lam * image.float() + (1 - lam) * other.float()).round().clamp(0, 255).to(torch.uint8)
        target = _merge(target, [target["boxes"], other_boxes], [target["labels"], other_target["labels"]], (h, w))
        return tv_tensors.Image(mixed), target


# ---- cutmix -----------------------------------------------------------------


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(1)  # [N], 0 for an empty box


class CutMix(Augment):
    """CutMix for detection (Yun et al. 2019, in YOLOv4's bag of freebies): paste a rectangle of another sample.

    The extra is resized to the sample's size (aspect ratio not kept) and the rectangle
    is cut from the same place in both: area (1 - lam) * H * W, lam ~ Beta(alpha, alpha),
    the image's aspect ratio, a uniform centre, clipped to the image (CutMix's sampling).
    Each box of either image stays while at least ``min_visible`` of its area shows: the
    extra's boxes are clipped to the rectangle; a sample box the rectangle crosses from
    one side over its whole height (width) shrinks to its visible part, other partly
    covered ones are kept whole, since their visible part is no rectangle.
    """

    n_extra = 1

    def __init__(self, p: float, alpha: float, min_visible: float):
        super().__init__(p)
        self.beta = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
        self.min_visible = min_visible

    def _rect(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The pasted rectangle x0, y0, x1, y1 in whole pixels, CutMix's sampling."""
        side = math.sqrt(1 - float(self.beta.sample()))  # rectangle side / image side
        cx, cy = (torch.rand(2) * torch.tensor([w, h])).tolist()
        return (round(max(0.0, cx - side * w / 2)), round(max(0.0, cy - side * h / 2)),
                round(min(float(w), cx + side * w / 2)), round(min(float(h), cy + side * h / 2)))

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        (image, target), (other, other_target) = sample, extras[0]
        h, w = image.shape[-2:]
        other, pasted = _resize(other, other_target["boxes"], h, w)
        x0, y0, x1, y1 = self._rect(h, w)
        image = image.clone()
        image[:, y0:y1, x0:x1] = other[:, y0:y1, x0:x1]
        rx0, ry0, rx1, ry1 = (torch.tensor(v, dtype=torch.float32) for v in (x0, y0, x1, y1))

        boxes = target["boxes"].as_subclass(torch.Tensor)  # [N, 4]
        hidden = torch.cat([boxes[:, :2].maximum(torch.stack([rx0, ry0])),
                            boxes[:, 2:].minimum(torch.stack([rx1, ry1]))], 1)  # [N, 4] part under the rectangle
        keep = _area(boxes) - _area(hidden) >= self.min_visible * _area(boxes)
        bx0, by0, bx1, by1 = boxes.unbind(1)
        across = (ry0 <= by0) & (by1 <= ry1)  # the rectangle spans the box's height
        down = (rx0 <= bx0) & (bx1 <= rx1)  # ... or its width
        shrunk = torch.stack([
            torch.where(across & (rx0 <= bx0) & (bx0 < rx1), rx1, bx0),
            torch.where(down & (ry0 <= by0) & (by0 < ry1), ry1, by0),
            torch.where(across & (rx0 < bx1) & (bx1 <= rx1), rx0, bx1),
            torch.where(down & (ry0 < by1) & (by1 <= ry1), ry0, by1),
        ], 1)  # [N, 4]

        pasted = pasted.as_subclass(torch.Tensor)  # [M, 4]
        clipped = torch.cat([pasted[:, :2].maximum(torch.stack([rx0, ry0])),
                             pasted[:, 2:].minimum(torch.stack([rx1, ry1]))], 1)  # [M, 4]
        keep_pasted = (_area(clipped) >= self.min_visible * _area(pasted)) & (
            (clipped[:, 2:] - clipped[:, :2]) >= 1).all(1)
        return tv_tensors.Image(image), _merge(
            target, [shrunk[keep], clipped[keep_pasted]],
            [target["labels"][keep], other_target["labels"][keep_pasted]], (h, w))


# ---- mosaic -----------------------------------------------------------------


class Mosaic(Augment):
    """YOLOv4 mosaic: the sample and 3 extras, each fitted into a quadrant around a random centre.

    Quadrant order: sample top-left, extras top-right, bottom-left, bottom-right;
    each image touches the centre.  The output canvas is ``size`` x ``size``.
    """

    n_extra = 3

    def __init__(self, p: float, size: int, center_jitter: float, fill: int):
        super().__init__(p)
        self.size, self.center_jitter, self.fill = size, center_jitter, fill

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        s = self.size
        cx, cy = (s * (0.5 + self.center_jitter * (2 * torch.rand(2) - 1))).round().int().tolist()
        canvas = torch.full((3, s, s), self.fill, dtype=torch.uint8)
        boxes, labels = [], []
        for i, (image, target) in enumerate((sample, *extras)):
            right, bottom = i % 2 == 1, i >= 2
            qw, qh = (s - cx if right else cx), (s - cy if bottom else cy)
            image, b, nh, nw = _fit(image, target["boxes"], qh, qw, upscale=True)
            x0, y0 = (cx if right else cx - nw), (cy if bottom else cy - nh)
            canvas[:, y0:y0 + nh, x0:x0 + nw] = image
            boxes.append(b.as_subclass(torch.Tensor) + torch.tensor([x0, y0, x0, y0], dtype=b.dtype))
            labels.append(target["labels"])
        return tv_tensors.Image(canvas), _merge(sample[1], boxes, labels, (s, s))


# ---- copy-paste -------------------------------------------------------------


class CopyPaste(Augment):
    """Box-level copy-paste (Ghiasi et al. 2021 without masks): paste box crops from the extras.

    Each pasted object lands where its IoU with every box already there (original or
    pasted) is at most ``max_iou``; objects that find no such place are skipped.
    """

    def __init__(self, p: float, n_sources: int, max_objects: int, max_iou: float, trials: int):
        super().__init__(p)
        self.n_extra = n_sources
        self.max_objects, self.max_iou, self.trials = max_objects, max_iou, trials

    def _place(self, box: torch.Tensor, w: int, h: int, canvas: tuple[int, int], taken: torch.Tensor):
        """Shift ``box`` (inside a w x h crop at the origin) to a random free spot, or None."""
        for _ in range(self.trials):
            x = int(torch.randint(0, canvas[1] - w + 1, ()))
            y = int(torch.randint(0, canvas[0] - h + 1, ()))
            moved = box + torch.tensor([x, y, x, y], dtype=box.dtype)
            if len(taken) == 0 or box_iou(moved[None], taken).max() <= self.max_iou:
                return x, y, moved
        return None

    def apply(self, sample: Sample, extras: tuple[Sample, ...]) -> Sample:
        image, target = sample
        image = image.clone()
        canvas = tuple(image.shape[-2:])
        taken = target["boxes"].as_subclass(torch.Tensor)  # [N, 4], grows as objects land
        objects = [(src, box, label) for src, t in extras
                   for box, label in zip(t["boxes"].as_subclass(torch.Tensor), t["labels"])]
        boxes, labels = [], []
        for k in torch.randperm(len(objects)).tolist():
            if len(boxes) == self.max_objects:
                break
            src, box, label = objects[k]
            # the crop is the box rounded outwards to whole pixels, inside its own image
            bx0, by0, bx1, by1 = box.tolist()
            x0, y0 = max(0, math.floor(bx0)), max(0, math.floor(by0))
            x1, y1 = min(src.shape[-1], math.ceil(bx1)), min(src.shape[-2], math.ceil(by1))
            w, h = x1 - x0, y1 - y0
            if w < 1 or h < 1 or w > canvas[1] or h > canvas[0]:
                continue
            spot = self._place(box - torch.tensor([x0, y0, x0, y0], dtype=box.dtype), w, h, canvas, taken)
            if spot is None:
                continue
            x, y, moved = spot
            image[:, y:y + h, x:x + w] = src[:, y0:y1, x0:x1]
            boxes.append(moved[None])
            labels.append(label[None])
            taken = torch.cat([taken, moved[None]])
        if not boxes:
            return image, target
        return image, _merge(target, [target["boxes"], *boxes], [target["labels"], *labels], canvas)
