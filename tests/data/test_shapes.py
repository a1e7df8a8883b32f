"""The synthetic shapes set: deterministic, cached, atomic, and covering every class and COCO area range."""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image

from ablate.data.coco import load_coco
from ablate.data.shapes import CLASSES, ensure_shapes

SMALL = {"train_images": 40, "val_images": 24, "image_size": 192}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return ensure_shapes(**SMALL, seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def test_same_parameters_give_identical_files(tmp_path):
    a = ensure_shapes(**SMALL, seed=3, cache_dir=tmp_path / "a")
    b = ensure_shapes(**SMALL, seed=3, cache_dir=tmp_path / "b")
    for name in ("train.json", "val.json", "train/000007.png", "val/000024.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_another_set(tmp_path):
    a = ensure_shapes(**SMALL, seed=0, cache_dir=tmp_path)
    b = ensure_shapes(**SMALL, seed=1, cache_dir=tmp_path)
    assert a != b
    assert (a / "train.json").read_bytes() != (b / "train.json").read_bytes()


def test_train_and_val_differ(shapes_root):
    assert (shapes_root / "train/000001.png").read_bytes() != (shapes_root / "val/000001.png").read_bytes()
    train, val = (json.loads((shapes_root / f"{s}.json").read_text()) for s in ("train", "val"))
    assert [a["bbox"] for a in train["annotations"][:10]] != [a["bbox"] for a in val["annotations"][:10]]


def test_second_call_reuses_the_cache(tmp_path):
    root = ensure_shapes(**SMALL, seed=0, cache_dir=tmp_path)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert ensure_shapes(**SMALL, seed=0, cache_dir=tmp_path) == root
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temporary folder left behind


def test_default_cache_is_ablate_cache(cache):
    root = ensure_shapes(train_images=2, val_images=2, image_size=192, seed=0)
    assert root.parent == cache


def test_racing_writers_leave_one_complete_copy(tmp_path):
    roots = []
    threads = [threading.Thread(target=lambda: roots.append(ensure_shapes(**SMALL, seed=5, cache_dir=tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(roots) == 2 and roots[0] == roots[1]
    assert [p.name for p in tmp_path.iterdir()] == [roots[0].name]
    assert len(list((roots[0] / "train").iterdir())) == SMALL["train_images"]
    assert len(load_coco(roots[0] / "train.json", roots[0] / "train").records) == SMALL["train_images"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_every_class_and_area_range_in_each_split(shapes_root, split):
    coco = json.loads((shapes_root / f"{split}.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASSES)
    assert {a["category_id"] for a in coco["annotations"]} == {c["id"] for c in coco["categories"]}
    areas = [a["area"] for a in coco["annotations"]]
    assert min(areas) < 32**2 and any(32**2 <= a <= 96**2 for a in areas) and max(areas) > 96**2
    per_image = {}
    for a in coco["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert len(per_image) == len(coco["images"]) and max(per_image.values()) <= 10  # 3..10 drawn, hidden ones dropped


@pytest.mark.parametrize("split", ["train", "val"])
def test_boxes_lie_inside_the_image_and_match_the_pngs(shapes_root, split):
    coco = json.loads((shapes_root / f"{split}.json").read_text())
    for img in coco["images"]:
        assert (img["width"], img["height"]) == (192, 192)
    with Image.open(shapes_root / split / coco["images"][0]["file_name"]) as im:
        assert im.size == (192, 192) and im.mode == "RGB"
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 192 and y + h <= 192
        assert a["area"] == w * h and a["iscrowd"] == 0


def test_objects_stand_out_from_the_background(shapes_root):
    # the box centre of a shape (every class covers its own centre) differs from the box corner region
    coco = json.loads((shapes_root / "val.json").read_text())
    contrasts = []
    for a in coco["annotations"][:40]:
        x, y, w, h = a["bbox"]
        with Image.open(shapes_root / "val" / f"{a['image_id']:06d}.png") as im:
            centre = im.getpixel((x + w // 2, y + h // 2))
            ring = [im.getpixel((min(191, max(0, px)), min(191, max(0, py))))
                    for px, py in ((x - 2, y - 2), (x + w + 1, y + h + 1))]
        contrasts.append(max(sum(abs(c - r) for c, r in zip(centre, p)) for p in ring))
    assert sorted(contrasts)[len(contrasts) // 2] > 60  # the median object is far from its surroundings
