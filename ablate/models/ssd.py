"""SSD (Liu et al. 2016): torchvision's ``SSD`` with the catalogue's losses, on a VGG16 body or any other.

torchvision keeps the default-box generator, the IoU matcher (``SSDMatcher``: IoU >= ``iou``,
and each GT's best box), the box coder (weights 10, 10, 5, 5) and the heads (``SSDHead``, or
SSDlite's depthwise-separable ``SSDLiteHead``).  The feature maps:

- ``vgg16``: torchvision's SSD extractor, as the paper: conv4_3 (L2-normalised), the dilated
  fc6/fc7, then conv8_2..conv11_2 (and conv12_2 from 512 px, SSD512); it needs images of
  at least 268 px (its last convs are unpadded, as the paper's).
- any other body: its C3, C4, C5 then the paper's extra stages (a 1x1 conv, then a 3x3 conv of
  stride 2) to six maps, seven from 512 px, so the tiny body trains SSD on a CPU.

What changes, as for RetinaNet: the classification loss is a catalogue module (``ce``, the
paper's softmax over the classes and background, or any other), hard negative mining keeps
the ``neg_pos_ratio`` negatives with the highest loss per positive (3:1 as the paper), the box
loss is a catalogue module on encoded deltas or decoded boxes, and no NMS runs here.  Training
and evaluation keep the aspect ratio (shorter side ``image_size``), as every ablate detector,
where the paper warps to a square.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDFeatureExtractorVGG, SSDHead
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import clip_boxes_to_image

from ablate.models.common import box_loss, rename, top_candidates

LOSS_NAMES = {"classification": "loss_cls", "bbox_regression": "loss_box"}
HIGHRES = 512  # from this image size: seven maps (SSD512), else six (SSD300)


class SsdExtras(nn.Module):
    """A body's C3, C4, C5 and extra stride-2 stages: the SSD feature maps of any ablate body.

    Args:
        body: returns ``OrderedDict(c3, c4, c5)``.
        channels: the body's ``[C3, C4, C5]`` channels.
        width: output channels of each extra stage (its 1x1 conv has half).
        maps: feature maps in all (6 as SSD300, 7 as SSD512).
    """

    def __init__(self, body: nn.Module, channels: list[int], *, width: int, maps: int):
        super().__init__()
        self.body = body
        stages, cin = [], channels[-1]
        for _ in range(maps - len(channels)):
            stages.append(nn.Sequential(nn.Conv2d(cin, width // 2, 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(inplace=True)))
            cin = width
        self.extra = nn.ModuleList(stages)
        self.out_channels = [*channels, *[width] * len(stages)]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        levels = OrderedDict(self.body(x))  # c3, c4, c5: strides 8, 16, 32
        last = next(reversed(levels.values()))
        for i, stage in enumerate(self.extra):
            last = stage(last)  # [B, width, H/s, W/s], s = 64, 128, ...
            levels[f"extra{i}"] = last
        return levels


def vgg_extractor(body: nn.Module, *, highres: bool) -> SSDFeatureExtractorVGG:
    """torchvision's SSD VGG16 extractor around the layers of ablate's ``vgg16`` body (weights already loaded)."""
    extractor = SSDFeatureExtractorVGG(nn.Sequential(*body.features.children()), highres)
    extractor.out_channels = [512, 1024, 512, 256, 256, 256] + [256] * highres
    return extractor


def aspect_ratios(maps: int) -> list[list[int]]:
    """The paper's default-box ratios: {1, 2, 1/2} on the first and last two maps, also {3, 1/3} between."""
    return [[2]] + [[2, 3]] * (maps - 3) + [[2], [2]]


class CatalogueSSD(SSD):
    """torchvision ``SSD`` whose losses, mining ratio and scores come from the study (see the module doc).

    Train mode returns ``{"loss_cls", "loss_box"}``; eval mode, per image, the candidates above
    ``score_thresh`` (the best ``topk_candidates`` per class, as torchvision) without NMS.

    Args:
        extractor: returns the feature maps, has ``out_channels`` (a list, one per map).
        num_classes: foreground classes; labels are ``0..num_classes-1``.
        cls_loss, box_loss: catalogue modules (``CLS_LOSSES``, ``BOX_LOSSES``).
        neg_pos_ratio: negatives kept per positive by hard negative mining.
        iou: IoU from which a default box matches a GT.
        min_ratio, max_ratio: the default boxes' smallest and largest scale (fractions of the image).
        lite: SSDlite's depthwise-separable heads.
        min_size, max_size, image_mean, image_std, score_thresh: as the other ablate detectors.
    """

    def __init__(self, extractor: nn.Module, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 neg_pos_ratio: float = 3.0, iou: float = 0.5, min_ratio: float = 0.15, max_ratio: float = 0.9,
                 lite: bool = False, min_size: int, max_size: int, image_mean: list[float], image_std: list[float],
                 score_thresh: float = 0.05, topk_candidates: int = 400):
        boxes = DefaultBoxGenerator(aspect_ratios(len(extractor.out_channels)), min_ratio, max_ratio)
        anchors = boxes.num_anchors_per_location()
        if lite:
            head = SSDLiteHead(extractor.out_channels, anchors, num_classes,
                               partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))
        else:
            head = SSDHead(extractor.out_channels, anchors, num_classes)
        super().__init__(extractor, boxes, (min_size, min_size), num_classes, image_mean, image_std, head=head,
                         score_thresh=score_thresh, iou_thresh=iou, topk_candidates=topk_candidates,
                         positive_fraction=1 / (1 + neg_pos_ratio))
        # shorter side min_size, aspect kept, as the other detectors; training images come sized by the data
        self.transform = GeneralizedRCNNTransform(min_size, max_size, image_mean, image_std, _skip_resize=True)
        self.cls_loss, self.box_loss = cls_loss, box_loss

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        cls_logits, deltas = head_outputs["cls_logits"], head_outputs["bbox_regression"]  # [B, A, C], [B, A, 4]
        box_sum, cls_sum, positives = [], [], 0
        for target, logits, image_deltas, image_anchors, matched in zip(
            targets, cls_logits, deltas, anchors, matched_idxs
        ):
            fg = torch.where(matched >= 0)[0]  # [F]
            fg_anchors = image_anchors[fg]
            box_sum.append(box_loss(
                self.box_loss, image_deltas[fg], target["boxes"][matched[fg]],
                encode=partial(self.box_coder.encode_single, proposals=fg_anchors),
                decode=partial(self.box_coder.decode_single, boxes=fg_anchors)).sum())
            onehot = torch.zeros_like(logits)  # [A, C]; all-zero rows are background
            onehot[fg, target["labels"][matched[fg]]] = 1.0
            per_anchor = self.cls_loss(logits, onehot)  # [A]
            # hard negative mining: the background boxes with the highest loss, neg_to_pos_ratio per positive
            negative = per_anchor.detach().clone()
            negative[fg] = -float("inf")
            keep = min(int(self.neg_to_pos_ratio * len(fg)), len(per_anchor) - len(fg))
            hardest = negative.topk(keep).indices
            cls_sum.append(per_anchor[fg].sum() + per_anchor[hardest].sum())
            positives += len(fg)
        n = max(1, positives)  # as torchvision: both losses per positive of the batch
        return rename({"bbox_regression": torch.stack(box_sum).sum() / n,
                       "classification": torch.stack(cls_sum).sum() / n}, LOSS_NAMES)

    def postprocess_detections(self, head_outputs: dict[str, Tensor], image_anchors: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        detections = []
        for deltas, logits, anchors, image_shape in zip(
            head_outputs["bbox_regression"], head_outputs["cls_logits"], image_anchors, image_shapes
        ):
            scores = self.cls_loss.scores(logits)  # [A, C]
            boxes, kept, labels = [], [], []
            for label in range(scores.shape[1]):  # per class, as torchvision's SSD
                top, idxs, _ = top_candidates(scores[:, label:label + 1], self.score_thresh, self.topk_candidates)
                boxes.append(clip_boxes_to_image(self.box_coder.decode_single(deltas[idxs], anchors[idxs]), image_shape))
                kept.append(top)
                labels.append(torch.full_like(idxs, label))
            detections.append({"boxes": torch.cat(boxes), "scores": torch.cat(kept), "labels": torch.cat(labels)})
        return detections
