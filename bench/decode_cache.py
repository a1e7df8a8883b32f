"""The decoded-image cache: img/s of the data path and of a trial, with and without it, side by side.

    uv run python bench/decode_cache.py [--images 2000] [--image-size 512] [--batches 24] [--repeat 3]
                                        [--photos DIR] [--threads 1]

The set: ``--images`` JPEGs (quality 90) whose longer side is 384-640 px, each a random
crop, scale and flip of a real photograph: the ``.jpg`` files in ``--photos``, by default the
three sample photos that ship with matplotlib and scikit-learn (Grace Hopper, a Chinese
temple, a flower; 427-640 px).  Written once under ``--out`` (default ``$ABLATE_CACHE/bench``)
with a COCO json of one to three boxes per image.

- cache build: the first ``build_data`` with the cache on decodes and base-resizes the whole
  train split once; its seconds against one uncached pass over the same images.
- data path: one epoch of the train loader (``hflip``, batch 4, no model), cache off and on.
- trial: ``train_one_epoch`` of the shipped baseline (tiny FCOS, batch 4, AdamW) on a
  ``--batches`` x 4 image subset of the set at ``--image-size``, cache off and on.

Round 0 warms up and is dropped; then ``--repeat`` rounds alternate the order (off, on,
on, off, ...).  Ratios are medians of the per-round ratios (on over off, in img/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ablate.data.build import build_data
from ablate.data.shapes import default_cache_dir
from ablate.engine.loop import LoopState, train_one_epoch
from ablate.engine.trial import build_pieces
from ablate.study.expand import expand
from ablate.study.loader import load_study

STUDY = Path(__file__).resolve().parent.parent / "studies" / "loss_ablation.yaml"
CPU = torch.device("cpu")


def sample_photos() -> list[Path]:
    """The sample photographs of matplotlib and scikit-learn, where installed."""
    found = []
    for module, rel in (("matplotlib", "mpl-data/sample_data"), ("sklearn", "datasets/images")):
        try:
            package = __import__(module)
        except ImportError:
            continue
        found += sorted((Path(package.__file__).parent / rel).glob("*.jpg"))
    return found


def make_set(out: Path, n: int, photos: list[Path], seed: int = 0) -> Path:
    """``n`` JPEGs cut from ``photos`` into ``out/imgs`` and ``out/ann.json``; kept if already there."""
    if (out / "ann.json").is_file():
        return out
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in photos]
    (out / "imgs").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        src = sources[i % len(sources)]
        w0, h0 = src.size
        cw, ch = int(w0 * rng.uniform(0.5, 1.0)), int(h0 * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w0 - cw + 1)), int(rng.integers(0, h0 - ch + 1))
        longer = int(rng.integers(384, 641))
        scale = longer / max(cw, ch)
        im = src.crop((x, y, x + cw, y + ch)).resize((round(cw * scale), round(ch * scale)), Image.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im.save(out / f"imgs/{i}.jpg", quality=90)
        w, h = im.size
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h})
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.5) * h
            bx, by = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 4)),
                         "bbox": [bx, by, bw, bh], "area": bw * bh, "iscrowd": 0})
    cats = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]
    (out / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


def config(root: Path, image_size: int, subset: int | None):
    data = ["data.dataset=coco", f"data.root={root}", "data.train_ann=ann.json", "data.train_images=imgs",
            "data.val_ann=ann.json", "data.val_images=imgs", f"data.image_size={image_size}"]
    if subset:
        data.append(f"data.train_subset={{images: {subset}, seed: 0}}")
    return expand(load_study(STUDY, data)).pop(0).config


def build(cached: bool, fn: Callable):
    os.environ["ABLATE_DECODE_CACHE"] = "1" if cached else "0"
    try:
        return fn()
    finally:
        os.environ.pop("ABLATE_DECODE_CACHE", None)


def rounds(runs: dict[str, Callable[[], int]], repeat: int) -> dict[str, list[float]]:
    """img/s of each run per round; round 0 dropped, the order reversed every other round."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeat + 1):
        for name in runs if r % 2 == 0 else list(runs)[::-1]:
            t = time.perf_counter()
            n = runs[name]()
            if r > 0:
                out[name].append(n / (time.perf_counter() - t))
    return out


def line(what: str, ips: dict[str, list[float]]) -> str:
    off, on = ips["off"], ips["on"]
    ratio = statistics.median(b / a for a, b in zip(off, on))
    return (f"{what}: without the cache {statistics.median(off):.1f} img/s ({min(off):.1f}-{max(off):.1f}), "
            f"with it {statistics.median(on):.1f} ({min(on):.1f}-{max(on):.1f}): **{ratio:.2f}x**")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batches", type=int, default=24, help="train batches in a timed trial epoch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial under Ray with cpu: 1)")
    parser.add_argument("--photos", type=Path, help="a folder of .jpg photos to cut the set from")
    parser.add_argument("--out", type=Path, help="where the set is written (default $ABLATE_CACHE/bench)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = sorted(args.photos.glob("*.jpg")) if args.photos else sample_photos()
    if not photos:
        raise SystemExit("no photos: pass --photos DIR with .jpg files (matplotlib/scikit-learn are not installed)")
    root = make_set((args.out or default_cache_dir() / "bench") / f"photos-{args.images}", args.images, photos)
    print(f"set: {args.images} JPEGs (longer side 384-640 px) cut from {', '.join(p.name for p in photos)} "
          f"in {root}; image_size {args.image_size}; torch threads {args.threads}")

    with tempfile.TemporaryDirectory() as cache:
        os.environ["ABLATE_CACHE"] = cache  # a fresh cache: the build below is the first
        full = config(root, args.image_size, None)
        t = time.perf_counter()
        plain = build(False, lambda: build_data(full, seed=0, device=CPU))
        n = len(plain.train.dataset)
        for i in range(n):
            plain.train.dataset.decode(i)
        decode_s = time.perf_counter() - t
        t = time.perf_counter()
        cached = build(True, lambda: build_data(full, seed=0, device=CPU))
        build_s = time.perf_counter() - t
        mib = cached.train.dataset.decoded.pixels_path.stat().st_size / 2**20
        print(f"cache build: {build_s:.1f} s for {n} train images ({mib:.0f} MiB) and the val split "
              f"(originals); one uncached decode pass over the train images: {decode_s:.1f} s")

        def epoch(bundle) -> Callable[[], int]:
            return lambda: sum(len(images) for images, _ in bundle.train)

        print(line(f"data path (train loader, hflip, batch 4, {n} images)",
                   rounds({"off": epoch(plain), "on": epoch(cached)}, args.repeat)))

        small = config(root, args.image_size, args.batches * full.train.batch_size)
        trials = {}
        for name in ("off", "on"):
            p = build(name == "on", lambda: build_pieces(small, seed=0, device=CPU))
            state, numbers = LoopState(), iter(range(1, 10**9))

            def run(p=p, state=state, numbers=numbers) -> int:
                train_one_epoch(p.model, p.optimizer, p.data.train, epoch=next(numbers), state=state,
                                tools=p.tools, device=CPU)
                return p.data.num_train // full.train.batch_size * full.train.batch_size

            trials[name] = run
        print(line(f"trial (tiny FCOS, batch 4, {args.image_size} px, {args.batches} batches)",
                   rounds(trials, args.repeat)))


if __name__ == "__main__":
    main()
