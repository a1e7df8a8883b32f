"""The train loop as two plain functions, in the style of torchvision's references/detection/engine.py."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ablate.engine.coco_eval import DEFAULT_BACKEND, coco_summary, to_coco_results
from ablate.engine.memory import TensorPeak
from ablate.errors import TrialFailed
from ablate.tricks.optim.regularisers import Amp


@dataclass
class LoopState:
    """What the loop carries across epochs (and what a checkpoint restores)."""

    iteration: int = 0  # optimiser steps so far, drives the lr schedule
    history: list[dict] = field(default_factory=list)  # one metrics dict per finished epoch


@dataclass
class StepTools:
    """The per-step tricks, built once per trial from the catalogue."""

    lr_at: Callable[[int], float]  # optimiser step -> absolute lr
    clip: Callable[[Iterable[torch.Tensor]], float | None]
    amp: Amp
    accumulate: int = 1
    ema: AveragedModel | None = None
    memory: TensorPeak | None = None  # CPU: counts each step's tensors (memory.py); CUDA has its own counter
    distill: Callable[[], dict[str, torch.Tensor]] | None = None  # train.distill: {"loss_distill": ...} (distill.py)


def _to(device: torch.device, images: list[torch.Tensor], targets: list[dict]) -> tuple[list, list]:
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _forward_backward(model: nn.Module, images: list, targets: list, *, tools: StepTools, device: torch.device,
                      epoch: int, i: int) -> dict[str, float]:
    """One forward and backward pass; returns each loss as a float, or raises TrialFailed on a non-finite one."""
    with tools.amp.autocast():
        losses = model(images, targets)  # {"loss_cls": ..., "loss_box": ...}
        if tools.distill is not None:  # the teacher on the batch the student's forward just saw
            losses = {**losses, **tools.distill()}
    total = sum(losses.values())
    named = {**losses, "loss": total}
    if device.type == "cuda":  # one device sync for all of them
        scalars = dict(zip(named, torch.stack([v.detach().float() for v in named.values()]).tolist()))
    else:  # no sync to save: item() each is cheaper than a stack
        scalars = {name: value.item() for name, value in named.items()}
    for name, value in scalars.items():
        if not math.isfinite(value):
            raise TrialFailed(f"non-finite {name} ({value}) at epoch {epoch}, iteration {i}")
    scaled = total / tools.accumulate if tools.accumulate > 1 else total  # no needless autograd node
    tools.amp.scaler.scale(scaled).backward()
    return scalars


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    *,
    epoch: int,
    state: LoopState,
    tools: StepTools,
    device: torch.device,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss, the lr and images/s.

    Raises ``TrialFailed`` on a non-finite loss (naming the epoch, iteration and
    component) and on CUDA out-of-memory (naming the batch size).
    """
    model.train()
    sums: dict[str, float] = {}
    images_seen, started = 0, time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    steps = len(loader)
    for i, (images, targets) in enumerate(loader):
        images, targets = _to(device, images, targets)
        try:
            with tools.memory.step(images) if tools.memory is not None else contextlib.nullcontext():
                scalars = _forward_backward(model, images, targets, tools=tools, device=device, epoch=epoch, i=i)
            if (i + 1) % tools.accumulate == 0 or i + 1 == steps:
                _step(model, optimizer, state, tools)
        except RuntimeError as e:
            if _is_oom(e):
                raise TrialFailed(f"OOM at batch_size {len(images)} (epoch {epoch}, iteration {i}): {e}") from e
            raise
        images_seen += len(images)
        for name, value in scalars.items():
            sums[name] = sums.get(name, 0.0) + value
        if progress is not None:
            progress({"epoch": epoch, "iteration": i + 1, "iterations": steps, "loss": scalars["loss"],
                      "lr": optimizer.param_groups[0]["lr"]})
    elapsed = time.perf_counter() - started
    means = {name: total / max(1, steps) for name, total in sums.items()}
    return {**means, "lr": optimizer.param_groups[0]["lr"], "imgs_per_s": images_seen / max(elapsed, 1e-9),
            "train_time_s": elapsed}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState, tools: StepTools) -> None:
    """Set the scheduled lr, unscale, clip, step, update the EMA."""
    lr = tools.lr_at(state.iteration)
    for group in optimizer.param_groups:
        group["lr"] = lr
    tools.amp.scaler.unscale_(optimizer)
    tools.clip(model.parameters())  # clip_grad_norm_ skips parameters without a gradient
    tools.amp.scaler.step(optimizer)
    tools.amp.scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if tools.ema is not None:
        tools.ema.update_parameters(model)
    state.iteration += 1


@torch.inference_mode()
def evaluate(model: nn.Module, loader, *, coco_gt, cat_ids: list[int], device: torch.device, amp: Amp,
             backend: str = DEFAULT_BACKEND) -> tuple[dict, list]:
    """COCO AP of ``model`` on ``loader`` (``backend``: see coco_eval.BACKENDS); returns (metrics, COCO records)."""
    model.eval()
    started = time.perf_counter()
    records = []
    for images, targets in loader:
        images, _ = _to(device, images, [])
        with amp.autocast():
            detections = model(images)
        records += to_coco_results([t["image_id"] for t in targets], detections, cat_ids)
    stats = coco_summary(coco_gt, records, backend)
    return {**stats, "eval_time_s": time.perf_counter() - started}, records
