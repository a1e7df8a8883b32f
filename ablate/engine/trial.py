"""One trial end to end: build from the config, then per epoch train, evaluate, checkpoint, report.

A trial is resumable: its folder holds an atomic checkpoint after every epoch,
and a trial started again in the same folder continues from it and ends with
the same metrics as one never interrupted (on CPU, exactly).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.swa_utils import AveragedModel

from ablate.engine import checkpoint
from ablate.engine.coco_eval import coco_index
from ablate.engine.compile import compile_model
from ablate.engine.distill import build_distiller
from ablate.engine.loop import LoopState, StepTools, evaluate, train_one_epoch
from ablate.engine.memory import TensorPeak
from ablate.errors import ConfigError, TrialFailed
from ablate.metrics import METRICS
from ablate.status import STATUS
from ablate.study.config import TrialConfig
from ablate.study.expand import config_dict, trial_id
from ablate.tricks.optim import OPTIMIZERS, REGULARISERS
from ablate.tricks.registry import build, build_selected
from ablate.tricks.schedules import SCHEDULES, WARMUPS

if TYPE_CHECKING:
    from ablate.data.build import DataBundle

DETECTIONS = "detections.json"


@dataclass
class TrialResult:
    trial_id: str
    status: str  # "completed" | "failed: <reason>"
    history: list[dict]  # one row of METRICS (+ "epoch") per epoch
    out_dir: Path
    notices: list[str] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def _peak_mb(device: torch.device, tools: StepTools) -> float:
    """This epoch's peak training memory in MiB: CUDA's max allocated, or on CPU the tensors counted (memory.py)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return tools.memory.peak_mb


def read_status(out_dir: Path) -> dict:
    """A trial folder's status.json ({} if there is none yet or it cannot be read)."""
    try:
        return json.loads((Path(out_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return {}


def _listed(metrics: dict) -> dict:
    """``metrics`` unchanged, once every name is known to ablate.metrics (which the records keep)."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"the loop computed {unknown}, which ablate.metrics.METRICS does not list: "
                         "list them there, or they would never reach a record")
    return metrics


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Pieces:
    """What ``run_trial`` trains with, as built (before a checkpoint is restored)."""

    data: DataBundle
    val_coco: Any  # data.val_gt indexed once by the eval.backend that scores it (coco_eval.coco_index)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any  # a SCHEDULES entry: schedule(step) -> lr factor, observe(scores), state_dict()
    tools: StepTools  # lr_at, clip, amp, accumulate and the EMA
    swa: AveragedModel | None
    swa_from: int  # the first epoch SWA averages (epochs + 1 when SWA is off)
    notices: list[str]  # data repairs and the AMP notice, for the log


def build_pieces(config: TrialConfig, *, seed: int, device: torch.device) -> Pieces:
    """Seed, then build the data, model, optimiser, schedule and step tools of a trial on ``device``.

    ``run_trial`` trains with these; ``bench/trainer_throughput.py`` times ``train_one_epoch`` on them.
    """
    from ablate.data.build import build_data
    from ablate.models import build_model

    torch.manual_seed(seed)
    data = build_data(config, seed=seed, device=device)
    notices = [f"{n} {what}" for what, n in data.warnings.items()]
    t = config.train
    model = build_model(config, num_classes=len(data.classes)).to(device)
    if t.channels_last:  # NHWC weights: convs then keep their activations NHWC (the input batch is NCHW)
        model = model.to(memory_format=torch.channels_last)
    if t.compile:
        notices += compile_model(model, device)
    if device.type == "cuda":  # process-wide, so set by every trial
        torch.backends.cudnn.benchmark = t.cudnn_benchmark
    lr = config.lr_effective
    optimizer = build_selected(OPTIMIZERS, t.optimizer, "optimizer", model=model, lr_effective=lr)
    steps_per_epoch = math.ceil(len(data.train) / t.accumulate)
    schedule = build_selected(SCHEDULES, t.schedule, "schedule",
                     epochs=t.epochs, iters_per_epoch=steps_per_epoch, base_lr=lr)
    warmup = build_selected(WARMUPS, t.warmup, "warmup")
    ema = build(REGULARISERS, "ema", "regulariser", t.ema.model_dump(), model=model)
    swa = build(REGULARISERS, "swa", "regulariser", t.swa.model_dump(), model=model)
    amp = build(REGULARISERS, "amp", "regulariser", t.amp.model_dump(), device=device)
    if amp.notice:
        notices.append(amp.notice)
    swa_from = t.epochs - t.swa.epochs + 1 if t.swa.enabled else t.epochs + 1  # first averaged epoch

    def lr_at(step: int) -> float:
        if t.swa.enabled and t.swa.lr is not None and step // steps_per_epoch + 1 >= swa_from:
            return t.swa.lr
        return lr * schedule(step) * warmup(step)

    tools = StepTools(lr_at, build(REGULARISERS, "clip_grad", "regulariser", t.clip_grad.model_dump()),
                      amp, t.accumulate, ema, TensorPeak(model, optimizer) if device.type != "cuda" else None)
    return Pieces(data, coco_index(data.val_gt, config.eval.backend), model, optimizer, schedule, tools, swa, swa_from, notices)


def run_trial(
    config: TrialConfig,
    *,
    seed: int,
    out_dir: Path,
    device: torch.device | str | None = None,
    threads: int | None = None,
    stop_after: int | None = None,
    on_epoch: Callable[[dict, Path], None] | None = None,
    progress: Callable[[dict], None] | None = None,
    log: Callable[[str], None] = print,
    where: dict | None = None,
    teacher: Path | None = None,
) -> TrialResult:
    """Train and evaluate one (config, seed), resuming from ``out_dir`` if it holds a checkpoint.

    Args:
        stop_after: stop (resumably) after this epoch, as if the process were killed.
        on_epoch: called with each epoch's metrics row and ``out_dir`` after its checkpoint is written.
        progress: called after every iteration with epoch, iteration, loss, lr.
        where: what to record about the process running it (e.g. the Ray node), per start.
        teacher: ``train.distill``: the teacher's completed trial folder (orchestrate/teachers.py finds it).
    """
    device = torch.device(device) if device is not None else default_device()
    if threads:
        torch.set_num_threads(threads)
    tid = trial_id(config, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_began = time.perf_counter()
    pieces = build_pieces(config, seed=seed, device=device)
    data, model, optimizer, schedule, tools = pieces.data, pieces.model, pieces.optimizer, pieces.schedule, pieces.tools
    ema, swa, amp, swa_from, notices, t = tools.ema, pieces.swa, tools.amp, pieces.swa_from, pieces.notices, config.train
    tools.distill = build_distiller(config, model, teacher, num_classes=len(data.classes), device=device)
    state = LoopState()
    start = 1
    saved = checkpoint.load(out_dir / checkpoint.CHECKPOINT)
    if saved is not None:
        if saved["trial_id"] != tid:
            raise ConfigError(f"{out_dir} holds a checkpoint of trial {saved['trial_id']}, not {tid}; "
                              "use another --out folder")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        amp.scaler.load_state_dict(saved["scaler"])
        for averaged, key in ((ema, "ema"), (swa, "swa")):
            if averaged is not None:
                averaged.load_state_dict(saved[key])
        state = LoopState(saved["iteration"], saved["history"])
        checkpoint.set_rng_state(saved["rng"], data.generator)
        start = saved["epoch"] + 1
        log(f"resuming trial {tid} from epoch {saved['epoch']} checkpoint")
    for note in notices:
        log(f"note: {note}")

    # every (re)start of this trial: the epoch it started from and the process (a resume shows as two)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    starts = [*read_status(out_dir).get("starts", []),
              {"epoch": start, "pid": os.getpid(), "device": device_name,
               "setup_s": time.perf_counter() - setup_began, **(where or {})}]

    def record(status: str, **extra) -> None:  # status.json: what a driver reads back, history included
        checkpoint.save_json(out_dir / STATUS, {"trial_id": tid, "status": status, **extra, "pid": os.getpid(),
                                                "starts": starts, "epochs_done": len(state.history),
                                                "history": state.history})

    record("running")
    last = t.epochs if stop_after is None else min(t.epochs, stop_after)
    try:
        for epoch in range(start, last + 1):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            else:
                tools.memory.peak_bytes = 0
            began = time.perf_counter()
            train = train_one_epoch(model, optimizer, data.train, epoch=epoch, state=state, tools=tools,
                                    device=device, progress=progress)
            judged = ema.module if ema is not None else model  # what this epoch's metrics describe
            if swa is not None and epoch >= swa_from:
                swa.update_parameters(model)
                judged = swa.module
            scores, records = evaluate(judged, data.val, coco_gt=pieces.val_coco, cat_ids=data.cat_ids,
                                       device=device, amp=amp, backend=config.eval.backend)
            schedule.observe(scores)
            row = {"epoch": epoch, **_listed({**scores, **train}),
                   "peak_mem_mb": _peak_mb(device, tools), "epoch_time_s": time.perf_counter() - began}
            state.history.append(row)
            saving = time.perf_counter()
            checkpoint.save(out_dir / checkpoint.CHECKPOINT, {
                "trial_id": tid, "seed": seed, "config": config_dict(config), "epoch": epoch,
                "iteration": state.iteration, "history": state.history, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "scaler": amp.scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "swa": swa.state_dict() if swa is not None else None,
                "rng": checkpoint.rng_state(data.generator)})
            row["checkpoint_s"] = time.perf_counter() - saving  # status.json only (bench/orchestration.py)
            if epoch == last:  # once: on COCO val this file is ~500k records
                checkpoint.save_json(out_dir / DETECTIONS, records)
            record("completed" if epoch == t.epochs else "running")
            if on_epoch is not None:
                on_epoch(row, out_dir)
    except TrialFailed as e:
        record("failed", reason=e.reason)
        raise
    done = len(state.history) >= t.epochs
    status = "completed" if done else "stopped"
    record(status)
    return TrialResult(tid, status, state.history, out_dir, notices)
