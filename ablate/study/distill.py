"""Whether a trial can distil from a teacher: the keys that must agree, checked on configurations alone.

``train.distill`` (tricks/distill) runs the teacher's backbone and head on the student's own
transformed batch, so both must read the same pixels (``model.style``, ``data.image_size``), give
outputs of the same layout (``model.detector``, its anchors per location, ``model.pyramid``),
predict the same classes (``data.dataset``, ``data.classes``), and for feature imitation have the
same width (``model.channels``).  orchestrate/teachers.py finds the teacher; engine/distill.py
checks again from the teacher's checkpoint, where the class count is known.
"""

from __future__ import annotations

from typing import Any

from ablate.study.config import TrialConfig


def anchors_per_location(config: TrialConfig) -> int:
    """How many anchors (or points) a dense detector's head predicts at each location."""
    d = config.model.detector
    if d.name == "retinanet":
        return d.anchor_octaves * len(d.anchor_ratios)
    return 1  # fcos: one point; atss: one square anchor


def _value(config: TrialConfig, key: str) -> Any:
    section, field = key.split(".")
    value = getattr(getattr(config, section), field, None)  # model.pyramid: only where the schema has it
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _shown(value: Any) -> str:
    return str(value.get("name", value)) if isinstance(value, dict) else str(value)


def teacher_mismatch(student: TrialConfig, teacher: TrialConfig, who: str) -> str | None:
    """Why ``student`` cannot distil from ``teacher`` (``who``: how the message names it), or None.

    Example:
        >>> s = TrialConfig.model_validate({"train": {"distill": "logits"}})
        >>> teacher_mismatch(s, TrialConfig.model_validate({"model": {"detector": "fcos"}}), "variant x")[:62]
        'train.distill.teacher: variant x is model.detector fcos, the s'
    """
    mode = student.train.distill.name
    if teacher.train.distill.name != "none":
        return (f"train.distill.teacher: {who} itself distils (train.distill: {teacher.train.distill.name} from "
                f"{teacher.train.distill.teacher}); a teacher must train without train.distill")
    keys = ["model.detector" if teacher.model.detector.name != student.model.detector.name else None,
            "model.style", "data.image_size", "data.dataset", "data.classes", "model.pyramid"]
    if mode == "features":
        keys.append("model.channels")
    for key in filter(None, keys):
        mine, theirs = _value(student, key), _value(teacher, key)
        if key == "model.detector" or mine != theirs:
            why = {"model.detector": "the same detector family gives comparable outputs",
                   "model.channels": "feature imitation compares the necks' maps channel by channel",
                   "data.dataset": "the teacher must predict the student's classes",
                   "data.classes": "the teacher must predict the student's classes"}.get(
                       key, "the teacher runs on the student's own transformed batch")
            return (f"train.distill.teacher: {who} is {key} {_shown(theirs)}, the student is {_shown(mine)}; "
                    f"{why}: choose a teacher with {key} {_shown(mine)}, or give the student the teacher's")
    if mode == "logits" and anchors_per_location(student) != anchors_per_location(teacher):
        return (f"train.distill.teacher: {who} has {anchors_per_location(teacher)} anchors per location "
                f"(model.detector.anchor_octaves x anchor_ratios), the student {anchors_per_location(student)}; "
                "logit distillation compares anchor by anchor: give both the same anchors, or use "
                "train.distill features")
    return None
