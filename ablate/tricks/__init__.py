"""The trick catalogue: every named component a study can select.

Each kind is a plain dict literal in its own module; this table says which
study key selects from it.  ``ablate catalogue`` prints it.
"""

from dataclasses import dataclass

from ablate.tricks.assign import ASSIGNERS
from ablate.tricks.augment import AUGMENTS
from ablate.tricks.blocks import ACTIVATIONS, CONTEXT, HEAD_CONVS, NORMS, PLUGINS
from ablate.tricks.detectors import DETECTORS, DetectorEntry
from ablate.tricks.distill import DISTILL
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES
from ablate.tricks.necks import NECKS
from ablate.tricks.optim import OPTIMIZERS, REGULARISERS
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.pyramids import PYRAMIDS
from ablate.tricks.registry import Trick
from ablate.tricks.scaling import LR_SCALING
from ablate.tricks.schedules import SCHEDULES, WARMUPS


@dataclass(frozen=True)
class Kind:
    key: str  # where a study selects it
    table: dict[str, Trick] | dict[str, DetectorEntry]
    doc: str


CATALOGUE: dict[str, Kind] = {
    "detector": Kind("model.detector", DETECTORS, "detectors, each with its own keys"),
    "assigner": Kind("model.assigner", ASSIGNERS, "which anchors or points learn which box (dense detectors)"),
    "schedule": Kind("train.schedule", SCHEDULES, "learning-rate schedules (per iteration)"),
    "warmup": Kind("train.warmup", WARMUPS, "learning-rate warmups"),
    "lr_scaling": Kind("train.lr_scaling.rule", LR_SCALING, "learning rate vs total batch size"),
    "optimizer": Kind("train.optimizer", OPTIMIZERS, "optimisers and weight decay"),
    "regulariser": Kind("train.<name>", REGULARISERS, "training-loop options: EMA, SWA, clipping, AMP"),
    "distill": Kind("train.distill", DISTILL, "knowledge distillation from a finished trial of the study"),
    "cls_loss": Kind("loss.cls", CLS_LOSSES, "classification losses"),
    "box_loss": Kind("loss.box", BOX_LOSSES, "box regression losses"),
    "augment": Kind("augment[]", AUGMENTS, "box-aware train-time augmentations, applied in list order"),
    "norm": Kind("model.norm", NORMS, "the backbone's normalisation layers"),
    "activation": Kind("model.activation", ACTIVATIONS, "the backbone's activation function"),
    "plugin": Kind("model.plugins[]", PLUGINS, "blocks added to the backbone: deformable convs, attention, DropBlock"),
    "context": Kind("model.context", CONTEXT, "a context block on C5 before the neck"),
    "head_conv": Kind("model.head_conv", HEAD_CONVS, "the 3x3 convs of a dense head's towers"),
    "neck": Kind("model.neck", NECKS, "feature fusion between backbone and heads"),
    "pyramid": Kind("model.pyramid", PYRAMIDS, "the levels dense heads predict on: P3-P7, or a P2 level (four heads) "
                    "for small objects"),
    "postprocess": Kind("eval.nms", POSTPROCESS, "merging overlapping detections"),
    "tta": Kind("eval.tta", TTA, "test-time augmentation"),
}
