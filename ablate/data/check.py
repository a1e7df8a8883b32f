"""The data pre-flight of ``ablate run``: every dataset a study uses, checked before any trial starts.

Each distinct dataset of the study's variants is loaded once by the loaders the trials
use (``load_splits``), so an annotation problem is the very ``DataError`` a trial would
hit, and a repaired record (a clipped box, a dropped degenerate box) the same warning,
here with the first few records it concerns.  Then what the loaders leave to training
time is checked too: a split with no box at all (``require_boxes``), and every image
file decoded (truncated, not an image, empty) and measured against its annotation.

Decoding every image of a large set (COCO train: 118k files) takes minutes, so an image
that passed is remembered by (path, size, mtime) in ``<cache>/verified/<hash>.json``
(``$ABLATE_CACHE`` or ``~/.cache/ablate``), one file per annotation file; the next run
decodes only new or changed files.  The synthetic ``shapes`` set needs no check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ablate.atomic import atomic_path
from ablate.data.coco import Annotations, ImageRecord
from ablate.data.shapes import default_cache_dir
from ablate.data.splits import load_splits, require_boxes
from ablate.errors import DataError
from ablate.study.config import Data, TrialConfig

# the keys that say which files a dataset is; image_size, workers and the like do not
IDENTITY = ("dataset", "root", "train_ann", "train_images", "val_ann", "val_images", "train_split", "val_split",
            "yaml", "classes", "train_subset")
PROGRESS_S = 10.0  # seconds between progress lines while images are decoded
SHOWN = 5  # bad images listed in one error


@dataclass
class Checked:
    """What the pre-flight did: distinct datasets, images seen and decoded now, warnings given."""

    datasets: int = 0
    images: int = 0
    decoded: int = 0
    warnings: int = 0
    summary: dict | None = None  # of the ``summary_of`` dataset (data/summary.py)


def _identity(d: Data) -> str:
    return json.dumps(d.model_dump(mode="json", include=set(IDENTITY)), sort_keys=True)


def check_data(configs: Iterable[TrialConfig], *, log: Callable[[str], None] = print,
               cache_dir: Path | None = None, summary_of: Data | None = None) -> Checked:
    """Check every distinct dataset of ``configs``; raise ``DataError`` on the first bad one.

    Args:
        configs: the trial configurations of a study (its variants').
        log: where warnings and progress go (one line each).
        cache_dir: holds ``verified/``; None: ``$ABLATE_CACHE`` or ``~/.cache/ablate``.
        summary_of: a dataset to summarise (``Checked.summary``; the study's baseline's), loaded once
            if it is one of those checked.
    """
    from ablate.data.summary import summarize

    distinct: dict[str, Data] = {}
    for config in configs:
        if config.data.dataset != "shapes":
            distinct.setdefault(_identity(config.data), config.data)
    cache = default_cache_dir(cache_dir)
    done = Checked(datasets=len(distinct))
    wanted, kept = (_identity(summary_of) if summary_of is not None else None), None
    for key, d in distinct.items():
        train, val = load_splits(d)
        if key == wanted:
            kept = train, val
        for split in (train, val):
            for kind, n in sorted(split.repairs.items()):
                shown = ", ".join(split.examples.get(kind, []))
                log(f"warning: {split.source}: {kind}: {n}" + (f" (e.g. {shown})" if shown else ""))
                done.warnings += 1
        require_boxes(train, val)
        for split in (train, val):
            done.images += len(split.records)
            done.decoded += check_images(split, cache=cache, log=log)
    if summary_of is not None and (kept or summary_of.dataset == "shapes" or distinct):
        train, val = kept or load_splits(summary_of, cache_dir)  # a finished study loads no annotation file
        done.summary = summarize({"train": train, "val": val}, image_size=summary_of.image_size,
                                 dataset=summary_of.dataset)
    return done


def check_images(split: Annotations, *, cache: Path, log: Callable[[str], None] = print) -> int:
    """Decode every image of ``split`` not verified before; return how many were decoded now.

    Raises:
        DataError: naming the annotation file and, for each bad image (the first few),
            its path, image id and what is wrong with it.
    """
    store = cache / "verified" / (hashlib.sha256(os.path.abspath(split.source).encode()).hexdigest()[:16] + ".json")
    known = _read(store)
    todo, seen = [], {}
    for rec in split.records:
        path = os.path.abspath(rec.path)
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"{split.source}: cannot read image '{rec.path}' (image id {rec.image_id}): "
                            f"{e.strerror}") from None
        stamp = [st.st_size, st.st_mtime_ns]
        seen[path] = stamp
        entry = known.get(path)
        if entry is not None and entry[:2] == stamp:
            problem = _size_problem(rec, tuple(entry[2:4]))
            if problem:
                raise DataError(f"{split.source}: {problem}")
        else:
            todo.append((rec, path))
    if not todo:
        return 0

    bad, start, last = [], time.monotonic(), time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            for k, ((rec, path), (size, problem)) in enumerate(zip(todo, pool.map(_verify, todo)), start=1):
                if problem is None:
                    problem = _size_problem(rec, size)
                if problem is None:
                    known[path] = [*seen[path], *size]
                else:
                    bad.append(problem)
                now = time.monotonic()
                if now - last >= PROGRESS_S:
                    last = now
                    log(f"checking the images of {split.source}: {k}/{len(todo)} decoded "
                        f"({len(split.records) - len(todo)} verified before), {now - start:.0f} s")
    finally:
        _write(store, {p: known[p] for p in seen if p in known})  # what passed is kept, even when interrupted
    elapsed = time.monotonic() - start
    if elapsed >= PROGRESS_S:
        log(f"checked {len(todo)} images of {split.source} in {elapsed:.0f} s; the next run skips them "
            f"(remembered in {store})")
    if bad:
        more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise DataError(f"{split.source}: {len(bad)} of {len(split.records)} images cannot be used: "
                        f"{'; '.join(bad[:SHOWN])}{more}. Each image must be a file PIL decodes, of the width and "
                        "height its annotation gives: re-export it, or remove it and its annotations")
    return len(todo)


def _verify(item: tuple[ImageRecord, str]) -> tuple[tuple[int, int], str | None]:
    """((width, height), None) for an image that decodes, else (size or (0, 0), the problem)."""
    rec, path = item
    try:
        with Image.open(path) as im:
            size = im.size
            if im.format == "PNG":
                im.verify()  # every chunk's CRC, to the end: catches a truncated file without decoding
            else:
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))  # all entropy data, 1/64 the pixels
                im.load()
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ... for bad files
        return (0, 0), f"cannot read image '{rec.path}' (image id {rec.image_id}): {type(e).__name__}: {e}"
    return size, None


def _size_problem(rec: ImageRecord, size: tuple[int, int]) -> str | None:
    if size == (rec.width, rec.height):
        return None
    return (f"image '{rec.path}' (image id {rec.image_id}) is {size[0]}x{size[1]} pixels but its annotation says "
            f"{rec.width}x{rec.height}")


def _read(store: Path) -> dict[str, list[int]]:
    try:
        data = json.loads(store.read_text())
        return data["images"] if data.get("version") == 1 else {}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}  # no cache yet, or a damaged one: verify again


def _write(store: Path, images: dict[str, list[int]]) -> None:
    """Replace the cache file atomically; a cache that cannot be written only costs time."""
    with contextlib.suppress(OSError):
        store.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(store) as tmp:
            tmp.write_text(json.dumps({"version": 1, "images": images}))
