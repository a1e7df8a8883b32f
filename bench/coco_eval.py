"""pycocotools against faster-coco-eval: the same synthetic detections, time and agreement.

    uv run python bench/coco_eval.py [--images 5000] [--dets 100] [--repeats 3] [--trial-epochs 1]

Part 1 builds a COCO-like ground truth (80 categories, about 7 boxes an image,
COCO's mix of small/medium/large boxes, a few large crowd boxes) and ``--dets``
detections per image (jittered copies of the ground truth, some with the wrong
class, the rest false positives; scores rounded as ``to_coco_results`` rounds
them, so ties occur), then times each stage of ``coco_summary`` for each
backend, alternating backends so machine noise hits both, and prints the
median, the speed ratio and the largest difference over the twelve numbers.

Part 2 trains the shipped tiny study's baseline (studies/loss_ablation.yaml)
for ``--trial-epochs`` epochs and reports COCO evaluation as a share of its
epoch time with each backend (``--trial-epochs 0`` skips it).  The whole
script takes about 8 minutes of CPU time; it prints the load average, as a busy
machine stretches every time it reports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from ablate.engine.coco_eval import BACKENDS, STAT_NAMES, coco_index, coco_summary, evaluator, ground_truth

STAGES = ("index", "loadRes", "evaluate+accumulate", "summarize")
STUDY = Path(__file__).resolve().parents[1] / "studies" / "loss_ablation.yaml"


def _sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Box sides (sqrt of area) in COCO's proportions: 41% small (<32), 34% medium (<96), 25% large."""
    bucket = rng.choice(3, n, p=[0.41, 0.34, 0.25])
    low, high = np.array([4.0, 32.0, 96.0])[bucket], np.array([32.0, 96.0, 360.0])[bucket]
    return np.exp(rng.uniform(np.log(low), np.log(high)))


def _boxes(rng: np.random.Generator, side: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """[N, 4] x, y, w, h boxes of about ``side``, aspect 1:2..2:1, inside their images."""
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), side.size))
    w, h = np.minimum(side * np.sqrt(aspect), width - 1), np.minimum(side / np.sqrt(aspect), height - 1)
    return np.stack([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h], axis=1)


def synthetic(n_images: int, dets_per_image: int, seed: int = 0) -> tuple[COCO, list[dict]]:
    """A pycocotools ground truth index and ``dets_per_image`` result records per image."""
    rng = np.random.default_rng(seed)
    cat_ids = np.sort(rng.choice(np.arange(1, 91), 80, replace=False))  # non-contiguous, as in COCO
    width, height = np.full(n_images, 640.0), rng.choice([360.0, 427.0, 480.0, 640.0], n_images)
    per_image = np.minimum(rng.poisson(7.0, n_images), dets_per_image // 2)  # some images have none
    img = np.repeat(np.arange(n_images), per_image)
    gt = _boxes(rng, _sizes(rng, img.size), width[img], height[img])
    gt_cat = rng.choice(cat_ids, img.size)
    crowd = (rng.random(img.size) < 0.01) & (gt[:, 2] * gt[:, 3] > 96**2)
    images = [{"id": i + 1, "width": int(w), "height": int(h)} for i, (w, h) in enumerate(zip(width, height))]
    anns = [{"id": k + 1, "image_id": int(i) + 1, "category_id": int(c), "bbox": [round(v, 2) for v in b],
             "area": round(b[2] * b[3], 2), "iscrowd": int(z)}
            for k, (i, c, b, z) in enumerate(zip(img.tolist(), gt_cat.tolist(), gt.tolist(), crowd.tolist()))]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": int(c), "name": f"c{c}"} for c in cat_ids]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()

    # true positives: 1-3 jittered copies of each gt box, 10% with a wrong class; the rest false positives
    copies = rng.integers(1, 4, img.size)
    src = np.repeat(np.arange(img.size), copies)  # sorted by image, as img is
    tp_img = img[src]
    counts = np.bincount(tp_img, minlength=n_images)
    rank = np.arange(src.size) - np.repeat(np.cumsum(counts) - counts, counts)
    src, tp_img = src[rank < dets_per_image], tp_img[rank < dets_per_image]
    g = gt[src]
    centre = g[:, :2] + g[:, 2:] / 2 + rng.normal(0, 0.1, (src.size, 2)) * g[:, 2:]
    size = g[:, 2:] * np.exp(rng.normal(0, 0.15, (src.size, 2)))
    tp = np.concatenate([centre - size / 2, size], axis=1)
    tp_cat = np.where(rng.random(src.size) < 0.9, gt_cat[src], rng.choice(cat_ids, src.size))
    fp_img = np.repeat(np.arange(n_images), dets_per_image - np.bincount(tp_img, minlength=n_images))
    fp = _boxes(rng, _sizes(rng, fp_img.size), width[fp_img], height[fp_img])
    det_img = np.concatenate([tp_img, fp_img])
    boxes = np.concatenate([tp, fp]).round(3)
    cats = np.concatenate([tp_cat, rng.choice(cat_ids, fp_img.size)])
    scores = np.concatenate([rng.beta(4, 2, tp_img.size), rng.beta(1.5, 4, fp_img.size)]).round(5)
    order = np.argsort(det_img, kind="stable")
    results = [{"image_id": i + 1, "category_id": c, "bbox": b, "score": s} for i, c, b, s in
               zip(det_img[order].tolist(), cats[order].tolist(), boxes[order].tolist(), scores[order].tolist())]
    return coco, results


def timed_run(coco_gt: COCO, results: list[dict], backend: str) -> tuple[dict[str, float], np.ndarray]:
    """Seconds per stage of ``coco_summary`` and the raw stats (-1 kept)."""
    seconds, began = {}, time.perf_counter()
    gt = ground_truth(coco_gt, backend)  # each backend indexes the same pycocotools-built dicts
    seconds["index"], began = time.perf_counter() - began, time.perf_counter()
    evaluation = evaluator(gt, results, backend)
    seconds["loadRes"] = time.perf_counter() - began
    with contextlib.redirect_stdout(io.StringIO()):
        began = time.perf_counter()
        evaluation.evaluate()  # faster_coco_eval accumulates here already (one C++ call)
        evaluation.accumulate()
        seconds["evaluate+accumulate"], began = time.perf_counter() - began, time.perf_counter()
        evaluation.summarize()
        seconds["summarize"] = time.perf_counter() - began
    return seconds, np.asarray(evaluation.stats[:12], dtype=float)


def compare(n_images: int, dets: int, repeats: int) -> None:
    began = time.perf_counter()
    coco_gt, results = synthetic(n_images, dets)
    print(f"{n_images} images, {len(coco_gt.anns)} gt boxes "
          f"({sum(a['iscrowd'] for a in coco_gt.anns.values())} crowd), {len(results)} detections, "
          f"80 categories; built in {time.perf_counter() - began:.1f} s")
    names = tuple(BACKENDS)
    times = {b: {s: [] for s in STAGES} for b in names}
    stats = {}
    for r in range(repeats):
        for backend in names if r % 2 == 0 else names[::-1]:  # alternate which goes first
            seconds, stats[backend] = timed_run(coco_gt, results, backend)
            for stage, t in seconds.items():
                times[backend][stage].append(t)
    med = {b: {s: statistics.median(v) for s, v in times[b].items()} for b in names}
    total = {b: statistics.median([sum(x) for x in zip(*times[b].values())]) for b in names}
    slow, fast = "pycocotools", "faster_coco_eval"
    print(f"\nmedian of {repeats} runs, seconds")
    print(f"{'stage':20s}{fast:>18s}{slow:>14s}{'speed-up':>10s}")
    for stage in (*STAGES, "total"):
        t_fast, t_slow = (med[b][stage] if stage in med[b] else total[b] for b in (fast, slow))
        ratio = f"{t_slow / t_fast:9.1f}x" if min(t_fast, t_slow) >= 0.01 else f"{'-':>10s}"
        print(f"{stage:20s}{t_fast:18.3f}{t_slow:14.3f}{ratio}")
    a, b = stats[slow], stats[fast]
    diff = np.where((a < 0) & (b < 0), 0.0, np.abs(a - b))
    print(f"\n{'stat':6s}{slow:>14s}{fast:>18s}{'|diff|':>10s}")
    for name, x, y, d in zip(STAT_NAMES, a, b, diff):
        print(f"{name:6s}{x:14.6f}{y:18.6f}{d:10.1e}")
    verdict = "agree" if diff.max() <= 1e-4 else "DISAGREE"
    print(f"max |diff| over the twelve numbers: {diff.max():.1e} ({verdict} to 1e-4); "
          f"faster_coco_eval {total[slow] / total[fast]:.1f}x faster in total")


def eval_share(epochs: int, repeats: int) -> None:
    """COCO evaluation per epoch as a share of epoch time, on the tiny study's baseline."""
    import torch

    from ablate.data.build import build_data
    from ablate.engine.trial import run_trial
    from ablate.study.loader import load_study

    config = load_study(STUDY, [f"train.epochs={epochs}", "scheduler.name=none"]).baseline()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_trial(config, seed=0, out_dir=Path(tmp), device="cpu", log=lambda _: None)
        records = json.loads((Path(tmp) / "detections.json").read_text())
    val_gt = build_data(config, seed=0, device=torch.device("cpu")).val_gt
    indexes = {b: coco_index(val_gt, b) for b in BACKENDS}  # built once per trial, as the trial does
    coco = {b: [] for b in BACKENDS}
    for r in range(repeats):
        for backend in BACKENDS if r % 2 == 0 else list(BACKENDS)[::-1]:
            began = time.perf_counter()
            coco_summary(indexes[backend], records, backend)
            coco[backend].append(time.perf_counter() - began)
    coco = {b: statistics.median(v) for b, v in coco.items()}
    used = config.eval.backend
    print(f"\n{STUDY.name} baseline, {epochs} epochs on CPU, seed 0: "
          f"{len(val_gt['images'])} val images, {len(records)} detections in the last epoch (trained with {used})")
    print(f"{'epoch':>5s}{'epoch s':>10s}{'eval s':>9s}{'eval share':>12s}   (eval = inference + COCO)")
    for row in result.history:
        print(f"{row['epoch']:5d}{row['epoch_time_s']:10.2f}{row['eval_time_s']:9.2f}"
              f"{row['eval_time_s'] / row['epoch_time_s']:12.1%}")
    last = result.history[-1]["epoch_time_s"] - coco[used]  # the last epoch without its COCO step
    for backend, seconds in coco.items():
        print(f"COCO step with {backend:16s}: {seconds * 1000:7.1f} ms = "
              f"{seconds / (last + seconds):.2%} of the last epoch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trial-epochs", type=int, default=1, help="0: skip the tiny-study part")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    compare(args.images, args.dets, args.repeats)
    if args.trial_epochs:
        eval_share(args.trial_epochs, max(args.repeats, 5))


if __name__ == "__main__":
    main()
