"""Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017): torchvision's two stages, catalogue RoI-head losses.

torchvision keeps the transform, the region proposal network (``RPNHead``, its IoU matcher
0.7 / 0.3 with low-quality matches, balanced sampler, objectness BCE, smooth L1 and NMS 0.7),
``MultiScaleRoIAlign``, the box head (``TwoMLPHead``), the predictor (``FastRCNNPredictor``),
the proposal matcher (IoU 0.5) and the box coder (weights 10, 10, 5, 5).  What changes:

- the pyramid is ablate's P3..P7 (strides 8..128) where torchvision's FPN has P2..P6: the RPN has
  one anchor size per level (``anchor_scale`` strides) at ratios 0.5, 1, 2, and RoIAlign pools
  P3..P6 with FPN's level rule (a 224-px RoI from P4, smaller ones from finer levels);
- the predictor has ``C`` class logits, no background output: the catalogue classification loss
  reads them with one-hot targets (``ce``, a softmax with the background logit pinned at 0, is
  Faster R-CNN's softmax over C + 1 classes), and its ``scores`` gives the class probabilities;
- the class-specific box deltas of each positive RoI's class train with the catalogue box loss,
  on deltas or decoded boxes as its ``space`` says; torchvision's normalisation is kept: the
  classification loss is the mean over the sampled RoIs, the box loss a sum over the positives
  divided by the number of sampled RoIs;
- which RoIs train the head is the ``sampler``'s choice (roi_sampling.py: random, ohem, iou_balanced);
- RoIAlign samples ``ceil(RoI side / 7)`` points per bin side (mmdetection's and detectron2's
  ``sampling_ratio=0``; torchvision's is 2), and its gradient is roi_align.py's: the same values
  as torchvision's CPU backward, 5x sooner;
- no NMS at inference: every class score above ``score_thresh`` of every proposal is a candidate,
  and ``Detector`` applies the catalogue's method after TTA.

Target labels are ``0..C-1`` outside; torchvision's two-stage models reserve 0 for background, so
``forward`` shifts them up by one and the candidates come out as ``0..C-1`` again.

On a CPU (the tiny body on 192-px shapes, studies/_base_/tiny_shapes.yaml) take
``{rpn_proposals: 300, roi_batch: 128, representation: 256}``: 0.60 mAP after 8 epochs (focal +
giou, seed 0; 0.66 with ``sampler: iou_balanced``), an epoch ~1.3x as long as FCOS's.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import box_iou, clip_boxes_to_image, remove_small_boxes

from ablate.models.common import STRIDES, box_loss, rename
from ablate.models.roi_align import PyramidRoIAlign
from ablate.models.roi_sampling import iou_balanced_sample, ohem_sample, random_sample

LOSS_NAMES = {"loss_classifier": "loss_cls", "loss_box_reg": "loss_box", "loss_objectness": "loss_objectness",
              "loss_rpn_box_reg": "loss_rpn_box"}
POOLED = ["p3", "p4", "p5", "p6"]  # the levels RoIAlign reads (torchvision's FPN: P2..P5, four levels too)
SAMPLERS = ("random", "ohem", "iou_balanced")
ROI_SIZE = 7  # RoIAlign output side, as torchvision


def rpn_anchors(anchor_scale: float) -> AnchorGenerator:
    """One anchor size per pyramid level, ``anchor_scale x stride``, at ratios 0.5, 1, 2 (FPN's RPN)."""
    return AnchorGenerator(tuple((anchor_scale * s,) for s in STRIDES), ((0.5, 1.0, 2.0),) * len(STRIDES))


class CatalogueRoIHeads(RoIHeads):
    """torchvision's box ``RoIHeads`` with the catalogue's losses, a choice of sampler and raw candidates.

    Train mode returns ``{"loss_classifier", "loss_box_reg"}`` (torchvision's names); eval mode, per
    image, every (proposal, class) whose score is above ``score_thresh``, decoded with that class's
    deltas, labels ``0..C-1``, no NMS.

    Args:
        box_roi_pool, box_head, box_predictor: as torchvision's (the predictor has ``C`` logits).
        cls_loss, box_loss: catalogue modules (``CLS_LOSSES``, ``BOX_LOSSES``).
        sampler: ``random`` | ``ohem`` | ``iou_balanced`` (see roi_sampling.py).
        batch: RoIs sampled per image; positive_fraction: at most this share of them objects.
        score_thresh: candidate threshold at inference.
    """

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module, *,
                 cls_loss: nn.Module, box_loss: nn.Module, sampler: str = "random", batch: int = 512,
                 positive_fraction: float = 0.25, score_thresh: float = 0.05):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler '{sampler}'; valid: {', '.join(SAMPLERS)}")
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
                         batch_size_per_image=batch, positive_fraction=positive_fraction, bbox_reg_weights=None,
                         score_thresh=score_thresh, nms_thresh=1.0, detections_per_img=-1)  # no NMS, no cap here
        self.cls_loss, self.box_loss, self.sampler = cls_loss, box_loss, sampler
        self.batch, self.positive_fraction = batch, positive_fraction

    def predict(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """Class logits ``[R, C]`` and class-specific deltas ``[R, 4C]`` of the proposals of every image."""
        return self.box_predictor(self.box_head(self.box_roi_pool(features, proposals, image_shapes)))

    def match(self, proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One image's candidates against its objects (torchvision's ``assign_targets_to_proposals``).

        Returns:
            ``labels [N]`` (``k >= 1`` object of class k, 0 background), the matched object's box
            ``[N, 4]`` (meaningful for objects only), and each candidate's highest IoU ``[N]``.
        """
        n = len(proposals)
        if gt_boxes.numel() == 0:  # an image without objects: all background
            return gt_labels.new_zeros(n), proposals.new_zeros(n, 4), proposals.new_zeros(n)
        iou = box_iou(gt_boxes, proposals)  # [G, N]
        matched = self.proposal_matcher(iou)  # [N]: object index, or below / between the thresholds
        labels = gt_labels[matched.clamp(min=0)].clone()
        labels[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
        labels[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1  # none while fg == bg threshold
        return labels, gt_boxes[matched.clamp(min=0)], iou.max(dim=0).values

    def roi_losses(self, logits: Tensor, deltas: Tensor, proposals: Tensor, labels: Tensor,
                   gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Per-RoI classification loss ``[R]`` and box loss ``[R]`` (0 for background RoIs).

        Args:
            logits: ``[R, C]``; deltas: ``[R, 4C]``; proposals, gt_boxes: ``[R, 4]``;
            labels: ``[R]``, 0 background, ``k >= 1`` class ``k - 1``.
        """
        positive = torch.where(labels > 0)[0]  # [P]
        classes = labels[positive] - 1
        onehot = torch.zeros_like(logits)  # [R, C]; all-zero rows are background
        onehot[positive, classes] = 1.0
        per_roi = self.cls_loss(logits, onehot)  # [R]
        rois = proposals[positive]  # [P, 4]
        per_pair = box_loss(
            self.box_loss, deltas.reshape(len(deltas), -1, 4)[positive, classes], gt_boxes[positive],  # [P, 4] each
            encode=partial(self.box_coder.encode_single, proposals=rois),
            decode=partial(self.box_coder.decode_single, boxes=rois),
        )  # [P]
        return per_roi, torch.zeros_like(per_roi).index_add(0, positive, per_pair.to(per_roi.dtype))

    def sample(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
               targets: list[dict[str, Tensor]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Each image's sampled RoIs ``[S, 4]``, their labels ``[S]`` and matched object boxes ``[S, 4]``.

        The candidates are the proposals plus the objects themselves, as torchvision.
        """
        gt_boxes = [t["boxes"].to(proposals[0].dtype) for t in targets]
        candidates = self.add_gt_proposals(proposals, gt_boxes)
        matches = [self.match(c, g, t["labels"]) for c, g, t in zip(candidates, gt_boxes, targets)]
        if self.sampler == "ohem":
            # rank every candidate by its current loss, without gradient, as mmdetection's OHEMSampler; the
            # loss is classification plus box, as the paper's (mmdetection ranks by classification alone)
            with torch.no_grad():
                logits, deltas = self.predict(features, candidates, image_shapes)
                cls, box = self.roi_losses(logits, deltas, torch.cat(candidates),
                                           torch.cat([m[0] for m in matches]), torch.cat([m[1] for m in matches]))
                losses = (cls + box).split([len(c) for c in candidates])
        rois, labels, boxes = [], [], []
        for i, (image_candidates, (image_labels, matched_boxes, ious)) in enumerate(zip(candidates, matches)):
            if self.sampler == "ohem":
                positive, negative = ohem_sample(image_labels, losses[i], self.batch, self.positive_fraction)
            elif self.sampler == "iou_balanced":
                positive, negative = iou_balanced_sample(image_labels, ious, self.batch, self.positive_fraction)
            else:
                positive, negative = random_sample(image_labels, self.batch, self.positive_fraction)
            keep = torch.cat([positive, negative])
            rois.append(image_candidates[keep])
            labels.append(image_labels[keep])
            boxes.append(matched_boxes[keep])
        return rois, labels, boxes

    def candidates(self, logits: Tensor, deltas: Tensor, proposals: list[Tensor],
                   image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Every (proposal, class) scoring above ``score_thresh``, in the transformed image's pixels."""
        boxes = self.box_coder.decode(deltas, proposals)  # [R, C, 4]: each class's own deltas
        scores = self.cls_loss.scores(logits)  # [R, C]
        out = []
        for image_boxes, image_scores, shape in zip(boxes.split([len(p) for p in proposals]),
                                                    scores.split([len(p) for p in proposals]), image_shapes):
            labels = torch.arange(image_scores.shape[1], device=logits.device).expand_as(image_scores)  # 0..C-1
            image_boxes = clip_boxes_to_image(image_boxes, shape).reshape(-1, 4)
            image_scores, labels = image_scores.reshape(-1), labels.reshape(-1)
            keep = torch.where(image_scores > self.score_thresh)[0]
            keep = keep[remove_small_boxes(image_boxes[keep], min_size=1e-2)]
            out.append({"boxes": image_boxes[keep], "scores": image_scores[keep], "labels": labels[keep]})
        return out

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            logits, deltas = self.predict(features, proposals, image_shapes)
            return self.candidates(logits, deltas, proposals, image_shapes), {}
        if targets is None:
            raise ValueError("the RoI heads need targets in train mode")
        rois, labels, boxes = self.sample(features, proposals, image_shapes, targets)
        logits, deltas = self.predict(features, rois, image_shapes)
        per_roi, per_box = self.roi_losses(logits, deltas, torch.cat(rois), torch.cat(labels), torch.cat(boxes))
        sampled = max(1, len(per_roi))  # torchvision: both over the sampled RoIs of the batch
        return [], {"loss_classifier": per_roi.sum() / sampled, "loss_box_reg": per_box.sum() / sampled}


class CatalogueFasterRCNN(FasterRCNN):
    """torchvision ``FasterRCNN`` (FPN) whose box head trains with the catalogue (see the module doc).

    Train mode returns ``{"loss_cls", "loss_box", "loss_objectness", "loss_rpn_box"}``; eval mode,
    per image, the raw candidates in original image coordinates, without NMS.

    Args:
        backbone: returns P3..P7 (``p3``..``p7``) and has ``out_channels``.
        num_classes: foreground classes; labels are ``0..num_classes-1``.
        cls_loss, box_loss: catalogue modules for the RoI head.
        anchor_scale: RPN anchor size in strides, one size per level at ratios 0.5, 1, 2.
        rpn_fg_iou, rpn_bg_iou: the RPN's IoU thresholds for object / background anchors.
        rpn_batch: anchors sampled per image for the RPN loss (half objects at most).
        rpn_proposals: proposals kept after the RPN's NMS while training (``min(1000, this)`` at test).
        roi_batch, roi_positive_fraction, sampler: the RoI head's sampling (``CatalogueRoIHeads``).
        representation: width of the box head's two FC layers.
        min_size, max_size, image_mean, image_std, score_thresh: as the other ablate detectors.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 anchor_scale: float = 8.0, rpn_fg_iou: float = 0.7, rpn_bg_iou: float = 0.3, rpn_batch: int = 256,
                 rpn_proposals: int = 2000, roi_batch: int = 512, roi_positive_fraction: float = 0.25,
                 sampler: str = "random", representation: int = 1024, min_size: int = 800, max_size: int = 1333,
                 image_mean: list[float], image_std: list[float], score_thresh: float = 0.05):
        # sampling_ratio 0: ceil(RoI side / 7) points per bin side, as mmdetection and detectron2 (torchvision: 2);
        # small RoIs take one, a third of RoIAlign's time; its backward is the fast one of roi_align.py
        pool = PyramidRoIAlign(POOLED, list(STRIDES[:len(POOLED)]), output_size=ROI_SIZE, sampling_ratio=0)
        head = TwoMLPHead(backbone.out_channels * ROI_SIZE ** 2, representation)
        predictor = FastRCNNPredictor(representation, num_classes)  # C logits: the background is the loss's
        super().__init__(
            backbone, None, min_size=min_size, max_size=max_size, image_mean=image_mean, image_std=image_std,
            rpn_anchor_generator=rpn_anchors(anchor_scale),
            # per level before the NMS, in all after it: torchvision's 2000 / 2000 training, 1000 / 1000 testing
            rpn_pre_nms_top_n_train=rpn_proposals, rpn_post_nms_top_n_train=rpn_proposals,
            rpn_pre_nms_top_n_test=min(1000, rpn_proposals), rpn_post_nms_top_n_test=min(1000, rpn_proposals), rpn_fg_iou_thresh=rpn_fg_iou,
            rpn_bg_iou_thresh=rpn_bg_iou, rpn_batch_size_per_image=rpn_batch,
            box_roi_pool=pool, box_head=head, box_predictor=predictor,
            _skip_resize=True,  # the data pipeline already sized the training images
        )
        self.roi_heads = CatalogueRoIHeads(pool, head, predictor, cls_loss=cls_loss, box_loss=box_loss,
                                           sampler=sampler, batch=roi_batch, positive_fraction=roi_positive_fraction,
                                           score_thresh=score_thresh)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training and targets is not None:  # torchvision's two stages: label 0 is the background
            targets = [{**t, "labels": t["labels"] + 1} for t in targets]
        out = super().forward(images, targets)
        return rename(out, LOSS_NAMES) if self.training else out
