"""The decoded-image cache: the same batches as decoding every epoch, built once, rebuilt when a file changes."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from ablate.data import dataset as dataset_module
from ablate.data import decoded
from ablate.data.build import build_data
from ablate.data.coco import ImageRecord, base_size
from ablate.errors import DataError
from ablate.study.config import TrialConfig

CPU = torch.device("cpu")
SIZES = [(60, 40), (50, 70), (47, 33), (64, 64), (90, 45), (40, 52)]  # (width, height)
AUGMENT = ["hflip", {"name": "mixup", "p": 0.5}, {"name": "mosaic", "p": 0.5, "size": 64}]


@pytest.fixture
def root(tmp_path):
    """Six noisy RGB PNGs of different sizes (all resized at image_size 48) and a box or two in each."""
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    images, anns = [], []
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"imgs/{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
        anns += [{"id": 2 * i + 1, "image_id": i + 1, "category_id": 1, "bbox": [3, 4, w / 2, h / 3], "iscrowd": 0},
                 {"id": 2 * i + 2, "image_id": i + 1, "category_id": 2, "bbox": [w / 3, h / 2, 12, 9], "iscrowd": 0}]
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    return tmp_path


def config(root, image_size=48, num_workers=0) -> TrialConfig:
    data = {"dataset": "coco", "root": str(root), "train_ann": "ann.json", "train_images": "imgs",
            "val_ann": "ann.json", "val_images": "imgs", "image_size": image_size, "num_workers": num_workers}
    return TrialConfig.model_validate({"data": data, "augment": AUGMENT, "train": {"batch_size": 2}})


def epochs(bundle, n=2) -> list:
    """Every batch of ``n`` train epochs and one val pass, as plain lists of tensors."""
    out = [batch for _ in range(n) for batch in bundle.train]
    return out + list(bundle.val)


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b) and a
    for (images_a, targets_a), (images_b, targets_b) in zip(a, b):
        for x, y in zip(images_a, images_b):
            assert x.shape == y.shape and torch.equal(x, y)
        for x, y in zip(targets_a, targets_b):
            assert x["image_id"] == y["image_id"]
            assert torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["labels"], y["labels"])


def files(cache) -> list[str]:
    """The cache's files, not counting its (empty) lock files."""
    folder = cache / "decoded"
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".lock") if folder.is_dir() else []


def test_the_cache_gives_the_very_batches_of_decoding_every_epoch(root, cache, monkeypatch):
    monkeypatch.setenv("ABLATE_DECODE_CACHE", "off")
    plain = epochs(build_data(config(root), seed=3, device=CPU))
    assert files(cache) == []
    monkeypatch.delenv("ABLATE_DECODE_CACHE")
    cached = build_data(config(root, num_workers=1), seed=3, device=CPU)  # workers map the file themselves
    assert cached.train.dataset.decoded is not None and cached.val.dataset.decoded is not None
    assert_same(epochs(cached), plain)
    assert sum(name.endswith(".index.npy") for name in files(cache)) == 2  # train at 48 px, val as they are


def test_a_second_trial_reads_the_cache_and_decodes_nothing(root, cache, monkeypatch):
    first = epochs(build_data(config(root), seed=1, device=CPU))
    built = files(cache)

    def no_decoding(path, image_id):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(dataset_module, "read_image", no_decoding)
    assert_same(epochs(build_data(config(root), seed=1, device=CPU)), first)
    assert files(cache) == built


def test_an_edited_image_or_another_size_makes_a_new_file(root, cache):
    build_data(config(root), seed=0, device=CPU)
    before = set(files(cache))
    Image.new("RGB", SIZES[0], (9, 99, 199)).save(root / "imgs/0.png")  # same size, new pixels and mtime
    bundle = build_data(config(root), seed=0, device=CPU)
    assert len(set(files(cache)) - before) == 4  # a train and a val file, each with its index
    image, _ = bundle.val.dataset[0]
    assert image[:, 0, 0].mul(255).round().tolist() == [9, 99, 199]
    build_data(config(root, image_size=40), seed=0, device=CPU)
    assert len(set(files(cache)) - before) == 6  # only train changes with image_size


def test_a_pixel_file_removed_by_a_cleaner_is_built_again(root, cache):
    first = epochs(build_data(config(root), seed=2, device=CPU))
    (pixels,) = [p for p in (cache / "decoded").glob("*.u8") if p.stat().st_size == first_size(root)]
    pixels.unlink()
    again = build_data(config(root), seed=2, device=CPU)
    assert pixels.is_file() and again.train.dataset.decoded is not None
    assert_same(epochs(again), first)


def first_size(root) -> int:
    """Bytes of the train split's file at image_size 48: every image resized to a shorter side of 48."""
    return sum(3 * h * w for h, w in (base_size(height, width, 48) for width, height in SIZES))


def test_an_unreadable_image_fails_the_build_by_name_and_leaves_no_file(root, cache):
    (root / "imgs/2.png").write_bytes((root / "imgs/2.png").read_bytes()[:-40])
    with pytest.raises(DataError, match=r"cannot read image '.*2\.png' \(image id 3\)"):
        build_data(config(root), seed=0, device=CPU)
    assert files(cache) == []


def records(root) -> list[ImageRecord]:
    return [ImageRecord(image_id=i + 1, path=str(root / f"imgs/{i}.png"), width=w, height=h,
                        boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64))
            for i, (w, h) in enumerate(SIZES)]


def test_two_builders_at_once_decode_each_image_once(root, cache):
    recs, calls, results = records(root), [], []
    ds = dataset_module.DetectionDataset(recs, image_size=48)

    def decode(i):
        calls.append(i)
        threading.Event().wait(0.02)  # long enough for the other to reach the lock
        return ds.decode(i)

    def trial():  # flock conflicts between open files even within one process
        results.append(decoded.open_or_build(cache / "decoded", recs, 48, decode))

    threads = [threading.Thread(target=trial) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == list(range(len(recs)))
    a, b = results
    for i in range(len(recs)):
        assert torch.equal(a[i], b[i]) and torch.equal(a[i], ds.decode(i))


def test_a_split_too_big_for_the_disk_is_decoded_every_epoch(root, cache, monkeypatch, caplog):
    monkeypatch.setattr(decoded, "FREE_MARGIN", 1 << 62)
    with caplog.at_level(logging.WARNING, logger="ablate.data"):
        bundle = build_data(config(root), seed=0, device=CPU)
    assert bundle.train.dataset.decoded is None and len(list(bundle.train)) == 3
    assert "decoding every epoch instead" in caplog.text and "ann.json images at 48 px" in caplog.text
    assert files(cache) == []
