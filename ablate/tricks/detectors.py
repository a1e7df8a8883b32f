"""The detectors a study can name (``model.detector``), each with its own documented keys.

``model.detector`` is a section like ``loss.box``: a bare name (``atss``) or a mapping with
``name`` and the keys below.  A key belongs to the detectors that take it, so a factor
level naming another detector replaces the whole section (paths.merge) and never inherits
keys that do not apply to it; writing one anyway is an error naming the detectors that take
it.  ``takes`` lists the study keys outside this section that a detector reads: a value other
than the default in one it does not read (``model.assigner`` for SSD, ``eval.nms`` for DETR)
is an error too, before anything runs.  models/build.py builds each; no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from ablate.tricks.registry import Params

HEAD_CONVS = "3x3 convs per head branch, 1..4 (4 as in the paper)"


class DenseParams(Params):
    head_convs: int = Field(4, ge=1, le=4, description=HEAD_CONVS)


class RetinaNetParams(DenseParams):
    head_norm: Literal["group", "none"] = Field(
        "group", description="GroupNorm in the head convs (torchvision's v2) | none (the paper's)")
    anchor_scale: float = Field(4.0, gt=0, le=16, description="anchor base size in strides (4 as in the paper; "
                                "2 suits small images)")
    anchor_octaves: int = Field(3, ge=1, le=5, description="anchor sizes per level, 2^(i/octaves) apart (3 in the "
                                "paper; 1 with anchor_ratios [1.0] is the ATSS paper's #A=1 RetinaNet)")
    anchor_ratios: list[float] = Field([0.5, 1.0, 2.0], min_length=1, description="anchor aspect ratios h/w")


class FcosParams(DenseParams):
    pass


class AtssParams(DenseParams):
    anchor_scale: float = Field(8.0, gt=0, le=16, description="side of the one square anchor per location, in "
                                "strides (8 as mmdetection's ATSSHead)")


class SsdParams(Params):
    neg_pos_ratio: float = Field(3.0, gt=0, le=100, description="hard negative mining: background boxes kept per "
                                 "positive, the highest-loss ones (3 in the paper)")
    iou: float = Field(0.5, gt=0, le=1, description="IoU from which a default box matches a GT (each GT also keeps "
                       "its best box)")
    min_ratio: float = Field(0.15, gt=0, lt=1, description="smallest default box scale, a fraction of the image "
                             "(mmdetection's COCO SSD300: 0.15, SSD512: 0.1)")
    max_ratio: float = Field(0.9, gt=0, le=1, description="largest default box scale, fraction of the image")
    lite: bool = Field(False, description="SSDlite: depthwise-separable heads (torchvision's ssdlite320)")

    @model_validator(mode="after")
    def _ratios(self) -> SsdParams:
        if self.min_ratio >= self.max_ratio:
            raise ValueError(f"min_ratio ({self.min_ratio}) must be below max_ratio ({self.max_ratio})")
        return self


class FasterRcnnParams(Params):
    """Defaults are torchvision's ``fasterrcnn_resnet50_fpn``.  On a CPU (the tiny body, 192-px shapes) take
    ``{rpn_proposals: 300, roi_batch: 128, representation: 256}``: 0.60 mAP after the 8 epochs of
    studies/_base_/tiny_shapes.yaml (focal + giou), an epoch ~1.3x an FCOS one (see ablate/models/faster_rcnn.py)."""

    anchor_scale: float = Field(4.0, gt=0, le=32, description="RPN anchor size in strides, one size per level "
                                "P3..P7 at ratios 0.5, 1, 2 (4: torchvision's 32..512 px)")
    rpn_fg_iou: float = Field(0.7, gt=0, le=1, description="RPN: IoU from which an anchor is an object")
    rpn_bg_iou: float = Field(0.3, ge=0, le=1, description="RPN: IoU below which an anchor is background")
    rpn_batch: int = Field(256, ge=2, le=4096, description="RPN: anchors sampled per image for its loss, half objects")
    rpn_proposals: int = Field(2000, ge=10, le=10_000, description="RPN proposals per image kept after its NMS "
                               "while training, and per level before it (torchvision's 2000 and 2000); at test time "
                               "1000, or this if smaller; 300-500 on a CPU")
    roi_batch: int = Field(512, ge=2, le=4096, description="RoIs sampled per image for the box head's loss (128 on "
                           "a CPU: the box head costs in proportion)")
    roi_positive_fraction: float = Field(0.25, gt=0, le=1, description="share of those RoIs that are objects, at most")
    sampler: Literal["random", "ohem", "iou_balanced"] = Field(
        "random", description="how the box head's RoIs are sampled: random (torchvision) | ohem (the highest-loss "
        "RoIs, Shrivastava et al. 2016) | iou_balanced (negatives spread evenly over IoU bins, Libra R-CNN)")
    representation: int = Field(1024, ge=16, le=4096, description="width of the box head's two FC layers (256 on "
                                "a CPU)")

    @model_validator(mode="after")
    def _ordered(self) -> FasterRcnnParams:
        if self.rpn_bg_iou > self.rpn_fg_iou:
            raise ValueError(f"rpn_bg_iou ({self.rpn_bg_iou}) must not exceed rpn_fg_iou ({self.rpn_fg_iou})")
        return self


class DetrParams(Params):
    """DETR's keys; the defaults are the paper's (ResNet-50 DETR), the options its successors' speed-ups."""

    queries: int = Field(100, ge=1, le=1000, description="object queries: the most objects one image can yield "
                         "(anchors encoder: at most the level's tokens)")
    encoder_layers: int = Field(6, ge=0, le=12, description="transformer encoder layers")
    decoder_layers: int = Field(6, ge=1, le=12, description="transformer decoder layers")
    heads: int = Field(8, ge=1, le=32, description="attention heads (model.channels must divide by it)")
    ffn: int = Field(2048, ge=8, le=8192, description="feed-forward width of each layer (4 x model.channels is "
                     "the usual ratio)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the transformer")
    pre_norm: bool = Field(False, description="LayerNorm before each attention and FFN, not after (DETR's "
                           "normalize_before): the queries keep their own content through the layers")
    level: Literal["p3", "p4", "p5"] = Field("p5", description="the stride the encoder reads: p3 8, p4 16, p5 32 "
                                             "(DETR: C5); the map is the five pyramid levels resized to it and "
                                             "averaged; each finer level has 4x the tokens, for small objects")
    anchors: Literal["none", "learned", "refine", "encoder"] = Field(
        "none", description="none: learned query embeddings, boxes predicted outright (DETR) | learned: a learned "
        "reference box per query, its sine embedding the positional query and the box an offset to it (DAB-DETR) | "
        "refine: as learned, each decoder layer starting from the previous layer's box (Deformable DETR) | "
        "encoder: as refine, the queries being the encoder tokens that score best, each token predicting a class "
        "and a box under the same set loss (Deformable DETR's two-stage, RT-DETR's query selection)")
    encoder_repeat: int = Field(1, ge=1, le=16, description="anchors encoder: the tokens each box is matched to in "
                                "the encoder's loss (1: one-to-one as Deformable DETR; k > 1: the box repeated k "
                                "times in the matching, one-to-many as H-DETR: dense supervision, faster learning)")
    refine_logits: bool = Field(False, description="anchors encoder: the decoder's class logits are corrections "
                                "to its chosen tokens' logits, as its boxes are to their boxes")
    aux_loss: bool = Field(True, description="the loss after every decoder layer, not just the last (DETR's aux)")
    cost_class: float = Field(2.0, ge=0, description="matching cost weight of the class score (focal-style for "
                              "sigmoid losses, -p for ce); higher matches the best-scored of near-duplicate "
                              "queries, which the decoder then learns to keep")
    cost_l1: float = Field(5.0, ge=0, description="matching cost and loss weight of L1 on normalised cx, cy, w, h")
    cost_giou: float = Field(2.0, ge=0, description="matching cost weight of -GIoU")

    @model_validator(mode="after")
    def _encoder_keys(self) -> DetrParams:
        if self.anchors != "encoder" and (self.encoder_repeat > 1 or self.refine_logits):
            raise ValueError(f"encoder_repeat and refine_logits apply to anchors: encoder, not {self.anchors}")
        return self


@dataclass(frozen=True)
class DetectorEntry:
    """One detector: its keys, a one-line doc, its zoo name and the study keys it reads beyond its own section."""

    params: type[Params]
    doc: str
    network: str  # the Network column; SSD adds its input size (SSD300)
    takes: frozenset[str]
    assigner: str | None = None  # its own assigner (model.assigner: null), for those that take one


DENSE = frozenset({"model.assigner", "model.neck", "model.pyramid", "model.head_conv", "eval.nms", "eval.tta"})
DETECTORS: dict[str, DetectorEntry] = {
    "retinanet": DetectorEntry(RetinaNetParams, "RetinaNet (Lin et al. 2017), torchvision's: anchors, focal-loss "
                               "head", "RetinaNet", DENSE, "max_iou"),
    "fcos": DetectorEntry(FcosParams, "FCOS (Tian et al. 2019), torchvision's: anchor-free points, centerness",
                          "FCOS", DENSE, "fcos_ranges"),
    "atss": DetectorEntry(AtssParams, "ATSS (Zhang et al. 2020), as mmdetection's ATSSHead: one anchor per "
                          "location, centerness, the ATSS assigner", "ATSS", DENSE, "atss"),
    "ssd": DetectorEntry(SsdParams, "SSD (Liu et al. 2016), torchvision's: default boxes on six or more maps, hard "
                         "negative mining; VGG16 body as the paper (backbone vgg16) or any other", "SSD",
                         frozenset({"eval.nms", "eval.tta"})),
    "faster_rcnn": DetectorEntry(FasterRcnnParams, "Faster R-CNN with FPN (Ren et al. 2015), torchvision's two "
                                 "stages: RPN proposals, RoIAlign box head; on a CPU take rpn_proposals 300, "
                                 "roi_batch 128, representation 256", "Faster R-CNN",
                                 frozenset({"model.neck", "eval.nms", "eval.tta"})),
    "detr": DetectorEntry(DetrParams, "DETR-style set prediction (Carion et al. 2020): transformer encoder-decoder, "
                          "Hungarian matching, no NMS; converges slowly: with the paper's settings (the defaults) "
                          "it stays near 0 mAP after 8 shapes epochs, 0.15-0.18 with anchors encoder, encoder_repeat 6, "
                          "cost_class 4, level p3, pre_norm, 1 encoder / 3 decoder layers, heads 4, ffn 256, "
                          "queries 30, dropout 0, loss.cls focal weight 5, lr 0.008", "DETR",
                          frozenset({"model.neck"})),
}
