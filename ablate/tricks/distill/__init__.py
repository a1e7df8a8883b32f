"""The distillation catalogue (``train.distill``): learning from a finished trial of the same study.

Every entry but ``none`` names a ``teacher`` (params.py says how it is found and which weights it
gives) and returns a loss module ``loss(student, teacher) -> scalar``, each argument a dict with
``features`` (the neck's P3..P7, each ``[B, C, H, W]``) and the head's outputs (``cls_logits``
``[B, HWA, C]``, ...); its class attribute ``needs`` says whether the teacher's head must run
("head") or its neck suffices ("features").  engine/distill.py runs the teacher and adds the
result to the trial's losses as ``loss_distill``.  The modules live in ``losses.py``.
"""

from ablate.tricks.distill.params import FeaturesParams, LogitsParams
from ablate.tricks.registry import Lazy, NoParams, Trick


def _losses():  # imported when a trial builds one of its entries
    from ablate.tricks.distill import losses

    return losses


def _none(**_) -> None:
    return None


DISTILL: dict[str, Trick] = {
    "none": Trick(_none, NoParams, "no distillation"),
    "logits": Trick(Lazy(lambda: _losses().LogitsDistill), LogitsParams, "knowledge distillation (Hinton et al. "
                    "2015) of the classification logits per anchor: sigmoid with temperature, KL or BCE"),
    "features": Trick(Lazy(lambda: _losses().FeaturesDistill), FeaturesParams, "feature imitation (FitNets; "
                      "mimic, Li et al. 2017): MSE between the student's and teacher's P3..P7"),
}

DISTILL_DETECTORS = ("retinanet", "fcos", "atss")  # whose backbone and head engine/distill.py can read


def distill_problem(distill: str, detector: str) -> str | None:
    """Why ``train.distill: distill`` cannot train with ``model.detector: detector``, or None when it can.

    Example:
        >>> distill_problem("logits", "ssd")[:33]
        'train.distill: logits reads the P'
    """
    if distill == "none" or detector in DISTILL_DETECTORS:
        return None
    return (f"train.distill: {distill} reads the P3..P7 features and dense head outputs that model.detector: "
            f"{detector} does not give; choose model.detector {', '.join(DISTILL_DETECTORS)} or train.distill none")
