"""The study file, as validated data.  Every key has a default documented here.

A study is a baseline ``TrialConfig`` (model, data, train, loss, augment, eval)
plus what varies (design, factors, search, seeds) and how trials run
(scheduler, resources, tracking).  A section that selects a catalogue entry
(``loss.box``, ``train.schedule``, ``model.neck``, ...) is a tagged union on
``name`` built from the catalogue dict, so a study is checked against exactly the
tricks that exist.  Such a section may be written as a bare name (``giou``) or as a
mapping without ``name`` (``{beta: 0.05}``: the default trick with that parameter).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)

from ablate.metrics import DEFAULT_EVAL_BACKEND, EVAL_BACKENDS, HIGHER_IS_BETTER, METRICS, check_metric
from ablate.tricks.augment import AUGMENTS
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES
from ablate.tricks.necks import NECKS
from ablate.tricks.optim import OPTIMIZERS, AmpParams, ClipParams, EmaParams, SwaParams
from ablate.tricks.postprocess import POSTPROCESS, TTA
from ablate.tricks.registry import Trick
from ablate.tricks.scaling import LR_SCALING
from ablate.tricks.schedules import SCHEDULES, STEP_PRESETS, WARMUPS, step_milestones

NAME_RE = re.compile(r"[a-z0-9_-]+")


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


# model.detector -> its name in a model-zoo table (the Network column); models/build.py builds each.
DETECTORS = {"retinanet": "RetinaNet", "fcos": "FCOS"}


class Model(Section):
    detector: Literal[tuple(DETECTORS)] = Field("retinanet", description="torchvision detector: " + choices(DETECTORS))
    backbone: Literal["tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v3"] = Field(
        "tiny", description="tiny: a small CNN that trains on a CPU; the others from torchvision"
    )
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier of the tiny backbone")
    channels: int = Field(64, ge=8, le=1024, description="width of the neck and heads")
    head_convs: int = Field(4, ge=1, le=4, description="3x3 convs per head branch, 1..4 (4 as in RetinaNet and FCOS)")
    head_norm: Literal["group", "none"] = Field(
        "group", description="retinanet: GroupNorm in the head convs (torchvision's v2) | none (the paper's)"
    )
    anchor_scale: float = Field(
        4.0, gt=0, le=16, description="retinanet: anchor base size in strides (4 as in the paper; 2 suits small images)"
    )
    neck: named(NECKS, "fpn") = Field("fpn", description="feature fusion: " + choices(NECKS))
    pretrained: str | None = Field(
        None, description="local path of backbone weights (a torch state dict); null: random init"
    )


class Shapes(Section):
    train_images: int = Field(512, ge=1, le=100_000, description="images in the synthetic train split")
    val_images: int = Field(128, ge=1, le=100_000, description="images in the synthetic val split")
    seed: int = Field(0, ge=0, description="generator seed; the set is cached by (counts, size, seed)")


class Data(Section):
    dataset: Literal["shapes", "coco", "voc"] = Field(
        "shapes", description="shapes: built-in synthetic set | coco: json + images | voc: XML folder + images"
    )
    image_size: int = Field(192, ge=32, le=4096, description="training and evaluation size in pixels (square)")
    root: str | None = Field(None, description="coco/voc: folder the paths below are relative to")
    train_ann: str | None = Field(None, description="coco: train annotation json | voc: train XML folder")
    train_images: str | None = Field(None, description="coco/voc: train image folder")
    val_ann: str | None = Field(None, description="coco: val annotation json | voc: val XML folder")
    val_images: str | None = Field(None, description="coco/voc: val image folder")
    classes: list[str] | None = Field(None, description="voc: class names in label order; null: from the files")
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
        if self.dataset != "shapes":
            missing = [k for k in ("train_ann", "val_ann") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"dataset '{self.dataset}' needs data.{' and data.'.join(missing)}")
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

    @property
    def lr_effective(self) -> float:
        from ablate.tricks.scaling import lr_effective

        t = self.train
        return lr_effective(
            t.optimizer.lr, rule=t.lr_scaling.rule, base_batch_size=t.lr_scaling.base_batch_size,
            batch_size=t.batch_size, devices=t.devices, accumulate=t.accumulate,
        )


# ---- what varies and how trials run ---------------------------------------------


class FloatDist(Section):
    type: Literal["float"]
    low: float = Field(description="lower bound (inclusive)")
    high: float = Field(description="upper bound")
    log: bool = Field(False, description="sample in log space (needs low > 0)")
    step: float | None = Field(None, gt=0, description="discretisation step; not with log")


class IntDist(Section):
    type: Literal["int"]
    low: int = Field(description="lower bound (inclusive)")
    high: int = Field(description="upper bound (inclusive)")
    log: bool = Field(False, description="sample in log space (needs low > 0)")
    step: int = Field(1, ge=1, description="spacing of the values; not with log")


class CategoricalDist(Section):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1, description="values to choose from (a trick name, a number, ...)")


Distribution = Annotated[Union[FloatDist, IntDist, CategoricalDist], Field(discriminator="type")]  # noqa: UP007


class Search(Section):
    num_samples: int = Field(16, ge=1, le=100_000, description="configurations Optuna samples, each one trial on the one seed")
    seed: int = Field(0, ge=0, description="seed of Optuna's TPE sampler (same seed, same samples)")
    space: dict[str, Distribution] = Field(
        default_factory=dict, description="dotted config path -> {type: float|int|categorical, ...} as in Optuna"
    )

    @model_validator(mode="after")
    def _ranges(self) -> Search:
        for path, d in self.space.items():
            if isinstance(d, (FloatDist, IntDist)):
                if d.low >= d.high:
                    raise ValueError(f"space.{path}: low ({d.low}) must be below high ({d.high})")
                if d.log and d.low <= 0:
                    raise ValueError(f"space.{path}: log: true needs low > 0 (got {d.low})")
                if d.log and isinstance(d, FloatDist) and d.step is not None:
                    raise ValueError(f"space.{path}: step and log cannot be combined")
        return self


class Scheduler(Section):
    name: Literal["asha", "none"] = Field("asha", description="asha: stop hopeless trials early | none: run all")
    metric: str = Field("mAP", description=f"metric compared across trials; one of {', '.join(METRICS)}")
    mode: Literal["max", "min"] = Field("max", description="max for AP and throughput, min for losses and cost")
    max_t: int | None = Field(None, ge=1, description="epochs a trial may reach; null: train.epochs")
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(3.0, gt=1, description="1/reduction_factor of trials go on at each rung")
    protect_baseline: bool = Field(True, description="never stop baseline trials")

    _known_metric = field_validator("metric")(classmethod(lambda cls, v: check_metric(v)))

    @model_validator(mode="after")
    def _consistent(self) -> Scheduler:
        better = "max" if self.metric in HIGHER_IS_BETTER else "min"
        if self.mode != better:
            way = "higher" if better == "max" else "lower"
            raise ValueError(f"mode: {self.mode} would keep the worst trials: {self.metric} is better {way}; "
                             f"set mode: {better}")
        return self


class Resources(Section):
    cpu: float = Field(1.0, gt=0, description="CPUs reserved per trial")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial: a fraction (0.5 packs two per GPU) or a whole number")

    @field_validator("gpu")
    @classmethod
    def _fraction_or_whole(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"gpu: {v} -- use a fraction below 1 or a whole number of GPUs")
        return v


class Tracking(Section):
    uri: str | None = Field(None, description="MLflow tracking URI; null: MLFLOW_TRACKING_URI or the local default")
    experiment: str | None = Field(None, description="MLflow experiment; null: the study name")


DESIGNS = ("grid", "one_at_a_time", "cumulative", "optuna")


class Study(TrialConfig):
    """A whole study file.  The inherited fields are the baseline configuration."""

    name: str = Field(max_length=64, description="[a-z0-9_-]+, names the results and report folders")
    description: str = Field("", max_length=10_000, description="free text shown in the report")
    design: Literal[DESIGNS] = Field("one_at_a_time", description="grid | one_at_a_time | cumulative | optuna")
    factors: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted config path -> levels; a bare string level means {name: ...}"
    )
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="combinations of factor levels to skip")
    search: Search | None = Field(None, description="design optuna: the sampled space")
    seeds: list[int] = Field([0], min_length=1, description="each variant runs once per seed")
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources: Resources = Field(default_factory=Resources)
    tracking: Tracking = Field(default_factory=Tracking)
    max_failures: int = Field(2, ge=0, le=100, description="retries of a crashed trial from its last checkpoint")
    hang_timeout_s: float | None = Field(
        None, gt=0, description="seconds a running trial may go without finishing an epoch (counted from its "
        "start, so building its data and model count too) before it is stopped and recorded as failed: hung "
        "(not retried, not rerun on resume); null: no limit")
    storage: str | None = Field(
        None, description="trial checkpoints and Ray Tune's state: a folder every node mounts, or s3://, gs:// "
                          "(pyarrow filesystems); null: the results folder")

    _source: Any = PrivateAttr(None)  # loader.Source: which file set each key, for error messages

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"'{v}' must be lowercase letters, digits, '_' or '-' (it names the results folder)")
        return v

    @field_validator("storage")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        if v is not None and "://" in v and v.split("://", 1)[0] not in ("s3", "gs", "gcs", "file"):
            raise ValueError(f"'{v}': a folder path, or a URI starting s3://, gs:// or file://")
        if v is not None and not v.strip():
            raise ValueError("empty; leave it out to keep checkpoints in the results folder")
        return v

    @field_validator("description")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        dupes = sorted({s for s in v if v.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate seeds {dupes}")
        return v

    @model_validator(mode="after")
    def _design_fits(self) -> Study:
        if self.design == "optuna":
            if self.search is None or not self.search.space:
                raise ValueError("design optuna needs search.space (dotted path -> distribution)")
            if self.factors:
                raise ValueError("design optuna samples search.space; remove factors or use another design")
        elif self.search is not None:
            raise ValueError(f"search is only used by design optuna (design is {self.design})")
        return self

    def baseline(self) -> TrialConfig:
        return TrialConfig.model_validate(self.model_dump(include=set(TrialConfig.model_fields)))


CONFIG_KEYS = tuple(TrialConfig.model_fields)
