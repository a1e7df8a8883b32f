"""Trainer throughput: ablate's ``train_one_epoch`` against a torchvision-style loop, and each speed trick.

    uv run python bench/trainer_throughput.py [--device cpu|cuda] [--threads 1,2] [--iters 24] [--repeat 7]
    uv run python bench/trainer_throughput.py --catalogue [--iters 8] [--repeat 5]   # the cost of each trick

Every contender trains the baseline of ``studies/loss_ablation.yaml`` (the tiny FCOS of
``studies/_base_/tiny_shapes.yaml``: batch 4, 192 px, AdamW, warmup + cosine) with the
pieces ``run_trial`` builds (``build_pieces``: same model, data loader, optimiser and
schedule), on a shapes set of exactly ``--iters`` batches, so one timed call is one real
epoch.  Round 0 warms every contender up and is dropped; then ``--repeat`` rounds time one
epoch of each contender, in alternating order so machine noise hits all alike.

- ``reference``: torchvision's references/detection/engine.py ``train_one_epoch`` without
  its logger: to device, ``loss_dict = model(images, targets)``, sum, ``.item()`` for the
  finite check, ``zero_grad``, ``backward``, ``step``, ``LinearLR`` warmup step.
- ``ablate``: ``ablate.engine.loop.train_one_epoch`` as ``run_trial`` calls it (no progress).
- ``ablate again``, ``reference again``: second, identical copies, built and run last in
  reverse order (reference, ablate, ..., ablate again, reference again: an ABBA design, so
  neither loop always has the first-built model or the first slot of a round).  The
  ablate / reference ratio pools both copies of each, per round; each copy against its
  twin is an A/A test, the noise floor of this machine.
- one row per speed trick, alone against the ablate default; ``gain`` is the median over
  rounds of (trick on / trick off), paired within a round (pin_memory, on by default on
  CUDA, is timed off).  The ``all`` row turns on every trick that applies to the device:
  on CUDA the goal is a gain >= 1.2 over the default.
- ``--catalogue``: instead, the cost of each catalogue trick that changes training (backbone
  options, plugins, context blocks, head convs, necks, losses, augmentations), alone against the
  ablate default, on the first ``--threads`` value: img/s and its paired ratio, and the peak memory of
  a training step (CUDA's max allocated, or on CPU the tensors counted) against the default's.
  Evaluation-only entries (matrix_nms, class_agnostic, multiscale_flip) cost nothing here.
- loop overhead: both loops around ``NullDetector`` (three weights) on ready-made batches,
  in microseconds per iteration: what each loop itself costs, free of the detector's noise.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ablate.engine.loop import LoopState, StepTools, train_one_epoch
from ablate.engine.trial import build_pieces
from ablate.study.expand import expand
from ablate.study.loader import load_study

STUDY = Path(__file__).resolve().parent.parent / "studies" / "loss_ablation.yaml"
WORKERS = ["data.num_workers=2", "data.persistent_workers=true", "data.prefetch_factor=2"]
# (row, overrides turning the trick on, device types it applies to, why not elsewhere); overrides that
# start with "-" turn off a trick that is on by default there, and the row is timed with it off
TRICKS = [
    ("channels_last", ["train.channels_last=true"], ("cpu", "cuda"), ""),
    ("torch.compile (backbone, neck, head)", ["train.compile=true"], ("cpu", "cuda"), ""),
    ("num_workers 2 (persistent, prefetch 2)", WORKERS, ("cpu", "cuda"), ""),
    ("pin_memory (on by default on CUDA)", ["-data.pin_memory=false"], ("cuda",),
     "n/a on CPU (pinning only speeds host-to-GPU copies)"),
    ("amp fp16", ["train.amp.enabled=true"], ("cuda",), "n/a on CPU (the engine's AMP is CUDA-only: fp32 + a notice)"),
    ("cudnn.benchmark", ["train.cudnn_benchmark=true"], ("cuda",), "n/a on CPU (no cuDNN)"),
]

# (row, overrides): the catalogue's training tricks, each alone on the baseline (--catalogue)
CATALOGUE_TRICKS = [
    ("norm frozen_bn", ["model.norm=frozen_bn"]), ("norm gn", ["model.norm=gn"]),
    *((f"activation {a}", [f"model.activation={a}"]) for a in ("leaky_relu", "silu", "hardswish", "mish")),
    *((f"plugin {p}", [f"model.plugins=[{p}]"]) for p in ("dcn", "dilation", "stochastic_depth", "dropblock", "se",
                                                           "gc", "non_local", "sam", "cbam")),
    *((f"context {c}", [f"model.context={c}"]) for c in ("spp", "sppf", "aspp", "rfb")),
    *((f"head_conv {h}", [f"model.head_conv={h}"]) for h in ("depthwise", "grouped", "repconv")),
    ("neck asff", ["model.neck=asff"]),
    *((f"pyramid {p}", [f"model.pyramid={p}"]) for p in ("p2_p7", "p2_p5")),
    *((f"loss.cls {c}", [f"loss.cls={c}"]) for c in ("ghm_c", "quality_focal", "varifocal", "hard_negative")),
    ("loss.box ghm_r", ["loss.box=ghm_r"]),
    *((f"augment {a}", [f"augment=[hflip, {a}]"]) for a in ("cutmix", "random_erasing", "rotate", "autoaugment")),
    ("augment albumentations (3 transforms)", ["augment=[hflip, {name: albumentations, transforms: [{name: "
                                               "RandomBrightnessContrast}, {name: HueSaturationValue}, "
                                               "{name: Affine, rotate: [-10, 10]}]}]"]),
]


@dataclass
class Contender:
    name: str
    run_epoch: Callable[[], None]
    seconds: list[float] = field(default_factory=list)


def trial_config(overrides: list[str], iters: int, epochs: int):
    """The study's baseline with ``overrides``, on a shapes set of exactly ``iters`` batches."""
    batch = expand(load_study(STUDY)).pop(0).config.train.batch_size
    sized = [f"data.shapes.train_images={iters * batch}", "data.shapes.val_images=8", f"train.epochs={epochs}"]
    return expand(load_study(STUDY, [*sized, *overrides]))[0].config


def ablate_epoch(model, optimizer, loader, tools: StepTools, device: torch.device) -> Callable[[], None]:
    """``train_one_epoch`` as ``run_trial`` calls it (without a progress callback, as under Ray)."""
    state, epoch = LoopState(), iter(range(1, 10**9))

    def run() -> None:
        train_one_epoch(model, optimizer, loader, epoch=next(epoch), state=state, tools=tools, device=device)

    return run


def reference_epoch(model, optimizer, loader, device: torch.device) -> Callable[[], None]:
    """torchvision's references/detection/engine.py ``train_one_epoch``, minus its MetricLogger."""
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / 1000, total_iters=100)

    def run() -> None:
        model.train()
        for images, targets in loader:
            images = [image.to(device) for image in images]
            targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
            loss_dict = model(images, targets)
            losses = sum(loss for loss in loss_dict.values())
            loss_value = losses.item()
            if not math.isfinite(loss_value):
                raise SystemExit(f"Loss is {loss_value}, stopping training")
            optimizer.zero_grad()
            losses.backward()
            optimizer.step()
            warmup.step()

    return run


class NullDetector(nn.Module):
    """Three losses from three weights: an iteration of it is nearly all loop overhead."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, images, targets):
        losses = self.w * images[0][0, 0, 0]  # [3]
        return {"loss_cls": losses[0], "loss_box": losses[1], "loss_ctr": losses[2]}


def loop_overhead(tools: StepTools, device: torch.device, iters: int = 400, repeat: int = 7) -> dict[str, float]:
    """Microseconds per iteration of each loop around ``NullDetector``, with its AdamW step and 4-image batches."""
    batch = ([torch.rand(3, 8, 8) for _ in range(4)],
             [{"boxes": torch.tensor([[1.0, 1.0, 6.0, 6.0]]), "labels": torch.tensor([0]), "image_id": i}
              for i in range(4)])
    loader = [batch] * iters
    runs = {}
    for name in ("reference", "ablate"):
        model = NullDetector().to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        runs[name] = Contender(name, reference_epoch(model, optimizer, loader, device) if name == "reference"
                               else ablate_epoch(model, optimizer, loader, tools, device))
    measure(list(runs.values()), repeat, device)
    return {name: statistics.median(c.seconds) / iters * 1e6 for name, c in runs.items()}


def measure(contenders: list[Contender], repeat: int, device: torch.device) -> None:
    """Round 0 warms up (dropped); then ``repeat`` rounds, the order reversed every other round."""
    for r in range(repeat + 1):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            c.run_epoch()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r > 0:
                c.seconds.append(time.perf_counter() - t)


def pooled(a: Contender, b: Contender) -> Contender:
    """Both copies of a contender as one: the mean of their two epochs in each round."""
    return Contender(a.name, a.run_epoch, [(x + y) / 2 for x, y in zip(a.seconds, b.seconds, strict=True)])


def paired_gain(on: Contender, off: Contender) -> float:
    return statistics.median(b / a for a, b in zip(on.seconds, off.seconds))


def one_thread_count(threads: int, args, device: torch.device) -> list[str]:
    torch.set_num_threads(threads)
    epochs = args.repeat + 1

    def contender(name: str, overrides: list[str]) -> Contender:
        config = trial_config([o.removeprefix("-") for o in overrides], args.iters, epochs)
        p = build_pieces(config, seed=0, device=device)
        if name.startswith("reference"):
            epoch = reference_epoch(p.model, p.optimizer, p.data.train, device)
        else:
            epoch = ablate_epoch(p.model, p.optimizer, p.data.train, p.tools, device)

        def run() -> None:
            if device.type == "cuda":  # process-wide: build_pieces set it for the last one built
                torch.backends.cudnn.benchmark = config.train.cudnn_benchmark
            epoch()

        return Contender(name, run)

    applicable = [(name, over) for name, over, devices, _ in TRICKS if device.type in devices]
    everything = [o for _, over in applicable for o in over if not o.startswith("-")]
    contenders = [contender("reference", []), contender("ablate", [])]
    contenders += [contender(name, over) for name, over in applicable]
    contenders += [contender("all", everything), contender("ablate again", []), contender("reference again", [])]
    measure(contenders, args.repeat, device)
    tools = build_pieces(trial_config([], 1, 2), seed=0, device=device).tools
    overhead = loop_overhead(tools, device)

    by_name = {c.name: c for c in contenders}
    images = args.iters * args.batch

    def ips(c: Contender) -> str:
        rates = sorted(images / s for s in c.seconds)
        return f"{statistics.median(rates):7.1f}  {rates[0]:6.1f}-{rates[-1]:<6.1f}"

    ref, default = pooled(by_name["reference"], by_name["reference again"]), pooled(by_name["ablate"], by_name["ablate again"])
    lines = [f"{threads} thread{'s' if threads > 1 else ''}:",
             f"  {'contender':<44} {'img/s':>7}  {'min-max':<13} {'ratio':>6}",
             f"  {'reference loop (torchvision style), 2 copies':<44} {ips(ref)}",
             f"  {'ablate train_one_epoch (default), 2 copies':<44} {ips(default)} {paired_gain(default, ref):6.3f}"
             "  <- ablate / reference",
             f"  {'A/A, the noise floor: reference again / reference':<44} {ips(by_name['reference again'])} "
             f"{paired_gain(by_name['reference again'], by_name['reference']):6.3f}",
             f"  {'A/A, the noise floor: ablate again / ablate':<44} {ips(by_name['ablate again'])} "
             f"{paired_gain(by_name['ablate again'], by_name['ablate']):6.3f}",
             f"  {'trick (alone, against the ablate default)':<44} {'':>7}  {'':<13} {'gain':>6}"]
    for name, over, devices, why in TRICKS:
        if device.type in devices and over[0].startswith("-"):  # timed with it off: the gain is default / off
            lines.append(f"  {name:<44} {ips(default)} {paired_gain(default, by_name[name]):6.3f}")
        elif device.type in devices:
            lines.append(f"  {name:<44} {ips(by_name[name])} {paired_gain(by_name[name], default):6.3f}")
        else:
            lines.append(f"  {name:<44} {why}")
    gain = paired_gain(by_name["all"], default)
    lines.append(f"  {'all of the above that apply':<44} {ips(by_name['all'])} {gain:6.3f}")
    iteration_ms = statistics.median(default.seconds) / args.iters * 1e3
    lines.append(f"  loop overhead per iteration (NullDetector, no data loading): "
                 f"reference {overhead['reference']:.0f} us, ablate {overhead['ablate']:.0f} us; "
                 f"a detector iteration here: {iteration_ms:.0f} ms")
    if device.type == "cuda":
        lines.append(f"  GPU goal (all tricks >= 1.2x): {'met' if gain >= 1.2 else 'not met'} ({gain:.2f}x)")
    return lines


def catalogue_costs(threads: int, args, device: torch.device) -> list[str]:
    """Each catalogue trick alone against the default (two copies, first and last): img/s, ratio, peak MiB."""
    torch.set_num_threads(threads)
    epochs = args.repeat + 1
    peaks: dict[str, Callable[[], float]] = {}

    def contender(name: str, overrides: list[str]) -> Contender:
        p = build_pieces(trial_config(overrides, args.iters, epochs), seed=0, device=device)
        if device.type == "cuda":
            peaks[name] = lambda: torch.cuda.max_memory_allocated(device) / 2**20  # process-wide: see the note
        else:
            peaks[name] = lambda: p.tools.memory.peak_mb
        return Contender(name, ablate_epoch(p.model, p.optimizer, p.data.train, p.tools, device))

    contenders = [contender("ablate", []), *(contender(n, o) for n, o in CATALOGUE_TRICKS), contender("ablate again", [])]
    measure(contenders, args.repeat, device)
    images = args.iters * args.batch
    by_name = {c.name: c for c in contenders}
    default = pooled(by_name["ablate"], by_name["ablate again"])
    base_mem = max(peaks["ablate"](), peaks["ablate again"]())

    def row(c: Contender, name: str) -> str:
        rates = sorted(images / s for s in c.seconds)
        mem = peaks[name]()
        return (f"  {name:<40} {statistics.median(rates):7.1f}  {rates[0]:6.1f}-{rates[-1]:<6.1f} "
                f"{paired_gain(c, default):6.3f} {mem:8.0f} {mem / base_mem:6.2f}")

    lines = [f"catalogue tricks, {threads} thread{'s' if threads > 1 else ''} (each alone; ratio: trick / default "
             "img/s, paired per round; Mem: peak MiB of a step, and / default):",
             f"  {'contender':<40} {'img/s':>7}  {'min-max':<13} {'ratio':>6} {'Mem':>8} {'/ def':>6}",
             row(default, "ablate"),
             f"  {'A/A, the noise floor: ablate again':<40} {'':>7}  {'':<13} "
             f"{paired_gain(by_name['ablate again'], by_name['ablate']):6.3f}"]
    lines += [row(by_name[n], n) for n, _ in CATALOGUE_TRICKS]
    if device.type == "cuda":
        lines.append("  (CUDA Mem is the process's max allocated so far: a row's figure is >= every row before it)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", default="1,2", help="torch.set_num_threads values, comma-separated")
    parser.add_argument("--iters", type=int, default=24, help="iterations per timed epoch")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (the median is reported)")
    parser.add_argument("--catalogue", action="store_true", help="the cost of each catalogue trick instead")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    args.batch = trial_config([], args.iters, 2).train.batch_size
    started = time.perf_counter()
    print(f"trainer throughput on {device.type} (torch {torch.__version__}): baseline of {STUDY.name}, "
          f"batch {args.batch}, {args.iters} iterations per epoch, median of {args.repeat} epochs after "
          "1 warm-up epoch, contenders alternated", flush=True)
    if args.catalogue:
        print("\n".join(catalogue_costs(int(args.threads.split(",")[0]), args, device)))
        print(f"total {time.perf_counter() - started:.0f} s")
        return
    for threads in (int(n) for n in args.threads.split(",")):
        print("\n".join(one_thread_count(threads, args, device)), flush=True)
        gc.collect()  # the contenders' loaders, and so their persistent workers, go now
    if device.type == "cpu":
        print("GPU goal (all tricks >= 1.2x on CUDA): unmeasured, no GPU here; run with --device cuda")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
