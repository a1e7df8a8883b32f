"""How model zoos name a trial: Network, Dataset, Backbone, style, Lr schd, from its resolved config."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import PurePath

from pydantic import ValidationError

from ablate.study.config import TrialConfig
from ablate.tricks.detectors import DETECTORS
from ablate.tricks.schedules import STEP_PRESETS

AP_COLUMNS = ("mAP", "AP50", "APs", "APm", "APl")
ZOO_NAMES = ("Network", "Dataset", "Backbone", "style", "Lr schd")
DATASETS = {"coco": "COCO", "voc": "VOC", "shapes": "shapes"}
BACKBONES = {"resnet18": "R-18", "resnet34": "R-34", "resnet50": "R-50", "resnet101": "R-101",
             "mobilenet_v3": "MobileNetV3", "vgg16": "VGG16"}


def lr_schedule(config: TrialConfig) -> str:
    """``Lr schd`` as model zoos write it: effective lr, then ``1x``/``2x``/``3x`` or ``<name>_<epochs>e``.

    A step schedule of 12, 24 or 36 epochs is ``1x``/``2x``/``3x`` unless it names its own
    milestones (other than the preset's).

    Example:
        >>> lr_schedule(TrialConfig.model_validate({"train": {"schedule": "cosine", "epochs": 8}}))
        '0.005_cosine_8e'
    """
    train, schedule = config.train, config.train.schedule
    name = f"{schedule.name}_{train.epochs}e"
    if schedule.name == "step":
        for preset, (epochs, milestones) in STEP_PRESETS.items():
            if train.epochs == epochs and schedule.milestones in (None, milestones):
                name = preset
    return f"{config.lr_effective:g}_{name}"


def zoo_fields(config_json: str | None) -> dict[str, str]:
    """``Network, Dataset, Backbone, style, Lr schd`` of one resolved trial config.

    Args:
        config_json: the ``config`` column (JSON of the resolved ``TrialConfig``); None
            (an older store without it) or unreadable JSON gives empty strings, and a
            config this version no longer validates gives an empty ``Lr schd``.
    """
    return dict(_zoo_fields(config_json if isinstance(config_json, str) else None))


def dataset_name(data: dict) -> str:
    """``Dataset`` as a zoo writes it: COCO, VOC (VOC07+12 for year folders 2007 and 2012), shapes; for
    YOLO-format data the name of its data.yaml (its folder's when the file is data.yaml), as Ultralytics names sets."""
    kind = data.get("dataset", "")
    roots = data.get("root")
    if kind == "voc" and isinstance(roots, list):
        years = [re.search(r"VOC(\d{4})$", str(r).rstrip("/")) for r in roots]
        if all(years):
            return "VOC" + "+".join(y.group(1)[2:] for y in years)
    if kind == "yolo":
        path = PurePath(str(data.get("yaml") or ""))
        named = (path.parent.name if path.stem == "data" else path.stem) if data.get("yaml") else \
            PurePath(str(roots or "")).name
        return named or "YOLO"
    return DATASETS.get(kind, str(kind))


def network_name(model: dict, data: dict, augment: list) -> str:
    """``Network`` as a zoo writes it: ``ATSS``, ``SSD300`` (SSD by its input size, ``SSDlite320``), ``Faster R-CNN``,
    and ``_mstrain`` when multi-scale training is on (mmdetection's ``fcos_..._mstrain_2x``: ``FCOS_mstrain``)."""
    detector = model.get("detector")
    section = detector if isinstance(detector, dict) else {"name": detector}  # a string in stores before sections
    entry = DETECTORS.get(section.get("name"))
    name = entry.network if entry else str(section.get("name") or "")
    if section.get("name") == "ssd":
        name = f"{'SSDlite' if section.get('lite') else 'SSD'}{data.get('image_size', '')}"
    steps = [a if isinstance(a, str) else a.get("name") for a in augment or [] if isinstance(a, (str, dict))]
    return f"{name}_mstrain" if "multiscale" in steps else name


@lru_cache(maxsize=4096)  # a study has few distinct configs; validating each once keeps 10,000 trials fast
def _zoo_fields(config_json: str | None) -> dict[str, str]:
    try:
        raw = json.loads(config_json) if config_json is not None else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        return dict.fromkeys(ZOO_NAMES, "")
    model, data = raw.get("model", {}), raw.get("data", {})
    backbone = model.get("backbone", "")
    if backbone == "tiny":
        backbone = f"tiny-w{float(model.get('width', 1.0))}"
    train = {k: v for k, v in raw.get("train", {}).items() if k != "lr_effective"}  # `ablate plan --json` adds it
    try:
        schedule = lr_schedule(TrialConfig.model_validate({**raw, "train": train}))
    except ValidationError:
        schedule = ""
    return {"Network": network_name(model, data, raw.get("augment", [])), "Dataset": dataset_name(data),
            "Backbone": BACKBONES.get(backbone, backbone), "style": model.get("style", "pytorch"), "Lr schd": schedule}
