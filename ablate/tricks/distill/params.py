"""The distillation entries' user-facing parameters: typed, documented, closed (no torch here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ablate.tricks.registry import Params

TEACHER = (
    "the teacher: a variant of this study as `ablate plan` names it (baseline, model.neck=pan, ...; its trial "
    "of the student's seed) or a trial id of this study (that trial, whatever its seed). Its final evaluated "
    "weights are read from its trial folder (SWA's if it used SWA, else EMA's if it used EMA, else the "
    "model's). In one `ablate run` the teacher's trials run first and each student starts once its teacher's "
    "trial has completed; a teacher that ended pruned or failed fails its students, naming it. The teacher "
    "must train without train.distill, with the student's model.detector, data.image_size, model.style and "
    "classes; default: the baseline"
)


class DistillParams(Params):
    """Parameters every distillation entry has."""

    teacher: str = Field("baseline", min_length=1, description=TEACHER)
    weight: float = Field(1.0, gt=0.0, description="multiplier of loss_distill in the total loss, > 0")


class LogitsParams(DistillParams):
    """Hinton et al. 2015 on a dense detector's classification logits, per anchor / location and class."""

    temperature: float = Field(
        2.0, gt=0.0, le=100.0, description="T: both logits are divided by T before the sigmoid, and the loss is "
        "multiplied by T^2 (Hinton et al.) so its gradient keeps its scale; > 0, 1 = the teacher's own scores")
    loss: Literal["kl", "bce"] = Field(
        "kl", description="kl: binary KL divergence of the student's sigmoid(z/T) from the teacher's, 0 when "
        "they agree | bce: binary cross-entropy to the teacher's soft probabilities (KL plus the teacher's "
        "entropy: the same gradient, a constant higher); summed over classes, averaged over all anchors")


class FeaturesParams(DistillParams):
    """Feature imitation of the neck outputs P3..P7 (FitNets, Romero et al. 2015; mimic, Li et al. 2017)."""

    weight: float = Field(1.0, gt=0.0, description="multiplier of loss_distill (the mean over P3..P7 of each "
                          "level's mean squared difference) in the total loss, > 0")
