"""The data pre-flight: each dataset checked once, every image decoded once and then remembered."""

from __future__ import annotations

import os

import pytest

from ablate.data import check
from ablate.data.check import check_data, check_images
from ablate.data.coco import load_coco
from ablate.errors import DataError
from ablate.study.config import TrialConfig


def _config(tmp_path, **changes) -> TrialConfig:
    data = {"dataset": "coco", "root": str(tmp_path), "train_ann": "ann.json", "val_ann": "ann.json",
            "train_images": "images", "val_images": "images"}
    return TrialConfig.model_validate({"data": data, **changes})


def test_images_are_decoded_once_then_remembered_by_size_and_mtime(coco, tmp_path):
    split = load_coco(*coco())
    cache = tmp_path / "cache"
    assert check_images(split, cache=cache) == 2
    assert check_images(split, cache=cache) == 0  # remembered
    b = tmp_path / "images" / "b.png"
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))
    assert check_images(split, cache=cache) == 1  # touched: decoded again
    assert len(list((cache / "verified").glob("*.json"))) == 1


def test_an_image_damaged_after_it_was_verified_is_caught(coco, tmp_path):
    split = load_coco(*coco())
    cache = tmp_path / "cache"
    check_images(split, cache=cache)
    b = tmp_path / "images" / "b.png"
    b.write_bytes(b.read_bytes()[:40])
    with pytest.raises(DataError, match=r"ann\.json: 1 of 2 images cannot be used: cannot read image '.*b\.png' "
                                        r"\(image id 11\)"):
        check_images(split, cache=cache)


def test_bad_images_are_listed_together_and_sizes_compared(coco, tmp_path, png):
    split = load_coco(*coco())
    (tmp_path / "images" / "a.png").write_text("not an image")
    png("images/b.png", 20, 20)  # the annotation says 40x30
    with pytest.raises(DataError) as e:
        check_images(split, cache=tmp_path / "cache")
    message = str(e.value)
    assert "2 of 2 images cannot be used" in message and "(image id 10): UnidentifiedImageError" in message
    assert "(image id 11) is 20x20 pixels but its annotation says 40x30" in message


def test_a_damaged_cache_only_costs_a_second_check(coco, tmp_path):
    split = load_coco(*coco())
    cache = tmp_path / "cache"
    check_images(split, cache=cache)
    (store,) = (cache / "verified").glob("*.json")
    store.write_text("{not json")
    assert check_images(split, cache=cache) == 2


def test_progress_is_printed_when_it_takes_long(coco, tmp_path, monkeypatch):
    monkeypatch.setattr(check, "PROGRESS_S", 0.0)
    lines = []
    check_images(load_coco(*coco()), cache=tmp_path / "cache", log=lines.append)
    assert any("checking the images of" in line and "2/2 decoded" in line for line in lines), lines
    assert "the next run skips them" in lines[-1]


def test_each_distinct_dataset_is_checked_once_and_shapes_not_at_all(coco, tmp_path):
    coco()
    configs = [_config(tmp_path), _config(tmp_path, data={**_config(tmp_path).data.model_dump(), "image_size": 256}),
               _config(tmp_path, train={"epochs": 3}), TrialConfig()]
    done = check_data(configs, cache_dir=tmp_path / "cache")
    assert (done.datasets, done.images, done.decoded, done.warnings) == (1, 4, 2, 0)  # train and val: the same file
