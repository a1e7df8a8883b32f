"""``build_model``: the one place that reads a trial's configuration to make a detector.

Everything below it (backbones, necks, heads, losses, post-processing) takes
keyword arguments, as torchvision's ``RetinaNet(backbone, num_classes, ...)`` does.
"""

from __future__ import annotations

from ablate.models.backbones import BackboneWithNeck, build_body, load_weights, weights_file
from ablate.models.detector import Detector
from ablate.models.fcos import CatalogueFCOS
from ablate.models.retinanet import CatalogueRetinaNet
from ablate.study.config import TrialConfig
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES
from ablate.tricks.necks import NECKS
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.registry import build_selected

# model.detector (study.config.DETECTORS) -> its builder, called as (backbone, num_classes, model section, **common)
BUILDERS = {
    "retinanet": lambda backbone, n, m, **common: CatalogueRetinaNet(
        backbone, n, anchor_scale=m.anchor_scale, head_norm=m.head_norm, **common),
    "fcos": lambda backbone, n, m, **common: CatalogueFCOS(backbone, n, **common),
}
PYRAMID_EXTRA_LEVELS = 2  # C3-C5 -> P3-P7: RetinaNet and FCOS both predict on five levels


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
    body, channels = build_body(m.backbone, width=m.width)
    if m.pretrained is not None:
        load_weights(body, weights_file(m.backbone, m.pretrained))
    neck = build_selected(NECKS, m.neck, "neck",
                 in_channels=channels, out_channels=m.channels, extra_levels=PYRAMID_EXTRA_LEVELS)
    backbone = BackboneWithNeck(body, neck, m.channels)

    size = config.data.image_size
    common = dict(
        cls_loss=build_selected(CLS_LOSSES, config.loss.cls, "classification loss"),
        box_loss=build_selected(BOX_LOSSES, config.loss.box, "box loss"),
        min_size=size, max_size=size * 1333 // 800,  # torchvision's 800/1333 aspect cap
        score_thresh=config.eval.score_thresh,
        head_convs=m.head_convs,
    )
    if m.detector not in BUILDERS:
        raise ValueError(f"unknown detector '{m.detector}'; valid: {', '.join(BUILDERS)}")
    model = BUILDERS[m.detector](backbone, num_classes, m, **common)

    return Detector(
        model,
        method=build_selected(POSTPROCESS, config.eval.nms, "postprocess"),
        tta=build_selected(TTA, config.eval.tta, "tta"),
        score_thresh=config.eval.score_thresh,
        max_dets=config.eval.max_dets,
    )
