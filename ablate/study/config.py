"""A trial's configuration, as validated data: model, data, train, loss, augment, eval.

Every key has a default documented here.  A section that selects a catalogue entry
(``loss.box``, ``train.schedule``, ``model.neck``, ...) is a tagged union on ``name``
built from the catalogue dict, so a trial is checked against exactly the tricks that
exist.  Such a section may be written as a bare name (``giou``) or as a mapping
without ``name`` (``{beta: 0.05}``: the default trick with that parameter).  The study
file around it (what varies, how trials run) is schema.py.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from ablate.metrics import DEFAULT_EVAL_BACKEND, EVAL_BACKENDS
from ablate.tricks.assign import ASSIGNERS
from ablate.tricks.augment import AUGMENTS
from ablate.tricks.blocks import (
    ACTIVATIONS,
    BODY_SURGERY,
    CONTEXT,
    HEAD_CONVS,
    NORMS,
    PLUGINS,
    RESIDUAL_BACKBONES,
)
from ablate.tricks.detectors import DETECTORS
from ablate.tricks.distill import DISTILL, distill_problem
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES, quality_problem
from ablate.tricks.necks import ANY_LEVELS, NECKS
from ablate.tricks.optim import OPTIMIZERS, AmpParams, ClipParams, EmaParams, SwaParams
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.pyramids import DEFAULT_PYRAMID, PYRAMIDS
from ablate.tricks.registry import Trick, build_selected
from ablate.tricks.scaling import LR_SCALING
from ablate.tricks.schedules import SCHEDULES, STEP_PRESETS, WARMUPS, step_milestones


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def choices(table: dict) -> str:
    """``"a | b | c"``: a key's valid names in its description, from the table itself (it cannot drift)."""
    return " | ".join(table)


def named(table: dict[str, Trick], default: str) -> Any:
    """A study field selecting one entry of ``table``; ``default`` when unnamed."""
    members = tuple(
        create_model(name, __base__=trick.params, name=(Literal[name], name)) for name, trick in table.items()
    )

    def shorthand(value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {"name": default, **value}
        return value

    union = Annotated[Union[members], Field(discriminator="name")]  # noqa: UP007 (runtime tuple)
    return Annotated[union, BeforeValidator(shorthand)]


# ---- the baseline configuration ----------------------------------------------


BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3", "vgg16")
CAFFE_STYLE = ("resnet18", "resnet34", "resnet50", "resnet101", "vgg16")  # the bodies model.style: caffe changes


class Model(Section):
    detector: named(DETECTORS, "retinanet") = Field(
        "retinanet", description="the detector and its own keys (ablate catalogue detector): " + choices(DETECTORS))
    backbone: Literal[BACKBONES] = Field(
        "tiny", description="tiny: a small CNN that trains on a CPU | resnet18/34/50/101, mobilenet_v3, vgg16 "
        "(SSD's body) from torchvision")
    style: Literal["pytorch", "caffe"] = Field(
        "pytorch", description="pytorch | caffe (ResNet: the stride on the first 1x1 conv of a block, as MSRA's "
        "caffe models; ResNet and VGG16: BGR pixels 0-255 minus the means, as caffe weights expect)")
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier of the tiny backbone")
    channels: int = Field(64, ge=8, le=1024, description="width of the neck and heads (DETR: of the transformer)")
    norm: named(NORMS, "bn") = Field("bn", description="the backbone's normalisation layers: " + choices(NORMS))
    activation: named(ACTIVATIONS, "relu") = Field(
        "relu", description="the backbone's ReLUs become: " + choices(ACTIVATIONS))
    plugins: list[named(PLUGINS, "se")] = Field(
        [], description="backbone blocks, in order: " + choices(PLUGINS) + "; a bare name or {name: ..., levels: ...}")
    context: named(CONTEXT, "none") = Field(
        "none", description="a context block on C5 before the neck: " + choices(CONTEXT))
    neck: named(NECKS, "fpn") = Field("fpn", description="feature fusion: " + choices(NECKS))
    pyramid: named(PYRAMIDS, DEFAULT_PYRAMID) = Field(
        DEFAULT_PYRAMID, description="the levels the heads predict on (retinanet, fcos, atss): " + choices(PYRAMIDS)
        + "; p2_*: a P2 level (stride 4, from the body's C2) for small objects, p2_p5 the YOLO four heads")
    head_conv: named(HEAD_CONVS, "plain") = Field(
        "plain", description="the 3x3 convs of the head's towers (retinanet, fcos, atss): " + choices(HEAD_CONVS))
    assigner: named(ASSIGNERS, "max_iou") | None = Field(
        None, description="which anchors learn which box (retinanet, fcos, atss): " + choices(ASSIGNERS)
        + "; null: the detector's own (max_iou, fcos_ranges, atss)")
    pretrained: str | None = Field(
        None, description="backbone weights: imagenet (torchvision's file in $TORCH_HOME/hub/checkpoints, never "
        "downloaded) | a local state dict path | null: random init"
    )

    @field_validator("detector", mode="before")
    @classmethod
    def _keys_of_the_detector(cls, v: Any) -> Any:
        """A key of another detector names the detectors that take it (a bare unknown key gets pydantic's list)."""
        name = v.get("name", "retinanet") if isinstance(v, dict) else None
        if name in DETECTORS:
            own = DETECTORS[name].params.model_fields
            for key in v:
                owners = [d for d, entry in DETECTORS.items() if key in entry.params.model_fields]
                if key != "name" and key not in own and owners:
                    raise ValueError(f"'{key}' does not apply to detector {name}: it is a key of "
                                     f"{', '.join(owners)}; {name} takes {', '.join(own) or 'no keys'}")
        return v

    @model_validator(mode="after")
    def _fits_the_backbone(self) -> Model:
        if self.style == "caffe" and self.backbone not in CAFFE_STYLE:
            raise ValueError(f"style: caffe applies to backbones {', '.join(CAFFE_STYLE)}, not {self.backbone}")
        self._options_fit_the_backbone()
        self._neck_fuses_the_pyramid()
        d = self.detector
        if d.name == "detr" and self.channels % d.heads:
            raise ValueError(f"detector detr: channels ({self.channels}) must be a multiple of heads ({d.heads})")
        return self


    def _neck_fuses_the_pyramid(self) -> None:
        levels = build_selected(PYRAMIDS, self.pyramid, "pyramid").body_levels  # a Pyramid: no torch
        if len(levels) > 3 and self.neck.name not in ANY_LEVELS:
            raise ValueError(f"model.pyramid: {self.pyramid.name} adds a P2 level from the body's C2, and model.neck: "
                             f"{self.neck.name} fuses C3-C5 only; choose a neck that takes C2 too "
                             f"({', '.join(n for n in NECKS if n in ANY_LEVELS)}) or model.pyramid: {DEFAULT_PYRAMID}")

    def _options_fit_the_backbone(self) -> None:
        names = [p.name for p in self.plugins]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"plugins: {', '.join(twice)} listed twice; give each plugin once (its levels key says "
                             "where it runs)")
        for name in names:
            if name in BODY_SURGERY and self.backbone not in RESIDUAL_BACKBONES:
                raise ValueError(f"plugins: {name} changes residual blocks, and backbone {self.backbone} has none; "
                                 f"{name} applies to backbones {', '.join(RESIDUAL_BACKBONES)}")
        if self.head_conv.name == "grouped" and self.channels % self.head_conv.groups:
            raise ValueError(f"head_conv: grouped with groups {self.head_conv.groups} needs model.channels divisible "
                             f"by it, got channels {self.channels}")
        if self.norm.name != "bn" and self.backbone == "vgg16":
            raise ValueError(f"norm: {self.norm.name} replaces BatchNorm layers, and backbone vgg16 has none; leave "
                             "norm at bn or choose another backbone")
        if self.detector.name == "ssd" and self.backbone == "vgg16" and (names or self.context.name != "none"):
            raise ValueError("plugins and context run on the body's C3-C5 outputs, which detector ssd with backbone "
                             "vgg16 does not use (SSD's VGG16 extractor takes the layers); use another backbone")


class Shapes(Section):
    train_images: int = Field(512, ge=1, le=100_000, description="images in the synthetic train split")
    val_images: int = Field(128, ge=1, le=100_000, description="images in the synthetic val split")
    seed: int = Field(0, ge=0, description="generator seed; the set is cached by (counts, size, seed)")


class Subset(Section):
    fraction: float | None = Field(None, gt=0, le=1, description="share of the train images to keep")
    images: int | None = Field(None, ge=1, description="number of train images to keep")
    seed: int = Field(0, ge=0, description="which images: the same seed keeps the same ones on every machine")

    @model_validator(mode="after")
    def _one_size(self) -> Subset:
        if (self.fraction is None) == (self.images is None):
            raise ValueError("give fraction (e.g. 0.1) or images (e.g. 500), one of them")
        return self


class Data(Section):
    dataset: Literal["shapes", "coco", "voc", "yolo"] = Field(
        "shapes", description="shapes: built-in synthetic set | coco: json + images | voc: VOCdevkit year folder "
        "(ImageSets/Main splits) or XML folder + images | yolo: Ultralytics data.yaml or images/ + labels/ folders"
    )
    image_size: int = Field(192, ge=32, le=4096, description="training and evaluation size in pixels (square)")
    root: str | list[str] | None = Field(
        None, description="coco/voc/yolo: folder the paths below are relative to; voc with splits: the year "
        "folder (VOCdevkit/VOC2007) or a list of them (VOC07+12)")
    train_ann: str | None = Field(None, description="coco: train annotation json | voc: train XML folder")
    train_images: str | None = Field(None, description="coco/voc: train image folder | yolo: train images/ folder")
    val_ann: str | None = Field(None, description="coco: val annotation json | voc: val XML folder")
    val_images: str | None = Field(None, description="coco/voc: val image folder | yolo: val images/ folder")
    train_split: str | None = Field(None, description="voc: ImageSets/Main/<split>.txt to train on (trainval)")
    val_split: str | None = Field(None, description="voc: ImageSets/Main/<split>.txt to evaluate on (test)")
    yaml: str | None = Field(None, description="yolo: Ultralytics data.yaml (path, train, val, names)")
    classes: list[str] | None = Field(
        None, description="voc: class names in label order, null: from the files | yolo folders: the names "
        "of class ids 0, 1, ...")
    train_subset: Subset | None = Field(
        None, description="train on a class-stratified part of the train split: {fraction | images, seed}")
    shapes: Shapes = Field(default_factory=Shapes, description="the synthetic set's size and seed")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes (0: in the trial process)")
    pin_memory: bool | None = Field(None, description="pin host memory; null: on when training on CUDA")
    persistent_workers: bool = Field(False, description="keep workers alive between epochs (needs num_workers > 0)")
    prefetch_factor: int | None = Field(None, ge=1, description="batches prefetched per worker; null: torch's default")

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("is empty; list the class names in label order, or null to read them from the files")
            dupes = sorted({c for c in v if v.count(c) > 1})
            if dupes:
                raise ValueError(f"lists {', '.join(repr(c) for c in dupes)} more than once; give each class once")
        return v

    @model_validator(mode="after")
    def _paths_for_dataset(self) -> Data:
        need = {"coco": [("train_ann", "val_ann")],
                "voc": [("train_split", "val_split", "root"), ("train_ann", "val_ann")],
                "yolo": [("yaml",), ("train_images", "val_images", "classes")]}.get(self.dataset, [])
        if need and not any(all(getattr(self, k) is not None for k in keys) for keys in need):
            forms = ", or ".join(", ".join(f"data.{k}" for k in keys[:-1]) + f" and data.{keys[-1]}" if len(keys) > 1
                                 else f"data.{keys[0]}" for keys in need)
            raise ValueError(f"dataset '{self.dataset}' needs {forms}")
        if self.dataset == "yolo" and self.yaml is not None and self.classes is not None:
            raise ValueError("yolo with data.yaml takes the class names from its names; remove data.classes")
        if isinstance(self.root, list) and (self.dataset != "voc" or self.train_split is None):
            raise ValueError("a list of roots is for voc with train_split/val_split (VOC07+12); give one folder")
        if isinstance(self.root, list) and not self.root:
            raise ValueError("root is an empty list; give the VOC year folders, e.g. [VOC2007, VOC2012]")
        if self.persistent_workers and self.num_workers == 0:
            raise ValueError("persistent_workers: true needs num_workers > 0")
        return self


class LrScaling(Section):
    rule: Literal[tuple(LR_SCALING)] = Field("linear", description=choices(LR_SCALING))
    base_batch_size: int = Field(16, ge=1, description="total batch the written lr is meant for")


class Train(Section):
    epochs: int = Field(12, ge=1, le=10_000, description="training epochs (a step preset sets it)")
    batch_size: int = Field(8, ge=1, le=4096, description="images per device per forward pass")
    devices: int = Field(1, ge=1, le=1024, description="devices per trial (data parallel)")
    accumulate: int = Field(1, ge=1, le=1024, description="forward passes per optimiser step")
    optimizer: named(OPTIMIZERS, "sgd") = Field("sgd", description=choices(OPTIMIZERS) + ", with lr and weight decay")
    lr_scaling: LrScaling = Field(default_factory=LrScaling, description="lr_effective = lr x f(total batch / base)")
    schedule: named(SCHEDULES, "step") = Field("step", description=choices(SCHEDULES))
    warmup: named(WARMUPS, "linear") = Field("linear", description=choices(WARMUPS))
    clip_grad: ClipParams = Field(default_factory=ClipParams, description="gradient clipping by global norm")
    ema: EmaParams = Field(default_factory=EmaParams, description="exponential moving average of weights")
    swa: SwaParams = Field(default_factory=SwaParams, description="stochastic weight averaging")
    amp: AmpParams = Field(default_factory=AmpParams, description="mixed precision (CUDA only)")
    channels_last: bool = Field(
        False, description="NHWC memory format for the model and so its activations (bench/trainer_throughput.py)"
    )
    cudnn_benchmark: bool = Field(
        False, description="CUDA: let cuDNN time its conv algorithms; pays off when batches keep one size "
        "(shapes without multiscale, random_crop, zoom_out); ignored on CPU"
    )
    compile: bool = Field(
        False, description="torch.compile the backbone, neck and head (losses and post-processing stay eager); "
        "needs a C++ compiler on CPU and Triton on CUDA, else a notice and eager (bench/trainer_throughput.py)"
    )
    distill: named(DISTILL, "logits") = Field(
        "none", description="knowledge distillation from a finished trial of this study (ablate catalogue "
        "distill): " + choices(DISTILL) + "; {name: logits, teacher: baseline} (teacher: a variant name or a "
        "trial id; its trials run first, each student starts once its teacher's same-seed trial completed)")

    @model_validator(mode="before")
    @classmethod
    def _preset_sets_epochs(cls, data: Any) -> Any:
        schedule = data.get("schedule") if isinstance(data, dict) else None
        preset = schedule.get("preset") if isinstance(schedule, dict) else None
        if preset in STEP_PRESETS:
            epochs = STEP_PRESETS[preset][0]
            if "epochs" in data and data["epochs"] != epochs:
                raise ValueError(
                    f"epochs: {data['epochs']} contradicts schedule preset {preset} ({epochs} epochs); "
                    "remove one of them"
                )
            if schedule.get("milestones") is not None:
                raise ValueError(f"schedule: give milestones or preset {preset}, not both")
            data = {**data, "epochs": epochs}
        return data

    @model_validator(mode="after")
    def _fits_epochs(self) -> Train:
        s = self.schedule
        if s.name == "step":
            late = [m for m in step_milestones(self.epochs, s.milestones, s.preset) if m >= self.epochs]
            if late:
                raise ValueError(f"schedule.milestones {late} must be below epochs ({self.epochs})")
        if self.swa.enabled and self.swa.epochs > self.epochs:
            raise ValueError(f"swa.epochs ({self.swa.epochs}) exceeds epochs ({self.epochs})")
        return self


class Loss(Section):
    cls: named(CLS_LOSSES, "focal") = Field("focal", description=choices(CLS_LOSSES) + ", with label smoothing and weight")
    box: named(BOX_LOSSES, "smooth_l1") = Field(
        "smooth_l1", description=choices(BOX_LOSSES)
    )


class Eval(Section):
    nms: named(POSTPROCESS, "nms") = Field("nms", description=choices(POSTPROCESS))
    score_thresh: float = Field(0.05, ge=0, lt=1, description="detections below this score are dropped")
    max_dets: int = Field(100, ge=1, le=10_000, description="detections kept per image")
    tta: named(TTA, "none") = Field("none", description="test-time augmentation: " + choices(TTA))
    backend: Literal[EVAL_BACKENDS] = Field(
        DEFAULT_EVAL_BACKEND, description="COCO AP implementation: faster_coco_eval (C++, same twelve numbers to 1e-4, "
        "bench/coco_eval.py) | pycocotools (the reference)"
    )


class TrialConfig(Section):
    """Everything one trial needs; its hash (with the seed) is the trial id."""

    model: Model = Field(default_factory=Model)
    data: Data = Field(default_factory=Data)
    train: Train = Field(default_factory=Train)
    loss: Loss = Field(default_factory=Loss)
    augment: list[named(AUGMENTS, "hflip")] = Field(
        ["hflip"], description="train-time augmentations in order; a bare name or {name: ..., p: ...}"
    )
    eval: Eval = Field(default_factory=Eval)

    @model_validator(mode="after")
    def _read_by_the_detector(self) -> TrialConfig:
        """A key the detector does not read (tricks/detectors.py ``takes``) must keep its default."""
        name = self.model.detector.name
        for key in CROSS_KEYS:
            section, field = key.split(".")
            value = getattr(getattr(self, section), field)
            if key not in DETECTORS[name].takes and value != _default(key):
                readers = [d for d, entry in DETECTORS.items() if key in entry.takes]
                shown = getattr(_default(key), "name", "null")
                raise ValueError(f"{key}: {getattr(value, 'name', value)} does not apply to detector {name}; "
                                 f"{key} applies to {', '.join(readers)}: leave it at its default ({shown}) or "
                                 "choose one of those detectors")
        if name == "ssd" and self.loss.cls.name == "hard_negative":
            raise ValueError("loss.cls: hard_negative mines negatives, which model.detector: ssd already does (its "
                             "neg_pos_ratio key); choose another loss.cls, or set the ratio there")
        problem = quality_problem(self.loss.cls.name, name)
        if problem:
            raise ValueError(problem)
        problem = distill_problem(self.train.distill.name, name)
        if problem:
            raise ValueError(problem)
        if name == "ssd" and self.model.backbone == "vgg16" and self.data.image_size < SSD_VGG_MIN_SIZE:
            raise ValueError(f"detector ssd with backbone vgg16 needs data.image_size >= {SSD_VGG_MIN_SIZE} (the "
                             f"paper's last convs are unpadded), got {self.data.image_size}: use 300 (SSD300) or "
                             "512 (SSD512), or another backbone")
        return self

    @property
    def lr_effective(self) -> float:
        from ablate.tricks.scaling import lr_effective

        t = self.train
        return lr_effective(
            t.optimizer.lr, rule=t.lr_scaling.rule, base_batch_size=t.lr_scaling.base_batch_size,
            batch_size=t.batch_size, devices=t.devices, accumulate=t.accumulate,
        )


CONFIG_KEYS = tuple(TrialConfig.model_fields)
SSD_VGG_MIN_SIZE = 268  # smaller, conv11_2 of torchvision's SSD VGG16 extractor would see a map under 3x3
CROSS_KEYS = ("model.assigner", "model.neck", "model.pyramid", "model.head_conv", "eval.nms",
              "eval.tta")  # keys some detectors do not read


@cache
def _default(key: str) -> Any:
    section, field = key.split(".")
    return getattr({"model": Model, "eval": Eval}[section](), field)
