"""torchvision's RetinaNet with the catalogue's losses and inference scores.

torchvision keeps everything else: the transform, the anchor generator, the IoU
matcher (foreground IoU >= 0.5, background < 0.4, low-quality matches kept, the
anchors in between ignored), the heads' convolutions and initialisation, the box
coder and the per-level top-k candidate selection.  What changes:

- the classification loss is a catalogue module fed the same one-hot targets
  torchvision builds for ``sigmoid_focal_loss`` (for QFL and VFL, each positive's 1 is
  the IoU of its decoded predicted box with its GT box);
- the box loss is a catalogue module fed encoded deltas or decoded boxes,
  whichever its ``space`` says;
- inference scores come from the classification loss's ``scores`` (a softmax for
  ``ce``), and no NMS runs here: ``Detector`` applies the catalogue's method after TTA;
- which anchors are positive is the catalogue assigner's call (``model.assigner``; its
  default ``max_iou`` is torchvision's matcher with the same thresholds).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)
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

LOSS_NAMES = {"classification": "loss_cls", "bbox_regression": "loss_box", "bbox_ctrness": "loss_ctr"}  # ctr: ATSS


def retinanet_anchors(anchor_scale: float, octaves: int = 3, ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
                      strides: tuple[int, ...] = STRIDES) -> LevelAnchors:
    """``octaves x len(ratios)`` anchors per location: ``anchor_scale x stride x 2^(i / octaves)`` at each ratio.

    The defaults are the paper's 9 (torchvision's 32..512 px with ``anchor_scale`` 4); a smaller
    scale suits small images, and one octave at ratio 1 is the ATSS paper's #A=1 RetinaNet.
    ``strides``: one per pyramid level (a P2 level at stride 4 gets 16..25 px with ``anchor_scale`` 4).
    """
    sizes = tuple(tuple(anchor_scale * stride * 2 ** (i / octaves) for i in range(octaves)) for stride in strides)
    return LevelAnchors(sizes, (tuple(ratios),) * len(strides))


class ClassificationHead(RetinaNetClassificationHead):
    """torchvision's classification head; its loss is ``loss`` (a catalogue CLS_LOSSES module)."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, *, loss: nn.Module, norm_layer=None,
                 num_convs: int = 4):
        super().__init__(in_channels, num_anchors, num_classes, norm_layer=norm_layer)
        self.conv = self.conv[:num_convs]  # torchvision builds 4; fewer is cheaper on a CPU
        self.loss = loss

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     matched_idxs: list[Tensor], quality: list[Tensor] | None = None) -> Tensor:
        """torchvision's loss with the catalogue's; ``quality``: per image ``[F]``, the targets of the
        positives (in anchor order) for a loss that ``wants_quality``, else they learn 1."""
        losses = []
        for index, (target, logits, matched) in enumerate(zip(targets, head_outputs["cls_logits"], matched_idxs)):
            # logits [HWA, C]; matched [HWA]: gt index, -1 background, -2 between thresholds
            foreground = matched >= 0
            onehot = torch.zeros_like(logits)  # [HWA, C], all-zero rows are background
            learned = 1.0 if quality is None else quality[index].to(onehot)  # [F] IoUs for QFL, VFL
            onehot[foreground, target["labels"][matched[foreground]]] = learned
            valid = matched != self.BETWEEN_THRESHOLDS  # ambiguous anchors train nothing, as torchvision
            per_anchor = self.loss(logits[valid], onehot[valid])  # [V]
            losses.append(per_anchor.sum() / foreground.sum().clamp(min=1))
        return torch.stack(losses).mean()  # torchvision: normalise per image, then average images


class RegressionHead(RetinaNetRegressionHead):
    """torchvision's regression head; its loss is ``loss`` (a catalogue BOX_LOSSES module)."""

    def __init__(self, in_channels: int, num_anchors: int, *, loss: nn.Module, norm_layer=None, num_convs: int = 4):
        super().__init__(in_channels, num_anchors, norm_layer=norm_layer)
        self.conv = self.conv[:num_convs]
        self.loss = loss

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> Tensor:
        losses = []
        for target, deltas, image_anchors, matched in zip(
            targets, head_outputs["bbox_regression"], anchors, matched_idxs
        ):
            foreground = torch.where(matched >= 0)[0]  # [F]
            fg_anchors = image_anchors[foreground]  # [F, 4]
            per_pair = box_loss(
                self.loss, deltas[foreground], target["boxes"][matched[foreground]],  # [F, 4], [F, 4]
                encode=partial(self.box_coder.encode_single, proposals=fg_anchors),
                decode=partial(self.box_coder.decode_single, boxes=fg_anchors),
            )  # [F]
            losses.append(per_pair.sum() / max(1, foreground.numel()))
        return torch.stack(losses).mean()


def anchor_quality(coder: BoxCoder, targets: list[dict[str, Tensor]], deltas: Tensor, anchors: list[Tensor],
                   matched_idxs: list[Tensor]) -> list[Tensor]:
    """Per image, the IoU ``[F]`` of each positive anchor's decoded box with its GT box (``positive_quality``).

    Args:
        coder: the box coder whose ``decode_single`` the box losses use.
        deltas: ``[B, HWA, 4]``; anchors: per image ``[HWA, 4]``; matched_idxs: per image ``[HWA]``.
    """
    quality = []
    for target, image_deltas, image_anchors, matched in zip(targets, deltas, anchors, matched_idxs):
        fg = torch.where(matched >= 0)[0]  # [F], the order of the boolean mask the targets are built with
        pred = coder.decode_single(image_deltas[fg].detach(), image_anchors[fg])  # [F, 4]
        quality.append(positive_quality(pred, target["boxes"][matched[fg]]))
    return quality


class Head(RetinaNetHead):
    """torchvision's RetinaNet head made of the two catalogue-loss heads above."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, *,
                 cls_loss: nn.Module, box_loss: nn.Module, head_norm: str = "group", head_convs: int = 4):
        nn.Module.__init__(self)  # RetinaNetHead.__init__ would build two heads only to replace them
        # GroupNorm as torchvision's RetinaNet v2: without it, narrow heads initialised with
        # std 0.01 pass almost no signal and the classifier barely trains from scratch.
        norm = partial(nn.GroupNorm, group_count(in_channels)) if head_norm == "group" else None
        self.classification_head = ClassificationHead(in_channels, num_anchors, num_classes, loss=cls_loss,
                                                      norm_layer=norm, num_convs=head_convs)
        self.regression_head = RegressionHead(in_channels, num_anchors, loss=box_loss, norm_layer=norm,
                                              num_convs=head_convs)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, Tensor]:
        quality = None
        if wants_quality(self.classification_head.loss):
            quality = anchor_quality(self.regression_head.box_coder, targets, head_outputs["bbox_regression"],
                                     anchors, matched_idxs)
        return {"classification": self.classification_head.compute_loss(targets, head_outputs, matched_idxs, quality),
                "bbox_regression": self.regression_head.compute_loss(targets, head_outputs, anchors, matched_idxs)}


class CatalogueRetinaNet(RetinaNet):
    """torchvision ``RetinaNet`` whose losses and scores come from the catalogue.

    Train mode returns ``{"loss_cls", "loss_box"}``; eval mode returns, per image,
    every candidate above ``score_thresh`` (top ``topk_candidates`` per level) in
    original image coordinates, *without* NMS: the caller merges them.

    Args:
        backbone: returns one map per level of ``strides`` (P3..P7) and has ``out_channels``.
        num_classes: foreground classes; labels are ``0..num_classes-1``.
        cls_loss, box_loss: catalogue modules (``CLS_LOSSES``, ``BOX_LOSSES``).
        strides: the backbone's levels' strides (``model.pyramid``; P2-P7: 4..128).
        assigner: a catalogue assigner (tricks/assign): which anchors learn which box.
        anchor_scale, anchor_octaves, anchor_ratios: the anchors (``retinanet_anchors``).
        head_norm: "group" (GroupNorm in the head convs, torchvision's v2) or "none" (the paper's).
        head_convs: 3x3 convs per head branch before the predictor (4 in the paper).
        min_size, max_size: evaluation resize (training images are used as given).
        image_mean, image_std: the pixel statistics of ``model.style`` (backbones.PIXELS).
        score_thresh: candidate threshold at inference.
        topk_candidates: candidates kept per level at inference, as torchvision.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 assigner, anchor_scale: float = 4.0, anchor_octaves: int = 3,
                 anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0), head_norm: str = "group", head_convs: int = 4,
                 min_size: int = 800, max_size: int = 1333, image_mean: list[float], image_std: list[float],
                 score_thresh: float = 0.05, topk_candidates: int = 1000, head: nn.Module | None = None,
                 strides: tuple[int, ...] = STRIDES):
        anchors = retinanet_anchors(anchor_scale, anchor_octaves, tuple(anchor_ratios), tuple(strides))
        if head is None:
            head = Head(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes,
                        cls_loss=cls_loss, box_loss=box_loss, head_norm=head_norm, head_convs=head_convs)
        super().__init__(
            backbone, num_classes, min_size=min_size, max_size=max_size,
            image_mean=image_mean, image_std=image_std, anchor_generator=anchors, head=head,
            score_thresh=score_thresh, topk_candidates=topk_candidates,
            _skip_resize=True,  # the data pipeline already sized the training images
        )
        self.assigner, self.strides = assigner, tuple(strides)

    def compute_loss(self, targets, head_outputs, anchors):
        matched_idxs = assign_all(self.assigner, anchors, self.anchor_generator.level_counts, targets, self.strides)
        return rename(self.head.compute_loss(targets, head_outputs, anchors, matched_idxs), LOSS_NAMES)

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        # head_outputs[k][level]: [B, HWA_l, C or 4]; anchors[image][level]: [HWA_l, 4]
        scores_of = self.head.classification_head.loss.scores  # sigmoid, or softmax for ce
        detections = []
        for index, image_shape in enumerate(image_shapes):
            boxes, scores, labels = [], [], []
            for logits, deltas, level_anchors in zip(
                head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors[index]
            ):
                top, anchor_idxs, top_labels = top_candidates(
                    scores_of(logits[index]), self.score_thresh, self.topk_candidates
                )
                decoded = self.box_coder.decode_single(deltas[index][anchor_idxs], level_anchors[anchor_idxs])
                boxes.append(clip_boxes_to_image(decoded, image_shape))  # [K, 4]
                scores.append(top)
                labels.append(top_labels)
            detections.append({"boxes": torch.cat(boxes), "scores": torch.cat(scores), "labels": torch.cat(labels)})
        return detections
