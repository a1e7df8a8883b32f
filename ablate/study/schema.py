"""The study file, as validated data.  Every key has a default documented here.

A study is a baseline ``TrialConfig`` (config.py: model, data, train, loss, augment,
eval) plus what varies (design, factors, search, seeds), how trials run (scheduler,
resources, tracking) and how a difference is judged (decision).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ablate.metrics import HIGHER_IS_BETTER, METRICS, check_metric
from ablate.study.config import Section, TrialConfig

NAME_RE = re.compile(r"[a-z0-9_-]+")


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
    name: Literal["race", "asha", "none"] | None = Field(
        None, description="race: stop a variant (all its seeds) only when paired tests against the baseline's "
        "same seeds say it is worse | asha: Ray Tune's ASHA | none: run all; null: race, or asha for design optuna")
    metric: str = Field("mAP", description=f"metric compared across trials; one of {', '.join(METRICS)}")
    mode: Literal["max", "min"] = Field("max", description="max for AP and throughput, min for losses and cost")
    max_t: int | None = Field(None, ge=1, description="epochs a trial may reach; null: train.epochs")
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it can be stopped")
    reduction_factor: float = Field(3.0, gt=1, description="asha: 1/reduction_factor of trials go on at each rung; "
                                    "asha and race: rungs at grace_period x reduction_factor^k epochs")
    pairing: Literal["none", "seed"] = Field(
        "none", description="asha: none (rank every trial against all) | seed (rungs kept per seed: a trial is "
        "ranked only against trials of its own seed)")
    min_seeds: int = Field(3, ge=2, le=1000, description="race: seeds of a variant (and the baseline's same "
                           "seeds) that must reach an epoch before the race judges it there")
    protect_baseline: bool = Field(True, description="asha: never stop baseline trials (race never does)")

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


class Decision(Section):
    """How a variant's difference from the baseline is judged (results/stats.py), on ``scheduler.metric``."""

    margin: float = Field(0.01, ge=0, description="the smallest difference in scheduler.metric that matters, in "
                          "its units (0.01 = one point of mAP): a difference shown to lie inside ±margin is "
                          "equivalent")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the intervals and the tests: a verdict's chance "
                              "of being wrong is at most 1 - confidence across the study's variants")
    correction: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="error control across the study's variants: holm (Holm's step-down) | bonferroni | "
        "none (each variant alone: with many variants some verdicts will be noise)")
    max_seeds: int | None = Field(
        None, ge=1, le=1000, description="adaptive seeds: once the listed seeds have ended, a variant still "
        "unresolved gets one more seed at a time (the baseline too where it lacks it) until resolved or this "
        "many seeds; null: only the listed seeds")


DESIGNS = ("grid", "one_at_a_time", "cumulative", "optuna")


class Study(TrialConfig):
    """A whole study file.  The inherited fields are the baseline configuration."""

    name: str = Field(max_length=64, description="[a-z0-9_-]+, names the results and report folders")
    description: str = Field("", max_length=10_000, description="free text shown in the report")
    design: Literal[DESIGNS] = Field("one_at_a_time", description="grid | one_at_a_time | cumulative | optuna")
    factors: dict[str, list[Any] | dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="dotted config path -> levels (a bare string level means {name: ...}); "
        "or a bundle: a name that is not a config key -> {label: {dotted path: value, ...}}, each level setting "
        "several keys at once (a network with its own lr and schedule)"
    )
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="combinations of factor levels to skip")
    search: Search | None = Field(None, description="design optuna: the sampled space")
    seeds: list[int] = Field([0], min_length=1, description="each variant runs once per seed")
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources: Resources = Field(default_factory=Resources)
    tracking: Tracking = Field(default_factory=Tracking)
    decision: Decision = Field(default_factory=Decision)
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
        if self.scheduler.name is None:
            name = "asha" if self.design == "optuna" else "race"
            object.__setattr__(self, "scheduler", self.scheduler.model_copy(update={"name": name}))  # frozen
        return self

    def baseline(self) -> TrialConfig:
        return TrialConfig.model_validate(self.model_dump(include=set(TrialConfig.model_fields)))

