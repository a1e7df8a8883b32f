"""``build_model``: the one place that reads a trial's configuration to make a detector.

Everything below it (backbones, necks, heads, losses, post-processing) takes
keyword arguments, as torchvision's ``RetinaNet(backbone, num_classes, ...)`` does.
"""

from __future__ import annotations

from ablate.models.atss import CatalogueAtss
from ablate.models.backbones import PIXELS, BackboneWithNeck, build_body, load_weights, weights_file
from ablate.models.body import with_options
from ablate.models.detector import Detector, keep_all
from ablate.models.detr import CatalogueDetr
from ablate.models.faster_rcnn import CatalogueFasterRCNN
from ablate.models.fcos import CatalogueFCOS
from ablate.models.retinanet import CatalogueRetinaNet
from ablate.models.ssd import HIGHRES, CatalogueSSD, SsdExtras, vgg_extractor
from ablate.study.config import TrialConfig
from ablate.tricks.assign import ASSIGNERS
from ablate.tricks.blocks import HEAD_CONVS
from ablate.tricks.blocks.convs import replace_head_convs
from ablate.tricks.detectors import DETECTORS
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES
from ablate.tricks.necks import NECKS
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.pyramids import PYRAMIDS, Pyramid
from ablate.tricks.registry import build, build_selected


def _levels(m) -> Pyramid:
    """``model.pyramid``: the levels the dense heads predict on (P3-P7 unless a P2 pyramid is chosen)."""
    return build_selected(PYRAMIDS, m.pyramid, "pyramid")


def _pyramid(body, channels: list[int], m) -> BackboneWithNeck:
    """Body and neck: ``channels`` are the body's outputs' (C2 first for a P2 pyramid)."""
    levels = _levels(m)
    neck = build_selected(NECKS, m.neck, "neck", in_channels=channels, out_channels=m.channels,
                          extra_levels=levels.extra_levels)
    return BackboneWithNeck(body, neck, m.channels, levels.names)


def _assigner(m):
    """``model.assigner``, or the detector's own when it is null."""
    if m.assigner is None:
        return build(ASSIGNERS, DETECTORS[m.detector.name].assigner, "assigner")
    return build_selected(ASSIGNERS, m.assigner, "assigner")


def _retinanet(body, channels, n, m, d, **common):
    return CatalogueRetinaNet(_pyramid(body, channels, m), n, assigner=_assigner(m), head_convs=d.head_convs,
                              head_norm=d.head_norm, anchor_scale=d.anchor_scale, anchor_octaves=d.anchor_octaves,
                              anchor_ratios=tuple(d.anchor_ratios), strides=_levels(m).strides, **common)


def _fcos(body, channels, n, m, d, **common):
    return CatalogueFCOS(_pyramid(body, channels, m), n, assigner=_assigner(m), head_convs=d.head_convs,
                         strides=_levels(m).strides, **common)


def _atss(body, channels, n, m, d, **common):
    return CatalogueAtss(_pyramid(body, channels, m), n, assigner=_assigner(m), head_convs=d.head_convs,
                         anchor_scale=d.anchor_scale, strides=_levels(m).strides, **common)


def _ssd(body, channels, n, m, d, **common):
    maps = 7 if common["min_size"] >= HIGHRES else 6  # SSD512's seven maps, SSD300's six
    extractor = (vgg_extractor(body, highres=maps == 7) if m.backbone == "vgg16"
                 else SsdExtras(body, channels, width=m.channels, maps=maps))
    return CatalogueSSD(extractor, n, neg_pos_ratio=d.neg_pos_ratio, iou=d.iou, min_ratio=d.min_ratio,
                        max_ratio=d.max_ratio, lite=d.lite, **common)


def _detr(body, channels, n, m, d, **common):
    return CatalogueDetr(_pyramid(body, channels, m), n, d_model=m.channels, level=d.level, queries=d.queries,
                         encoder_layers=d.encoder_layers, decoder_layers=d.decoder_layers, heads=d.heads, ffn=d.ffn,
                         dropout=d.dropout, anchors=d.anchors, encoder_repeat=d.encoder_repeat,
                         refine_logits=d.refine_logits, pre_norm=d.pre_norm, aux_loss=d.aux_loss,
                         cost_class=d.cost_class, cost_l1=d.cost_l1, cost_giou=d.cost_giou, **common)


def _faster_rcnn(body, channels, n, m, d, **common):
    return CatalogueFasterRCNN(_pyramid(body, channels, m), n, anchor_scale=d.anchor_scale, rpn_fg_iou=d.rpn_fg_iou,
                               rpn_bg_iou=d.rpn_bg_iou, rpn_batch=d.rpn_batch, rpn_proposals=d.rpn_proposals,
                               roi_batch=d.roi_batch, roi_positive_fraction=d.roi_positive_fraction,
                               sampler=d.sampler, representation=d.representation, **common)


# model.detector.name (tricks/detectors.py DETECTORS) -> its builder, called as
# (body, body channels, num_classes, model section, detector section, **common)
BUILDERS = {"retinanet": _retinanet, "fcos": _fcos, "atss": _atss, "ssd": _ssd, "faster_rcnn": _faster_rcnn,
            "detr": _detr}


def build_model(config: TrialConfig, *, num_classes: int) -> Detector:
    """The detector of one trial, randomly initialised (or with local backbone weights).

    Args:
        config: the trial's resolved configuration (``model``, ``loss``, ``eval``,
            and ``data.image_size`` for the evaluation resize).
        num_classes: foreground classes; target labels are ``0..num_classes-1``.

    Raises:
        ConfigError: ``model.pretrained`` is missing or does not fit the backbone.

    Example:
        >>> detector = build_model(TrialConfig(), num_classes=3)
        >>> losses = detector.train()(images, targets)  # {"loss_cls": ..., "loss_box": ...}
        >>> detections = detector.eval()(images)        # [{"boxes", "scores", "labels"}, ...]
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    m = config.model
    body, channels = build_body(m.backbone, width=m.width, style=m.style, levels=_levels(m).body_levels)
    if m.pretrained is not None:  # C2 or not, the body's parameters (and so the file's keys) are the same
        load_weights(body, weights_file(m.backbone, m.pretrained), bgr=m.style == "caffe")
    body = with_options(body, channels[-3:], m)  # plugins and context run on C3-C5

    size = config.data.image_size
    mean, std = PIXELS[m.style]
    common = dict(
        cls_loss=build_selected(CLS_LOSSES, config.loss.cls, "classification loss"),
        box_loss=build_selected(BOX_LOSSES, config.loss.box, "box loss"),
        min_size=size, max_size=size * 1333 // 800,  # torchvision's 800/1333 aspect cap
        image_mean=mean, image_std=std, score_thresh=config.eval.score_thresh,
    )
    if m.detector.name not in BUILDERS:
        raise ValueError(f"unknown detector '{m.detector.name}'; valid: {', '.join(BUILDERS)}")
    model = BUILDERS[m.detector.name](body, channels, num_classes, m, m.detector, **common)

    if m.head_conv.name != "plain":  # validation allows it on retinanet, fcos and atss only
        replace_head_convs(model.head, lambda conv: build_selected(HEAD_CONVS, m.head_conv, "head conv", conv=conv))
    merges = "eval.nms" in DETECTORS[m.detector.name].takes  # DETR predicts a set: nothing to merge
    return Detector(
        model,
        method=build_selected(POSTPROCESS, config.eval.nms, "postprocess") if merges else keep_all,
        tta=build_selected(TTA, config.eval.tta, "tta"),
        score_thresh=config.eval.score_thresh,
        max_dets=config.eval.max_dets,
    )
