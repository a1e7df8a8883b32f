"""ATSS (Zhang et al. 2020) as mmdetection's ``ATSSHead``, on torchvision's RetinaNet.

One square anchor per location (``anchor_scale`` strides, 8 in mmdetection), RetinaNet's
classification and regression towers (GroupNorm) with a centerness branch on the regression
tower, as FCOS, and the ATSS assigner by default (``model.assigner`` may name another: the
ATSS paper's point is that the sample definition, not the head, makes the difference).
Losses as mmdetection's: the classification loss per positive, the box loss weighted by each
positive's centerness target (normalised by their sum), centerness BCE per positive.  At
inference a candidate's score is its class score times its sigmoid centerness.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from ablate.models.common import box_loss, group_count, top_candidates, wants_quality
from ablate.models.retinanet import CatalogueRetinaNet, ClassificationHead, Head, RegressionHead, anchor_quality


def centerness(points: Tensor, boxes: Tensor) -> Tensor:
    """FCOS's centerness ``[N]`` of points ``[N, 2]`` inside their boxes ``[N, 4]``: 1 at the centre, 0 on a side."""
    left, top = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    right, bottom = boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]
    lr, tb = torch.stack([left, right], 1).clamp(min=0), torch.stack([top, bottom], 1).clamp(min=0)  # [N, 2]
    ratio = (lr.min(1).values / lr.max(1).values.clamp(min=1e-6)) * (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))
    return ratio.sqrt()


class CenternessRegressionHead(RegressionHead):
    """RetinaNet's regression tower and predictor plus a 3x3 centerness predictor on the same tower."""

    def __init__(self, in_channels: int, *, loss: nn.Module, norm_layer, num_convs: int):
        super().__init__(in_channels, 1, loss=loss, norm_layer=norm_layer, num_convs=num_convs)
        self.bbox_ctrness = nn.Conv2d(in_channels, 1, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.bbox_ctrness.weight, std=0.01)
        nn.init.zeros_(self.bbox_ctrness.bias)

    def forward(self, x: list[Tensor]) -> tuple[Tensor, Tensor]:
        deltas, ctrness = [], []
        for features in x:
            tower = self.conv(features)
            n, _, h, w = features.shape
            deltas.append(self.bbox_reg(tower).permute(0, 2, 3, 1).reshape(n, h * w, 4))  # one anchor per location
            ctrness.append(self.bbox_ctrness(tower).permute(0, 2, 3, 1).reshape(n, h * w, 1))
        return torch.cat(deltas, dim=1), torch.cat(ctrness, dim=1)  # [B, HW, 4], [B, HW, 1]


class AtssHead(Head):
    """RetinaNet's classification head and the centerness regression head above, one anchor per location."""

    def __init__(self, in_channels: int, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 head_convs: int = 4):
        nn.Module.__init__(self)
        norm = partial(nn.GroupNorm, group_count(in_channels))
        self.classification_head = ClassificationHead(in_channels, 1, num_classes, loss=cls_loss, norm_layer=norm,
                                                      num_convs=head_convs)
        self.regression_head = CenternessRegressionHead(in_channels, loss=box_loss, norm_layer=norm,
                                                        num_convs=head_convs)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        deltas, ctrness = self.regression_head(x)
        return {"cls_logits": self.classification_head(x), "bbox_regression": deltas, "bbox_ctrness": ctrness}

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, Tensor]:
        coder, loss = self.regression_head.box_coder, self.regression_head.loss
        quality = None
        if wants_quality(self.classification_head.loss):  # QFL, VFL: positives learn their IoU
            quality = anchor_quality(coder, targets, head_outputs["bbox_regression"], anchors, matched_idxs)
        loss_cls = self.classification_head.compute_loss(targets, head_outputs, matched_idxs, quality)
        box_sum, ctr_sum, weight, positives = [], [], 0.0, 0
        for target, deltas, ctr_logits, image_anchors, matched in zip(
            targets, head_outputs["bbox_regression"], head_outputs["bbox_ctrness"], anchors, matched_idxs
        ):
            fg = torch.where(matched >= 0)[0]  # [F]
            fg_anchors, gt = image_anchors[fg], target["boxes"][matched[fg]]  # [F, 4] each
            ctr_target = centerness((fg_anchors[:, :2] + fg_anchors[:, 2:]) / 2, gt)  # [F]
            per_pair = box_loss(loss, deltas[fg], gt, encode=partial(coder.encode_single, proposals=fg_anchors),
                                decode=partial(coder.decode_single, boxes=fg_anchors))  # [F]
            box_sum.append((per_pair * ctr_target).sum())
            ctr_sum.append(nn.functional.binary_cross_entropy_with_logits(
                ctr_logits[fg, 0], ctr_target, reduction="sum"))
            weight, positives = weight + ctr_target.sum().detach(), positives + len(fg)
        return {"classification": loss_cls,
                "bbox_regression": torch.stack(box_sum).sum() / max(float(weight), 1e-6),
                "bbox_ctrness": torch.stack(ctr_sum).sum() / max(positives, 1)}


class CatalogueAtss(CatalogueRetinaNet):
    """ATSS: ``CatalogueRetinaNet`` with one anchor per location and the centerness head (see the module doc).

    Train mode returns ``{"loss_cls", "loss_box", "loss_ctr"}``; eval mode the raw candidates, no NMS.

    Args:
        anchor_scale: side of the one square anchor per location, in strides.
        the rest: as ``CatalogueRetinaNet``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 assigner, anchor_scale: float = 8.0, head_convs: int = 4, **common):
        head = AtssHead(backbone.out_channels, num_classes, cls_loss=cls_loss, box_loss=box_loss, head_convs=head_convs)
        super().__init__(backbone, num_classes, cls_loss=cls_loss, box_loss=box_loss, assigner=assigner,
                         anchor_scale=anchor_scale, anchor_octaves=1, anchor_ratios=(1.0,), head=head, **common)

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        scores_of = self.head.classification_head.loss.scores
        detections = []
        for index, image_shape in enumerate(image_shapes):
            boxes, scores, labels = [], [], []
            for logits, deltas, ctrness, level_anchors in zip(
                head_outputs["cls_logits"], head_outputs["bbox_regression"], head_outputs["bbox_ctrness"],
                anchors[index],
            ):
                top, idxs, top_labels = top_candidates(scores_of(logits[index]), self.score_thresh,
                                                       self.topk_candidates)
                decoded = self.box_coder.decode_single(deltas[index][idxs], level_anchors[idxs])
                boxes.append(clip_boxes_to_image(decoded, image_shape))  # [K, 4]
                scores.append(top * torch.sigmoid(ctrness[index][idxs, 0]))  # mmdetection's score x centerness
                labels.append(top_labels)
            detections.append({"boxes": torch.cat(boxes), "scores": torch.cat(scores), "labels": torch.cat(labels)})
        return detections
