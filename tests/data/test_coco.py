"""COCO loading: the happy path, and every kind of real-world mess repaired-and-counted or named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ablate.data.coco import CLIPPED, DEGENERATE, OUTSIDE, load_coco
from ablate.data.dataset import DetectionDataset, collate
from ablate.errors import DataError


def test_loads_a_small_coco_file(coco):
    ann, images = coco()
    data = load_coco(ann, images)
    # labels follow sorted category ids: 3 (cat) -> 0, 7 (dog) -> 1
    assert data.classes == ["cat", "dog"] and data.cat_ids == [3, 7]
    assert [r.image_id for r in data.records] == [10, 11]
    a, b = data.records
    assert a.path == str(images / "a.png") and (a.width, a.height) == (40, 30)
    np.testing.assert_array_equal(a.boxes, [[2, 3, 12, 11], [20, 10, 25, 15]])  # xywh -> xyxy
    np.testing.assert_array_equal(a.labels, [1, 0])
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    assert data.repairs == {}


def test_crowd_is_evaluated_but_not_trained_on(coco):
    data = load_coco(*coco())
    assert len(data.records[1].boxes) == 0 and len(data.records[1].labels) == 0
    crowd = [a for a in data.gt["annotations"] if a["image_id"] == 11]
    assert crowd == [{"id": 3, "image_id": 11, "category_id": 3, "bbox": [0.0, 0.0, 12.0, 12.0],
                      "area": 144.0, "iscrowd": 1}]


def test_ground_truth_ids_start_at_one(coco, base):
    # pycocotools' matcher reads a ground-truth id of 0 as "unmatched"
    base["annotations"][0]["id"] = 0
    data = load_coco(*coco(base))
    assert [a["id"] for a in data.gt["annotations"]] == [1, 2, 3]


@pytest.mark.parametrize(
    ("bbox", "kind", "kept"),
    [
        ([-5, 20, 15, 20], CLIPPED, [0, 20, 10, 30]),  # left and bottom edges outside a 40x30 image
        ([30, 5, 0, 10], DEGENERATE, None),  # zero width
        ([30, 5, 10, -2], DEGENERATE, None),  # negative height
        ([45, 5, 10, 10], OUTSIDE, None),  # right of the image
    ],
)
def test_boxes_are_clipped_or_dropped_and_counted(coco, base, bbox, kind, kept):
    base["annotations"].append({"id": 9, "image_id": 11, "category_id": 7, "bbox": bbox, "iscrowd": 0})
    data = load_coco(*coco(base))
    assert data.repairs == {kind: 1}
    boxes = data.records[1].boxes
    if kept is None:
        assert len(boxes) == 0 and 9 not in [a["id"] for a in data.gt["annotations"]]
    else:
        np.testing.assert_array_equal(boxes, [kept])
        assert data.gt["annotations"][-1]["bbox"] == [0.0, 20.0, 10.0, 10.0]


def test_missing_image_file_is_named_before_training(coco):
    ann, images = coco()
    (images / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png.*image id 11") as e:
        load_coco(ann, images)
    assert str(ann) in str(e.value)


def _break(base, section, index, **changes):
    base[section][index].update(changes)
    return base


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda b: _break(b, "annotations", 1, image_id=99), r"annotation id 2 refers to image_id 99"),
        (lambda b: _break(b, "annotations", 2, category_id=5), r"annotation id 3 has category_id 5"),
        (lambda b: _break(b, "images", 1, id=10), r"duplicate image id 10"),
        (lambda b: _break(b, "annotations", 1, id=1), r"duplicate annotation id 1"),
        (lambda b: _break(b, "categories", 1, id=7), r"duplicate category id 7"),
        (lambda b: _break(b, "images", 0, width="40"), r"image id 10: 'width' must be an integer"),
        (lambda b: _break(b, "annotations", 0, bbox=[1, 2, 3]), r"annotation id 1: 'bbox' must be 4 finite"),
        (lambda b: _break(b, "annotations", 0, category_id=None), r"annotation id 1: 'category_id' must be an"),
        (lambda b: {**b, "images": {"id": 1}}, r"'images' must be a list, got a object"),
        (lambda b: {**b, "annotations": [1, 2]}, r"annotations\[0\] must be an object"),
        (lambda b: {k: v for k, v in b.items() if k != "images"}, r"missing key 'images'"),
        (lambda b: {k: v for k, v in b.items() if k != "annotations"}, r"missing key 'annotations'"),
        (lambda b: {k: v for k, v in b.items() if k != "categories"}, r"missing key 'categories'"),
        (lambda b: [b], r"top level is a list"),
        (lambda b: {}, r"empty JSON object"),
    ],
)
def test_broken_records_name_the_file_and_the_record(coco, base, change, match):
    ann, images = coco(base)  # images for the valid file, then break the json
    ann.write_text(json.dumps(change(base)))
    with pytest.raises(DataError, match=match) as e:
        load_coco(ann, images)
    assert str(ann) in str(e.value)


def test_empty_file_and_invalid_json(coco):
    ann, images = coco("  \n")
    with pytest.raises(DataError, match=r"ann\.json: empty file"):
        load_coco(ann, images)
    ann.write_text('{\n  "images": [],\n  "annotations": [,]\n}')
    with pytest.raises(DataError, match=r"ann\.json: invalid JSON at line 3, column 19"):
        load_coco(ann, images)
    with pytest.raises(DataError, match=r"annotation file not found: .*nope\.json"):
        load_coco(ann.parent / "nope.json", images)


def test_val_uses_the_train_label_space(coco, base):
    train = load_coco(*coco())
    base["annotations"][0]["category_id"] = 4  # not among the train categories 3 and 7
    base["categories"].append({"id": 4, "name": "cow"})
    with pytest.raises(DataError, match=r"annotation id 1 has category_id 4.*ids: 3, 7"):
        load_coco(*coco(base, name="val.json"), categories=train.categories)


def test_truncated_image_is_a_data_error_from_a_worker(coco):
    ann, images = coco()
    data = load_coco(ann, images)
    png = images / "b.png"
    png.write_bytes(png.read_bytes()[:-30])  # cut off the image data's end
    loader = DataLoader(DetectionDataset(data.records), batch_size=1, num_workers=1, collate_fn=collate)
    with pytest.raises(DataError, match=r"b\.png' \(image id 11\)"):
        for _ in loader:
            pass


def test_dataset_yields_plain_float_images_and_targets(coco):
    data = load_coco(*coco())
    image, target = DetectionDataset(data.records)[0]
    assert type(image) is torch.Tensor and image.dtype == torch.float32 and image.shape == (3, 30, 40)
    assert 0 <= image.min() and image.max() <= 1
    assert type(target["boxes"]) is torch.Tensor and target["boxes"].tolist() == [[2, 3, 12, 11], [20, 10, 25, 15]]
    assert target["labels"].tolist() == [1, 0] and target["image_id"] == 10
