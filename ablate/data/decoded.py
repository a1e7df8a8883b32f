"""Decode once, train many: a split's decoded, base-resized images in one memory-mapped file.

Every trial of a study reads the same images, and each used to decode and resize every
image every epoch.  The first trial on a node to need a split decodes and base-resizes it
once into ``<cache>/decoded/<key>.u8`` (raw uint8 [3, H, W] pixels, one image after the
other) with ``<key>.index.npy`` (offset, height, width per record); any other trial asking
for it meanwhile waits on ``<key>.lock`` and then maps the file read-only, so every trial
process on the node shares the same pages through the OS page cache.  The key hashes the
image paths with their byte sizes and mtimes, the annotated sizes and the resize setting:
an edited image or another ``image_size`` makes a new file.  Random augmentation happens
after the cache, per sample, as before: a trial's batches are bit for bit the same with or
without it.

``$ABLATE_CACHE`` (default ``~/.cache/ablate``) holds the folder; ``ABLATE_DECODE_CACHE=0``
turns the cache off (every image decoded every epoch, as before).  A split that would not
fit on the cache's disk, or a write that fails, falls back to decoding with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ablate.atomic import atomic_path
from ablate.data.coco import ImageRecord, base_size
from ablate.errors import DataError

log = logging.getLogger(__name__)

VERSION = 1  # of the file layout and the resize; part of the key
OFF = ("0", "false", "off", "no")
FREE_MARGIN = 1 << 30  # bytes the cache leaves free on its disk
PROGRESS_S = 10.0  # seconds between progress lines while a split is decoded


def enabled() -> bool:
    """False when ``$ABLATE_DECODE_CACHE`` is 0, false, off or no."""
    return os.environ.get("ABLATE_DECODE_CACHE", "1").strip().lower() not in OFF


def cache_key(records: Sequence[ImageRecord], image_size: int | None) -> str:
    """24 hex digits over the layout version, the resize setting and each image's path, bytes, mtime and size."""
    h = hashlib.sha256(f"v{VERSION} {image_size}\n".encode())
    for rec in records:
        try:
            st = os.stat(rec.path)
        except OSError as e:
            raise DataError(f"cannot read image '{rec.path}' (image id {rec.image_id}): {e.strerror}") from None
        h.update(f"{rec.path}\t{st.st_size}\t{st.st_mtime_ns}\t{rec.height}\t{rec.width}\n".encode())
    return h.hexdigest()[:24]


class DecodedImages:
    """Read-only view of a built cache file; ``images[i]`` is record ``i`` as uint8 [3, H, W].

    Pickles as its two paths (the DataLoader's workers map the file themselves).
    """

    def __init__(self, pixels: Path, index: Path):
        self.pixels_path, self.index_path = pixels, index
        self.index = np.load(index)  # int64 [n, 3]: offset, height, width
        self._pixels: np.memmap | None = None

    def whole(self) -> bool:
        """True when the pixel file holds exactly what the index says (a cache cleaner may remove one file)."""
        offset, h, w = (int(v) for v in self.index[-1])
        try:
            return self.pixels_path.stat().st_size == offset + 3 * h * w
        except OSError:
            return False

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._pixels is None:
            self._pixels = np.memmap(self.pixels_path, dtype=np.uint8, mode="r")
        offset, h, w = (int(v) for v in self.index[i])
        return torch.from_numpy(np.array(self._pixels[offset:offset + 3 * h * w])).view(3, h, w)

    def __getstate__(self) -> dict:
        return {"pixels": self.pixels_path, "index": self.index_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["pixels"], state["index"])


def open_or_build(folder: Path, records: Sequence[ImageRecord], image_size: int | None,
                  decode: Callable[[int], torch.Tensor], *, what: str = "images") -> DecodedImages | None:
    """The cache of ``records`` at ``image_size``, built with ``decode(i)`` (uint8 [3, H, W]) if missing.

    Returns None (decode every epoch) when the split would not fit on the disk or the file cannot be
    written; a ``DataError`` from ``decode`` (an unreadable image) propagates, naming the file.
    """
    if not records:
        return None
    key = cache_key(records, image_size)
    pixels, index = folder / f"{key}.u8", folder / f"{key}.index.npy"
    if (images := _finished(pixels, index)) is not None:
        return images
    sizes = [(rec.height, rec.width) if image_size is None else base_size(rec.height, rec.width, image_size)
             for rec in records]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / f"{key}.lock", what):
            if _finished(pixels, index) is None:
                need, free = 3 * sum(h * w for h, w in sizes), shutil.disk_usage(folder).free
                if need > free - FREE_MARGIN:
                    log.warning("decoded cache: %s would take %.1f GiB and %s has %.1f GiB free: decoding every "
                                "epoch instead", what, need / 2**30, folder, free / 2**30)
                    return None
                _build(pixels, index, sizes, decode, what)
    except OSError as e:  # a full disk, a read-only cache folder: train on, uncached
        log.warning("decoded cache: cannot write %s (%s): decoding every epoch instead", folder, e)
        return None
    return DecodedImages(pixels, index)


def _finished(pixels: Path, index: Path) -> DecodedImages | None:
    """The built cache, or None while it is not built or after a part of it was removed."""
    if not index.is_file():  # only a finished build ever has its index (written last)
        return None
    images = DecodedImages(pixels, index)
    return images if images.whole() else None


@contextlib.contextmanager
def _locked(path: Path, what: str) -> Iterator[None]:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("decoded cache: waiting for another process that decodes these %s", what)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(pixels: Path, index: Path, sizes: list[tuple[int, int]], decode: Callable[[int], torch.Tensor],
           what: str) -> None:
    rows = np.zeros((len(sizes), 3), dtype=np.int64)
    offset, start = 0, time.monotonic()
    last = start
    with atomic_path(pixels) as tmp, open(tmp, "wb") as f:
        for i, (h, w) in enumerate(sizes):
            image = decode(i)
            if tuple(image.shape) != (3, h, w):  # decode and base_size disagree: a bug, not the data
                raise RuntimeError(f"decoded cache: image {i} is {tuple(image.shape)}, expected (3, {h}, {w})")
            f.write(image.contiguous().numpy().data)
            rows[i] = (offset, h, w)
            offset += 3 * h * w
            if time.monotonic() - last >= PROGRESS_S:
                last = time.monotonic()
                log.info("decoded cache: %d/%d %s decoded", i + 1, len(sizes), what)
    with atomic_path(index) as tmp, open(tmp, "wb") as f:  # the index last: it marks the build finished
        np.save(f, rows)
    log.info("decoded cache: %d %s (%.1f MiB) in %.1f s", len(sizes), what, offset / 2**20,
             time.monotonic() - start)
