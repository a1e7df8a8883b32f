"""``train.distill`` in a trial: the frozen teacher, and the student's outputs read by forward hooks.

The teacher is the finished trial's detector built from the configuration its checkpoint holds,
with the weights its last epoch was evaluated with (SWA's if it used SWA, else EMA's if it used
EMA, else the model's), in eval mode, without gradients, on the student's device.  Forward hooks
on the student's ``backbone`` (BackboneWithNeck) and ``head`` keep, while it trains, the
transformed batch it saw, its P3..P7 and its head outputs; the teacher then runs its own
backbone (and head, for logits) on that same batch, so both see exactly the same pixels.
Nothing of the detectors changes: their state dicts, the EMA copy (made before the hooks) and
evaluation are as without distillation.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ablate.engine import checkpoint
from ablate.errors import ConfigError
from ablate.status import STATUS
from ablate.study.config import TrialConfig
from ablate.study.distill import teacher_mismatch
from ablate.study.paths import merge
from ablate.tricks.distill import DISTILL
from ablate.tricks.registry import build_selected


def teacher_weights(saved: dict, config: TrialConfig) -> dict[str, Tensor]:
    """The state dict a finished trial was last evaluated with: SWA's, else EMA's, else the model's."""
    for key, used in (("swa", config.train.swa.enabled), ("ema", config.train.ema.enabled)):
        if used and saved.get(key) is not None:  # an AveragedModel: "module.<name>" and "n_averaged"
            return {k.removeprefix("module."): v for k, v in saved[key].items() if k.startswith("module.")}
    return saved["model"]


def load_teacher(folder: Path, student: TrialConfig, *, num_classes: int, device: torch.device) -> nn.Module:
    """The teacher detector of ``folder`` (a completed trial's), frozen; ConfigError if it cannot be one."""
    from ablate.models import build_model

    folder = Path(folder)
    try:
        status = json.loads((folder / STATUS).read_text())
    except (OSError, ValueError):
        status = {}
    saved = checkpoint.load(folder / checkpoint.CHECKPOINT)
    if status.get("status") != "completed" or saved is None:
        what = "has no checkpoint" if saved is None else f"is {status.get('status', 'not started')}"
        raise ConfigError(f"train.distill.teacher: the teacher's trial folder {folder} {what}; the teacher must "
                          "have completed (run its study, `ablate run`, which trains teachers first)")
    who = f"trial {saved['trial_id']}"
    config = TrialConfig.model_validate(merge(saved["config"], {"model": {"pretrained": None}}))  # weights below
    problem = teacher_mismatch(student, config, who)
    if problem:
        raise ConfigError(problem)
    teacher = build_model(config, num_classes=num_classes)
    try:
        teacher.load_state_dict(teacher_weights(saved, config))
    except RuntimeError as e:
        shapes = str(e).strip().splitlines()[1:2] or [""]
        raise ConfigError(f"train.distill.teacher: {who}'s weights do not fit its model built for the student's "
                          f"{num_classes} classes (another data.classes?): {shapes[0].strip()}") from None
    return teacher.to(device).eval().requires_grad_(False)


class Distiller:
    """``distiller()`` after the student's training forward: ``{"loss_distill": scalar}``.

    Args:
        student: the trial's ``Detector`` (RetinaNet, FCOS, ATSS: ``student.model.backbone`` / ``.head``).
        teacher: a frozen ``Detector`` of the same family (``load_teacher``).
        loss: a built ``DISTILL`` module: ``loss(student_outputs, teacher_outputs)``, ``needs`` "head" or "features".
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, loss: nn.Module):
        self.teacher, self.loss = teacher, loss
        seen: dict = {}
        self.seen = seen

        def on_backbone(module, args, output) -> None:  # closures, not bound methods: deepcopy keeps them atomic
            if module.training:
                seen["batch"], seen["features"] = args[0], list(output.values())  # [B, 3, H, W], P3..P7

        def on_head(module, args, output) -> None:
            if module.training:
                seen["head"] = output  # {"cls_logits": [B, HWA, C], "bbox_regression": ..., ...}

        inner = student.model
        self.handles = [inner.backbone.register_forward_hook(on_backbone),
                        inner.head.register_forward_hook(on_head)]

    def __call__(self) -> dict[str, Tensor]:
        seen = self.seen
        if "features" not in seen:
            raise RuntimeError("the student's backbone did not run in train mode before the distillation loss")
        inner = self.teacher.model
        with torch.no_grad():
            features = list(inner.backbone(seen["batch"]).values())
            head = inner.head(features) if self.loss.needs == "head" else {}
        student = {"features": seen["features"], **seen.get("head", {})}
        seen.clear()
        return {"loss_distill": self.loss(student, {"features": features, **head})}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def build_distiller(config: TrialConfig, student: nn.Module, teacher_dir: Path | None, *, num_classes: int,
                    device: torch.device) -> Distiller | None:
    """The trial's distiller, or None for ``train.distill: none``; ConfigError without a usable teacher."""
    selected = config.train.distill
    if selected.name == "none":
        return None
    if teacher_dir is None:
        raise ConfigError(f"train.distill: {selected.name} needs its teacher's trial folder ({selected.teacher}): "
                          "run the trial in its study (`ablate run`), which finds the teacher and trains it first")
    teacher = load_teacher(teacher_dir, config, num_classes=num_classes, device=device)
    return Distiller(student, teacher, build_selected(DISTILL, selected, "distill"))
