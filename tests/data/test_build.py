"""build_data: the batch contract, determinism, augmentations with extras, loader settings, real files."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from ablate.data.build import build_data
from ablate.engine.coco_eval import BACKENDS, coco_index, coco_summary
from ablate.errors import DataError
from ablate.study.config import TrialConfig

CPU = torch.device("cpu")


def config(augment=("hflip",), batch_size=4, **data) -> TrialConfig:
    data = {"dataset": "shapes", "shapes": {"train_images": 10, "val_images": 6}, **data}
    return TrialConfig.model_validate({"data": data, "augment": list(augment), "train": {"batch_size": batch_size}})


def first_batch(cfg, seed=0, **kw):
    return next(iter(build_data(cfg, seed=seed, device=CPU, **kw).train))


def same(a, b) -> bool:
    (ia, ta), (ib, tb) = a, b
    return (all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ia, ib))
            and all(x["image_id"] == y["image_id"] and torch.equal(x["boxes"], y["boxes"])
                    and torch.equal(x["labels"], y["labels"]) for x, y in zip(ta, tb)))


def check_batch(images, targets, n_classes, size=None):
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets)
    for image, target in zip(images, targets):
        assert type(image) is torch.Tensor and image.dtype == torch.float32 and image.shape[0] == 3
        assert size is None or tuple(image.shape[1:]) == size
        assert 0.0 <= image.min() and image.max() <= 1.0
        boxes, labels = target["boxes"], target["labels"]
        assert type(boxes) is torch.Tensor and boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4)
        assert type(labels) is torch.Tensor and labels.dtype == torch.int64
        assert ((0 <= labels) & (labels < n_classes)).all()
        h, w = image.shape[1:]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert isinstance(target["image_id"], int)


def test_shapes_batches_follow_the_contract():
    bundle = build_data(config(), seed=0, device=CPU)
    assert bundle.classes == ["square", "circle", "triangle", "diamond", "hexagon", "cross"]
    assert bundle.cat_ids == [1, 2, 3, 4, 5, 6] and bundle.warnings == {}
    assert (bundle.num_train, bundle.num_val) == (10, 6)
    train = list(bundle.train)
    assert [len(b[0]) for b in train] == [4, 4]  # 10 images, batch 4: the short last batch is dropped
    for images, targets in train:
        check_batch(images, targets, 6, size=(192, 192))
    val = list(bundle.val)
    assert [len(b[0]) for b in val] == [4, 2]  # val keeps every image, in file order
    assert [t["image_id"] for _, ts in val for t in ts] == [1, 2, 3, 4, 5, 6]
    for images, targets in val:
        check_batch(images, targets, 6, size=(192, 192))


def test_same_seed_same_batches_other_seed_other_batches():
    cfg = config(augment=["hflip", "photometric"])
    assert same(first_batch(cfg, seed=0), first_batch(cfg, seed=0))
    assert not same(first_batch(cfg, seed=0), first_batch(cfg, seed=1))


def test_batches_do_not_depend_on_workers_or_the_global_rng():
    torch.manual_seed(123)
    a = first_batch(config(augment=["hflip", "photometric"]))
    torch.manual_seed(456)
    b = first_batch(config(augment=["hflip", "photometric"], num_workers=1))
    assert same(a, b)


def test_restoring_the_generator_replays_the_epoch():
    bundle = build_data(config(augment=["hflip", "photometric"]), seed=0, device=CPU)
    state = bundle.generator.get_state()
    epoch = list(bundle.train)
    assert not same(epoch[0], next(iter(bundle.train)))  # the next epoch is another order
    bundle.generator.set_state(state)
    assert all(same(a, b) for a, b in zip(epoch, bundle.train))


@pytest.mark.parametrize("augment", [
    [{"name": "mosaic", "p": 1.0, "size": 160}],
    [{"name": "mixup", "p": 1.0}],
    ["hflip", {"name": "copy_paste", "p": 1.0, "n_sources": 2}, {"name": "mosaic", "p": 1.0, "size": 160}],
])
def test_augmentations_with_extras_run_through_the_loader(augment):
    images, targets = first_batch(config(augment=augment))
    mosaic = any(isinstance(a, dict) and a["name"] == "mosaic" for a in augment)
    check_batch(images, targets, 6, size=(160, 160) if mosaic else (192, 192))


def test_pin_memory_follows_the_device():
    assert build_data(config(), seed=0, device=CPU).train.pin_memory is False
    assert build_data(config(), seed=0, device=torch.device("cuda")).train.pin_memory is True
    assert build_data(config(pin_memory=True), seed=0, device=CPU).val.pin_memory is True


def test_worker_settings_reach_the_loaders():
    bundle = build_data(config(num_workers=2, persistent_workers=True, prefetch_factor=3), seed=0, device=CPU)
    for loader in (bundle.train, bundle.val):
        assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (2, True, 3)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_val_gt_scores_perfect_detections_as_one(backend):
    bundle = build_data(config(), seed=0, device=CPU)
    val_coco = coco_index(bundle.val_gt, backend)
    dets = [{"image_id": t["image_id"], "category_id": bundle.cat_ids[int(label)], "score": 1.0,
             "bbox": [x0, y0, x1 - x0, y1 - y0]}
            for _, targets in bundle.val for t in targets
            for (x0, y0, x1, y1), label in zip(t["boxes"].tolist(), t["labels"])]
    stats = coco_summary(val_coco, dets, backend)
    assert stats["mAP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0), stats


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_building_and_indexing_val_gt_prints_nothing(capsys, backend):
    coco_index(build_data(config(), seed=0, device=CPU).val_gt, backend)
    assert capsys.readouterr().out == ""


def _coco_root(tmp_path, png, width):
    root = tmp_path / "root"
    png("root/imgs/a.png", width, 40)
    ann = {"images": [{"id": 5, "file_name": "a.png", "width": width, "height": 40}],
           "annotations": [{"id": 1, "image_id": 5, "category_id": 2, "bbox": [40, 10, 30, 20], "iscrowd": 0}],
           "categories": [{"id": 2, "name": "thing"}]}
    (root / "ann.json").write_text(json.dumps(ann))
    return root


@pytest.fixture
def coco_root(tmp_path, png):
    """A COCO set under tmp_path/root: one 60x40 image with a box past its right edge."""
    return _coco_root(tmp_path, png, 60)


def test_coco_paths_resize_and_counted_warnings(coco_root, caplog):
    cfg = config(dataset="coco", root=str(coco_root), train_ann="ann.json", train_images="imgs",
                 val_ann=str(coco_root / "ann.json"), val_images=str(coco_root / "imgs"), image_size=96)
    with caplog.at_level(logging.WARNING, logger="ablate.data"):
        bundle = build_data(config(augment=[], batch_size=2, **cfg.data.model_dump(exclude={"shapes"})),
                            seed=0, device=CPU)
    assert bundle.classes == ["thing"] and bundle.cat_ids == [2]
    assert bundle.warnings == {"boxes clipped to the image": 2}  # once in train, once in val
    assert sum("boxes clipped to the image: 1" in r.getMessage() for r in caplog.records) == 2
    (image,), (target,) = next(iter(bundle.train))
    assert image.shape == (3, 96, 144)  # shorter side to 96, aspect kept
    assert target["boxes"].tolist() == [[96.0, 24.0, 144.0, 72.0]]  # clipped to x1 = 60, then scaled x2.4
    (image,), (target,) = next(iter(bundle.val))
    assert image.shape == (3, 40, 60) and target["boxes"].tolist() == [[40.0, 10.0, 60.0, 30.0]]
    assert bundle.val_gt["annotations"][0]["bbox"] == [40.0, 10.0, 20.0, 20.0]


def test_longer_side_is_capped(tmp_path, png):
    # an 80x40 image at image_size 96 would be 192 wide; 1333/800 * 96 = 160 caps it
    coco_root = _coco_root(tmp_path, png, 80)
    cfg = config(augment=[], batch_size=2, dataset="coco", root=str(coco_root), train_ann="ann.json",
                 train_images="imgs", val_ann="ann.json", val_images="imgs", image_size=96)
    (image,), _ = next(iter(build_data(cfg, seed=0, device=CPU).train))
    assert image.shape == (3, 80, 160)


def test_unreadable_image_is_a_data_error_through_workers(coco_root, monkeypatch):
    monkeypatch.setenv("ABLATE_DECODE_CACHE", "0")  # decoded every epoch: the worker reads the broken file
    cfg = config(augment=[], batch_size=2, dataset="coco", root=str(coco_root), train_ann="ann.json",
                 train_images="imgs", val_ann="ann.json", val_images="imgs", num_workers=1)
    bundle = build_data(cfg, seed=0, device=CPU)  # all files exist: loading succeeds
    png = coco_root / "imgs/a.png"
    png.write_bytes(png.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"a\.png' \(image id 5\)"):
        next(iter(bundle.train))


def test_missing_coco_file_fails_at_build(coco_root):
    cfg = config(dataset="coco", root=str(coco_root), train_ann="ann.json", train_images="imgs",
                 val_ann="nope.json", val_images="imgs")
    with pytest.raises(DataError, match=r"annotation file not found: .*nope\.json"):
        build_data(cfg, seed=0, device=CPU)
