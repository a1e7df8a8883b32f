"""The built-in synthetic ``shapes`` set: coloured shapes on noisy gradients, as COCO json + PNGs.

Every image is a pure function of (split seed, image index), so a set is reproducible
byte for byte and is generated once per (counts, size, seed) into the cache.  Object
sides are drawn from three buckets so COCO's small (< 32^2), medium and large (> 96^2)
areas all occur (large needs ``image_size >= 125``; 192 is the default).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("square", "circle", "triangle", "diamond", "hexagon", "cross")
VERSION = 2  # bump whenever the generator changes: the cache is keyed by it

# (probability, shortest side, longest side) in px; capped at 0.8 * image_size
_BUCKETS = ((0.35, 12, 30), (0.45, 36, 90), (0.20, 100, 160))
_MAX_OBJECTS = 10
_MIN_OBJECTS = 3  # dense images: more positives per iteration, the main lever on CPU learning speed
_HIDDEN_MAX = 0.6  # an object hidden more than this by later ones is not drawn (nor labelled)


def default_cache_dir(given: Path | str | None = None) -> Path:
    """``given`` if not None, else ``$ABLATE_CACHE`` or ``~/.cache/ablate``."""
    if given is not None:
        return Path(given)
    return Path(os.environ.get("ABLATE_CACHE") or "~/.cache/ablate").expanduser()


def ensure_shapes(
    *, train_images: int, val_images: int, image_size: int, seed: int, cache_dir: Path | None = None
) -> Path:
    """Generate the set once and return its folder.

    The folder holds ``train.json``, ``val.json`` (COCO) and the PNGs in ``train/`` and
    ``val/`` (``file_name`` is relative to those).  It is written to a temporary folder
    and renamed into place, so racing processes leave exactly one complete copy.

    Example:
        >>> root = ensure_shapes(train_images=512, val_images=128, image_size=192, seed=0)
        >>> sorted(p.name for p in root.iterdir())
        ['train', 'train.json', 'val', 'val.json']
    """
    if image_size < 32:
        raise ValueError(f"shapes needs image_size >= 32, got {image_size}")
    cache_dir = default_cache_dir(cache_dir)
    final = cache_dir / f"shapes-v{VERSION}-{train_images}x{val_images}-{image_size}px-seed{seed}"
    if final.is_dir():  # only a finished copy is ever renamed to this name
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would keep a shared cache private to its first writer
    try:
        # train and val draw from independent child seeds of the user's seed
        train_seq, val_seq = np.random.SeedSequence(seed).spawn(2)
        for split, n, seq in (("train", train_images, train_seq), ("val", val_images, val_seq)):
            _write_split(tmp, split, n, image_size, seq)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_split(root: Path, split: str, n: int, size: int, seq: np.random.SeedSequence) -> None:
    (root / split).mkdir()

    def one(i: int, child: np.random.SeedSequence) -> list[tuple[int, tuple[int, ...]]]:
        image, objects = draw_image(np.random.default_rng(child), size)
        # Huffman-only deflate: noisy images barely compress further and it is the fastest
        Image.fromarray(image).save(root / split / f"{i + 1:06d}.png", compress_level=1,
                                    compress_type=zlib.Z_HUFFMAN_ONLY)
        return objects

    # threads, not processes: numpy and PNG encoding release the GIL, and nothing is forked
    # inside a trial process; each image has its own seed, so the result is order-independent
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        per_image = list(pool.map(one, range(n), seq.spawn(n)))
    images, annotations = [], []
    for i, objects in enumerate(per_image):
        images.append({"id": i + 1, "file_name": f"{i + 1:06d}.png", "width": size, "height": size})
        for label, (x0, y0, x1, y1) in objects:
            w, h = x1 - x0, y1 - y0
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0,
            })
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (root / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")))


# ---- drawing ----------------------------------------------------------------


def draw_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[int, tuple[int, ...]]]]:
    """One image (uint8 [size, size, 3]) and its objects as (label, (x0, y0, x1, y1)) in draw order."""
    background = _background(rng, size)  # float32 [S, S, 3]
    planned = _plan(rng, size)
    masks = [_mask(label, w, h) for label, (x0, y0, w, h) in planned]  # bool [h, w] each
    keep = _visible(planned, masks, size)
    image = background.copy()
    drawn: list[tuple[tuple[int, ...], np.ndarray]] = []  # (box, colour) of objects already on the canvas
    objects = []
    for k in keep:
        label, (x0, y0, w, h) = planned[k]
        box = (x0, y0, x0 + w, y0 + h)
        under = [c for b, c in drawn if _intersects(b, box)]
        colour = _colour(rng, background[y0:y0 + h, x0:x0 + w].reshape(-1, 3).mean(0), under)
        image[y0:y0 + h, x0:x0 + w][masks[k]] = colour
        drawn.append((box, colour))
        objects.append((label, box))
    # thin per-pixel noise over everything; small integers keep the PNGs quick to write
    image += rng.integers(-4, 5, image.shape, dtype=np.int8)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), objects


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth two-colour gradient in a random direction plus a coarse 4x4 texture."""
    c0, c1 = rng.uniform(40, 215, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.linspace(0, 1, size, dtype=np.float32)
    t = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None]  # [S, S]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    # bilinear upsampling of a 3x4x4 grid through a [S, 4] interpolation matrix
    grid = rng.normal(0.0, 10.0, (3, 4, 4)).astype(np.float32)
    pos = np.linspace(0, 3, size, dtype=np.float32)
    weights = np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(4, dtype=np.float32)[None]))  # [S, 4]
    texture = (weights @ grid @ weights.T).transpose(1, 2, 0)  # [S, S, 3]
    return c0 + (c1 - c0) * t[..., None] + texture


def _plan(rng: np.random.Generator, size: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Labels and boxes (x0, y0, w, h) in draw order; a new box may not hide half of an earlier one."""
    cap = max(8, int(0.8 * size))
    buckets = [(p, lo, min(hi, cap)) for p, lo, hi in _BUCKETS if lo <= cap]
    probs = np.array([b[0] for b in buckets])
    planned: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(_MIN_OBJECTS, _MAX_OBJECTS + 1))):
        label = int(rng.integers(len(CLASSES)))
        _, lo, hi = buckets[int(rng.choice(len(buckets), p=probs / probs.sum()))]
        w = int(rng.integers(lo, hi + 1))
        h = _height(rng, label, w)
        for _ in range(10):  # a few placements; an object that finds no room is left out
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if all(_covered((x0, y0, w, h), b) <= 0.5 for _, b in planned):
                planned.append((label, (x0, y0, w, h)))
                break
    return planned


def _height(rng: np.random.Generator, label: int, w: int) -> int:
    name = CLASSES[label]
    if name in ("square", "circle"):
        return w
    if name == "hexagon":
        return max(2, round(w * 0.866))  # a regular flat-topped hexagon
    return max(2, round(w * rng.uniform(0.8, 1.25)))  # triangle, diamond, cross: some aspect jitter


def _covered(new: tuple[int, int, int, int], old: tuple[int, int, int, int]) -> float:
    """Fraction of ``old``'s box (x0, y0, w, h) that ``new`` overlaps."""
    ix = min(new[0] + new[2], old[0] + old[2]) - max(new[0], old[0])
    iy = min(new[1] + new[3], old[1] + old[3]) - max(new[1], old[1])
    return max(ix, 0) * max(iy, 0) / (old[2] * old[3])


def _mask(label: int, w: int, h: int) -> np.ndarray:
    """bool [h, w]; every shape touches all four sides, so its box is its full extent."""
    name, r, b = CLASSES[label], w - 1, h - 1
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if name == "square":
        draw.rectangle([0, 0, r, b], fill=1)
    elif name == "circle":
        draw.ellipse([0, 0, r, b], fill=1)
    elif name == "triangle":
        draw.polygon([(r / 2, 0), (r, b), (0, b)], fill=1)
    elif name == "diamond":
        draw.polygon([(r / 2, 0), (r, b / 2), (r / 2, b), (0, b / 2)], fill=1)
    elif name == "hexagon":
        draw.polygon([(r / 4, 0), (3 * r / 4, 0), (r, b / 2), (3 * r / 4, b), (r / 4, b), (0, b / 2)], fill=1)
    else:  # cross: a horizontal and a vertical bar, each a third of the box thick
        draw.rectangle([0, round(h / 3), r, round(2 * h / 3) - 1], fill=1)
        draw.rectangle([round(w / 3), 0, round(2 * w / 3) - 1, b], fill=1)
    return np.asarray(canvas, dtype=bool)


def _visible(planned: list, masks: list[np.ndarray], size: int) -> list[int]:
    """Indices of objects to draw: from the top down, drop those mostly hidden by kept later ones."""
    cover = np.zeros((size, size), dtype=bool)  # pixels taken by kept objects drawn later
    keep = []
    for k in range(len(planned) - 1, -1, -1):
        x0, y0, w, h = planned[k][1]
        hidden = cover[y0:y0 + h, x0:x0 + w][masks[k]].mean()
        if hidden <= _HIDDEN_MAX:
            keep.append(k)
            cover[y0:y0 + h, x0:x0 + w] |= masks[k]
    return keep[::-1]


def _intersects(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _colour(rng: np.random.Generator, background: np.ndarray, under: list[np.ndarray]) -> np.ndarray:
    """A random colour far from the local background and from overlapped objects (best of 40 draws)."""
    best, best_score = None, -1.0
    for _ in range(40):
        c = rng.uniform(0, 255, 3).astype(np.float32)
        # distance to the nearest thing it must stand out from; objects need a little less
        score = min([np.linalg.norm(c - background) / 120] + [np.linalg.norm(c - u) / 80 for u in under])
        if score >= 1.0:
            return c
        if score > best_score:
            best, best_score = c, score
    return best
