"""Distillation losses: pure functions on tensors, and the thin modules the catalogue builds.

``logits_distill`` is Hinton et al.'s knowledge distillation for a detector whose classifier is a
sigmoid per class (RetinaNet, FCOS, ATSS): each anchor's C logits are C binary problems, so the
soft targets are ``sigmoid(teacher / T)`` per class, as mmdetection's KnowledgeDistillationKLDivLoss
is for softmax (there summed over the distribution, here over the classes' two-way ones).
``features_distill`` is FitNets' hint loss without a regressor (the channels must match), as the
mimic loss of Li et al. 2017 on every pyramid level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def logits_distill(student: Tensor, teacher: Tensor, *, temperature: float = 1.0, loss: str = "kl") -> Tensor:
    """Distillation of ``student`` logits ``[N, C]`` towards ``teacher`` logits ``[N, C]``: a scalar.

    Per element ``p = sigmoid(teacher / T)``, ``q = sigmoid(student / T)``; ``bce`` is
    ``-(p log q + (1 - p) log(1 - q))``, ``kl`` is that minus the teacher's entropy (0 when q = p).
    Summed over the C classes, averaged over the N anchors, times ``T^2``.  Computed in float32.

    Example:
        >>> z = torch.tensor([[0.0, 2.0]])
        >>> float(logits_distill(z, z))
        0.0
    """
    if loss not in ("kl", "bce"):
        raise ValueError(f"loss must be 'kl' or 'bce', got {loss!r}")
    s, t = student.float() / temperature, teacher.detach().float() / temperature
    soft = torch.sigmoid(t)  # [N, C]
    per = F.binary_cross_entropy_with_logits(s, soft, reduction="none")  # [N, C]
    if loss == "kl":
        per = per - F.binary_cross_entropy_with_logits(t, soft, reduction="none")  # minus H(p): KL(p || q)
    return per.sum(-1).mean() * temperature**2


def features_distill(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Mean over levels of the mean squared difference of ``student`` and ``teacher`` maps (each ``[B, C, H, W]``)."""
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student levels against {len(teacher)} teacher levels")
    per_level = []
    for s, t in zip(student, teacher):
        if s.shape != t.shape:
            raise ValueError(f"a student level {tuple(s.shape)} against a teacher level {tuple(t.shape)}; "
                             "feature imitation needs equal shapes (model.channels, data.image_size)")
        per_level.append(F.mse_loss(s.float(), t.detach().float()))
    return torch.stack(per_level).mean()


class LogitsDistill(nn.Module):
    """``weight x logits_distill`` of the heads' ``cls_logits`` ``[B, HWA, C]``, all anchors of all levels."""

    needs = "head"

    def __init__(self, *, teacher: str, weight: float = 1.0, temperature: float = 2.0, loss: str = "kl"):
        super().__init__()
        self.teacher, self.weight, self.temperature, self.kind = teacher, weight, temperature, loss

    def forward(self, student: dict, teacher: dict) -> Tensor:
        s, t = student["cls_logits"], teacher["cls_logits"]  # [B, HWA, C] each
        if s.shape != t.shape:
            raise ValueError(f"student logits {tuple(s.shape)} against teacher logits {tuple(t.shape)}; "
                             "logit distillation needs the same anchors per location and classes")
        return self.weight * logits_distill(s.flatten(0, 1), t.flatten(0, 1), temperature=self.temperature,
                                            loss=self.kind)


class FeaturesDistill(nn.Module):
    """``weight x features_distill`` of the necks' P3..P7."""

    needs = "features"

    def __init__(self, *, teacher: str, weight: float = 1.0):
        super().__init__()
        self.teacher, self.weight = teacher, weight

    def forward(self, student: dict, teacher: dict) -> Tensor:
        return self.weight * features_distill(student["features"], teacher["features"])
