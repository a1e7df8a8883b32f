"""torchvision's FCOS with the catalogue's classification and box losses.

torchvision keeps the heads, the linear ltrb box coder and the centerness branch
with its BCE loss (``loss_ctr``).  Which points are positive is the catalogue
assigner's call (``model.assigner``): its default ``fcos_ranges`` is torchvision's
centre sampling (radius 1.5 strides, one scale range per level), to the same result;
the IoU-based ones see a square of 8 strides on each point, as the ATSS paper tiles FCOS.  Changed, as for RetinaNet: the classification
loss and inference scores come from the catalogue module (QFL and VFL learn each positive's
IoU with its box instead of 1), and the box loss is the
catalogue module on decoded boxes (torchvision uses GIoU there) or, for a
``"delta"`` loss, on FCOS's encoded ltrb distances (normalised by the stride).
No NMS runs here: ``Detector`` applies the catalogue's method after TTA.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.fcos import FCOS, FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.ops import clip_boxes_to_image

from ablate.models.common import (
    STRIDES,
    LevelAnchors,
    assign_all,
    box_loss,
    group_count,
    positive_quality,
    rename,
    top_candidates,
    wants_quality,
)

LOSS_NAMES = {"classification": "loss_cls", "bbox_regression": "loss_box", "bbox_ctrness": "loss_ctr"}
ASSIGN_SCALE = 8  # the box an IoU-based assigner sees on each point, in strides (the ATSS paper's 8S)


def fcos_anchors(strides: tuple[int, ...] = STRIDES) -> LevelAnchors:
    """One square anchor per location, its side the level's stride: FCOS's points (torchvision's default)."""
    return LevelAnchors(tuple((stride,) for stride in strides), ((1.0,),) * len(strides))


class Head(FCOSHead):
    """torchvision's FCOS head whose classification and box losses are catalogue modules."""

    def __init__(self, in_channels: int, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 num_convs: int = 4):
        nn.Module.__init__(self)  # FCOSHead.__init__ hard-codes GroupNorm(32, C), which needs C % 32 == 0
        norm = partial(nn.GroupNorm, group_count(in_channels))
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(in_channels, 1, num_classes, num_convs, norm_layer=norm)
        self.regression_head = FCOSRegressionHead(in_channels, 1, num_convs, norm_layer=norm)
        self.cls_loss, self.box_loss = cls_loss, box_loss

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        cls_logits = head_outputs["cls_logits"]  # [B, HWA, C]
        bbox_regression = head_outputs["bbox_regression"]  # [B, HWA, 4], ltrb / stride, >= 0
        bbox_ctrness = head_outputs["bbox_ctrness"]  # [B, HWA, 1]

        gt_classes, gt_boxes = [], []
        for target, matched in zip(targets, matched_idxs):  # matched [HWA]: gt index or -1
            if len(target["labels"]) == 0:
                classes = target["labels"].new_zeros(len(matched))
                boxes = target["boxes"].new_zeros((len(matched), 4))
            else:
                classes = target["labels"][matched.clip(min=0)]
                boxes = target["boxes"][matched.clip(min=0)]
            classes[matched < 0] = -1  # background
            gt_classes.append(classes)
            gt_boxes.append(boxes)
        gt_classes, gt_boxes, anchors = torch.stack(gt_classes), torch.stack(gt_boxes), torch.stack(anchors)

        # torchvision normalises FCOS by the foreground count of the whole batch
        foreground = gt_classes >= 0  # [B, HWA]
        num_foreground = max(1, int(foreground.sum()))

        fg_anchors = anchors[foreground]  # [F, 4]
        onehot = torch.zeros_like(cls_logits)  # [B, HWA, C]
        onehot[foreground, gt_classes[foreground]] = 1.0
        if wants_quality(self.cls_loss):  # QFL, VFL: each positive learns its predicted box's IoU instead of 1
            pred = self.box_coder.decode(bbox_regression[foreground].detach(), boxes=fg_anchors)  # [F, 4]
            onehot[foreground, gt_classes[foreground]] = positive_quality(pred, gt_boxes[foreground]).to(onehot)
        loss_cls = self.cls_loss(cls_logits.flatten(0, 1), onehot.flatten(0, 1)).sum()  # over B * HWA anchors

        loss_box = box_loss(
            self.box_loss, bbox_regression[foreground], gt_boxes[foreground],  # [F, 4], [F, 4]
            encode=partial(self.box_coder.encode, fg_anchors),
            decode=partial(self.box_coder.decode, boxes=fg_anchors),
        ).sum()

        # centerness, exactly as torchvision: sqrt(min/max of l,r x min/max of t,b) at each positive point
        ltrb = self.box_coder.encode(anchors, gt_boxes)  # [B, HWA, 4]
        left_right, top_bottom = ltrb[:, :, [0, 2]], ltrb[:, :, [1, 3]]
        gt_ctrness = torch.sqrt(
            (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
            * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0])
        )  # [B, HWA]; NaN off the foreground, which is masked out below
        loss_ctr = nn.functional.binary_cross_entropy_with_logits(
            bbox_ctrness.squeeze(dim=2)[foreground], gt_ctrness[foreground], reduction="sum"
        )
        return {
            "classification": loss_cls / num_foreground,
            "bbox_regression": loss_box / num_foreground,
            "bbox_ctrness": loss_ctr / num_foreground,
        }


class CatalogueFCOS(FCOS):
    """torchvision ``FCOS`` whose losses and scores come from the catalogue.

    Train mode returns ``{"loss_cls", "loss_box", "loss_ctr"}``; eval mode returns,
    per image, every candidate above ``score_thresh`` (top ``topk_candidates`` per
    level) in original image coordinates, without NMS.  A candidate's score is
    torchvision's ``sqrt(class score x sigmoid(centerness))`` with the class score
    from the classification loss's ``scores``.

    Args:
        backbone: returns one map per level of ``strides`` (P3..P7) and has ``out_channels``.
        num_classes: foreground classes; labels are ``0..num_classes-1``.
        cls_loss, box_loss: catalogue modules (``CLS_LOSSES``, ``BOX_LOSSES``).
        assigner: a catalogue assigner (tricks/assign): which points learn which box.
        strides: the backbone's levels' strides (``model.pyramid``; P2-P7: 4..128).
        min_size, max_size: evaluation resize (training images are used as given).
        image_mean, image_std: the pixel statistics of ``model.style`` (backbones.PIXELS).
        score_thresh: candidate threshold at inference.
        topk_candidates: candidates kept per level at inference, as torchvision.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 assigner, min_size: int = 800, max_size: int = 1333, image_mean: list[float],
                 image_std: list[float], score_thresh: float = 0.05, topk_candidates: int = 1000,
                 head_convs: int = 4, strides: tuple[int, ...] = STRIDES):
        head = Head(backbone.out_channels, num_classes, cls_loss=cls_loss, box_loss=box_loss, num_convs=head_convs)
        super().__init__(
            backbone, num_classes, min_size=min_size, max_size=max_size,
            image_mean=image_mean, image_std=image_std, anchor_generator=fcos_anchors(tuple(strides)), head=head,
            score_thresh=score_thresh, topk_candidates=topk_candidates,
            _skip_resize=True,  # the data pipeline already sized the training images
        )
        self.assigner, self.strides = assigner, tuple(strides)

    def compute_loss(self, targets, head_outputs, anchors, num_anchors_per_level):
        # the points' squares of 8 strides (same centres): what IoU-based assigners compare with the boxes
        scale = torch.cat([torch.full((n,), ASSIGN_SCALE / 2.0 * s, device=anchors[0].device)
                           for n, s in zip(num_anchors_per_level, self.strides)])[:, None]  # [A, 1]
        boxes = [torch.cat([(a[:, :2] + a[:, 2:]) / 2 - scale, (a[:, :2] + a[:, 2:]) / 2 + scale], dim=1)
                 for a in anchors]
        matched_idxs = assign_all(self.assigner, boxes, num_anchors_per_level, targets, self.strides)
        return rename(self.head.compute_loss(targets, head_outputs, anchors, matched_idxs), LOSS_NAMES)

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        # head_outputs[k][level]: [B, HW_l, C or 4 or 1]; anchors[image][level]: [HW_l, 4]
        scores_of = self.head.cls_loss.scores  # sigmoid, or softmax for ce
        detections = []
        for index, image_shape in enumerate(image_shapes):
            boxes, scores, labels = [], [], []
            for logits, deltas, ctrness, level_anchors in zip(
                head_outputs["cls_logits"], head_outputs["bbox_regression"], head_outputs["bbox_ctrness"],
                anchors[index],
            ):
                level_scores = torch.sqrt(scores_of(logits[index]) * torch.sigmoid(ctrness[index]))  # [HW_l, C]
                top, anchor_idxs, top_labels = top_candidates(level_scores, self.score_thresh, self.topk_candidates)
                decoded = self.box_coder.decode(deltas[index][anchor_idxs], level_anchors[anchor_idxs])
                boxes.append(clip_boxes_to_image(decoded, image_shape))  # [K, 4]
                scores.append(top)
                labels.append(top_labels)
            detections.append({"boxes": torch.cat(boxes), "scores": torch.cat(scores), "labels": torch.cat(labels)})
        return detections
