"""cutmix, random_erasing, rotate, autoaugment, albumentations: tiny exact cases (the contract is test_augment's)."""

from __future__ import annotations

import pytest
import torch
from augment_samples import BOXES, make, sample  # tests/ is on sys.path (pyproject)
from pydantic import ValidationError
from torchvision.transforms.v2 import functional as F

from ablate.data.build import build_data
from ablate.study.config import TrialConfig
from ablate.tricks.augment.autoaugment import OPS, POLICIES
from ablate.tricks.augment.geometric import warp


def inside(boxes, h, w):
    return bool((boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
                and ((boxes[:, 2:] - boxes[:, :2]) >= 1).all())


# ---- rotate ---------------------------------------------------------------------


def test_rotating_90_degrees_moves_the_box_and_pixels_exactly():
    image, target = warp(sample(), F.rotate, 0, angle=90.0)  # counter-clockwise about (32, 32)
    # corner (x, y) -> (32 + (y - 32), 32 - (x - 32)) (v2 uses the same centre for pixels)
    assert target["boxes"].tolist() == [[6.0, 43.5, 30.0, 60.0], [10.0, 4.0, 40.0, 34.0], [50.0, 0.5, 64.0, 64.0]]
    assert torch.equal(image, torch.rot90(sample()[0], 1, dims=(-2, -1)))


def test_rotate_draws_its_angle_within_degrees():
    torch.manual_seed(0)
    same = make("rotate", p=1.0, degrees=0.0)(sample())
    assert same[1]["boxes"].tolist() == BOXES
    square = sample(boxes=[[28.0, 28.0, 36.0, 36.0]], labels=[1])  # centred: its box grows by |sin| + |cos|
    for seed in range(10):
        torch.manual_seed(seed)
        side = make("rotate", p=1.0, degrees=30.0)(square)[1]["boxes"][0, 2:].sub(28.0).max().item()
        assert 8.0 <= side * 2 - 8.0 <= 8 * (0.5 + 3 ** 0.5 / 2) + 1e-4


# ---- cutmix ---------------------------------------------------------------------


def test_cutmix_keeps_visible_boxes_of_both_samples():
    aug = make("cutmix", p=1.0, min_visible=0.25)
    aug._rect = lambda h, w: (16, 0, 48, 64)  # a full-height band: x 16..48
    main = sample(fill=50, boxes=[[0, 8, 12, 20], [10, 30, 30, 40], [20, 10, 40, 20], [12, 50, 60, 60]],
                  labels=[1, 2, 3, 4])
    # 128 x 64: resized to 64 x 64, so y halves
    other = sample(fill=200, h=128, boxes=[[0, 0, 20, 40], [20, 60, 40, 100], [40, 100, 60, 128], [50, 0, 64, 10]],
                   labels=[5, 6, 7, 8])
    image, target = aug(main, [other])
    assert target["boxes"].tolist() == [
        [0, 8, 12, 20],  # untouched
        [10, 30, 16, 40],  # right part covered over its whole height: shrinks to the visible 30%
        # [20, 10, 40, 20] is covered, dropped; the next is crossed in its middle: 1/3 shows, kept whole
        [12, 50, 60, 60],
        [20, 30, 40, 50],  # the extra's: inside the band; [0, 0, 20, 20] shows 20% in it, [50, 0, 64, 5] none
        [40, 50, 48, 64],  # 40% inside, clipped
    ]
    assert target["labels"].tolist() == [1, 2, 4, 6, 7] and target["boxes"].canvas_size == (64, 64)
    assert (image[:, :, 16:48] == 200).all() and (image[:, :, :16] == 50).all() and (image[:, :, 48:] == 50).all()


def test_cutmix_pastes_one_rectangle_with_the_boxes_inside_it():
    main, other = sample(fill=50), sample(fill=200, boxes=[[0, 0, 64, 64]], labels=[9])
    for seed in range(10):
        torch.manual_seed(seed)
        image, target = make("cutmix", p=1.0, min_visible=0.0)(main, [other])
        rows, cols = (image[0] == 200).any(1).nonzero()[:, 0], (image[0] == 200).any(0).nonzero()[:, 0]
        y0, y1, x0, x1 = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
        assert (image[:, y0:y1, x0:x1] == 200).all() and (image == 200).sum() == 3 * (y1 - y0) * (x1 - x0)
        assert inside(target["boxes"], 64, 64) and target["labels"][-1] == 9
        assert target["boxes"][-1].tolist() == [x0, y0, x1, y1]  # the extra's full-image box, clipped to the paste


# ---- random_erasing -------------------------------------------------------------


def test_object_erasing_changes_pixels_only_inside_each_box():
    before = sample(fill=90)
    for seed in range(5):
        torch.manual_seed(seed)
        image, target = make("random_erasing", p=1.0, mode="object", box_p=1.0, value=0)(before)
        assert torch.equal(target["boxes"], before[1]["boxes"]) and torch.equal(target["labels"], before[1]["labels"])
        inside_boxes = torch.zeros(64, 64, dtype=torch.bool)
        for x0, y0, x1, y1 in BOXES:
            region = image[:, int(y0):int(y1), int(x0):int(x1)]
            assert (region == 0).any()  # every box got its rectangle
            inside_boxes[int(y0):int(y1), int(x0):int(x1)] = True
        assert (image[:, ~inside_boxes] == 90).all()


def test_erasing_modes():
    torch.manual_seed(0)
    empty = sample(fill=90, boxes=[], labels=())
    assert (make("random_erasing", p=1.0, mode="object", value=0)(empty)[0] == 90).all()  # no box: nothing
    assert (make("random_erasing", p=1.0, mode="image", value=0)(empty)[0] == 0).any()
    image, _ = make("random_erasing", p=1.0, mode="both", box_p=0.0, value=0)(empty)
    assert (image == 0).any()


# ---- autoaugment ----------------------------------------------------------------


def test_every_op_of_the_policy_is_implemented():
    assert {name for sub in POLICIES["v0"] for name, _, _ in sub} <= set(OPS)
    assert all(len(sub) == 2 for sub in POLICIES["v0"]) and len(POLICIES["v0"]) == 5


def test_translate_moves_image_and_boxes_by_the_scaled_magnitude():
    torch.manual_seed(0)
    image, target = OPS["TranslateX_BBox"](sample(), 4)  # 4/10 * 250 px at 640 -> 10 px at 64
    d = 10 if target["boxes"][0, 0] > 4 else -10
    assert target["boxes"][0].tolist() == [4 + d, 6.0, 20.5 + d, 30.0]
    src = sample()[0]
    moved = image[:, :, 10:] if d > 0 else image[:, :, :-10]
    assert torch.equal(moved, src[:, :, :-10] if d > 0 else src[:, :, 10:])
    assert (image[:, :, :10] == 128).all() if d > 0 else (image[:, :, -10:] == 128).all()


def test_cutout_and_only_bboxes_ops_leave_boxes_alone():
    torch.manual_seed(0)
    before = sample(fill=90)
    image, target = OPS["Cutout"](before, 8)  # a 16 x 16 square (less at the border) of 128
    assert 0 < (image[0] == 128).sum() <= 256 and torch.equal(target["boxes"], before[1]["boxes"])
    image, target = OPS["TranslateY_Only_BBoxes"](sample(), 6, 1.0)  # every box's content shifts 12 px
    covered = torch.zeros(64, 64, dtype=torch.bool)
    for x0, y0, x1, y1 in BOXES:
        covered[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
    assert torch.equal(image[:, ~covered], sample()[0][:, ~covered]) and (image == 128).any()
    assert torch.equal(target["boxes"], before[1]["boxes"])


def test_autoaugment_keeps_boxes_inside_and_labels_aligned():
    labels = [1, 2, 3]
    for seed in range(30):
        torch.manual_seed(seed)
        image, target = make("autoaugment", p=1.0)(sample(labels=labels))
        boxes, got = target["boxes"], target["labels"].tolist()
        assert image.shape == (3, 64, 64) and inside(boxes, 64, 64) and len(got) == len(boxes)
        assert got == sorted(got) and set(got) <= set(labels)  # boxes dropped with their own labels, order kept
        for box, label in zip(boxes, got):  # each box stays near its object (translate <= 10 px, rotate <= 30 deg)
            x0, y0, x1, y1 = BOXES[label - 1]
            cx, cy = (box[0] + box[2]).item() / 2, (box[1] + box[3]).item() / 2
            assert abs(cx - (x0 + x1) / 2) < 20 and abs(cy - (y0 + y1) / 2) < 20  # any two centres are >= 32 px apart on an axis


# ---- albumentations -------------------------------------------------------------


def test_albumentations_flip_mirrors_the_boxes():
    original = sample()
    image, target = make("albumentations", transforms=[{"name": "HorizontalFlip", "p": 1.0}])(original)
    assert target["boxes"].tolist() == [[43.5, 6.0, 60.0, 30.0], [4.0, 10.0, 34.0, 40.0], [0.5, 50.0, 64.0, 64.0]]
    assert target["labels"].tolist() == [1, 2, 3] and target["image_id"] == 0
    assert torch.equal(image, original[0].flip(-1))


def test_albumentations_resize_changes_the_canvas():
    image, target = make("albumentations", transforms=[{"name": "Resize", "height": 32, "width": 16, "p": 1}])(
        sample())
    assert image.shape == (3, 32, 16) and target["boxes"].canvas_size == (32, 16)
    assert target["boxes"][0].tolist() == [1.0, 3.0, 5.125, 15.0]


def invalid(transforms):
    with pytest.raises(ValidationError) as e:
        TrialConfig.model_validate({"augment": [{"name": "albumentations", "transforms": transforms}]})
    return str(e.value)


def test_an_unknown_albumentations_name_fails_at_study_load():
    message = invalid([{"name": "HorizontalFlip"}, {"name": "HorizontalFlp", "p": 1}])
    assert ("augment[].transforms[1].name: 'HorizontalFlp' is not an albumentations transform that supports "
            "bounding boxes (did you mean 'HorizontalFlip'?)") in message
    assert "augment[].transforms[0].name: 'Normalize' is not" in invalid([{"name": "Normalize"}])  # floats out
    assert "'OverlayElements' is not" in invalid([{"name": "OverlayElements"}])  # image and mask only


def test_a_wrong_albumentations_keyword_names_the_transform_and_key():
    assert "augment[].transforms[0].prob: HorizontalFlip takes no 'prob'" in invalid([{"name": "HorizontalFlip",
                                                                                         "prob": 1}])
    message = invalid([{"name": "RandomBrightnessContrast", "brightness_limit": "bright"}])
    assert "augment[].transforms[0] (RandomBrightnessContrast)" in message and "brightness_limit" in message


# ---- through the data loader ----------------------------------------------------

NEW = [
    {"name": "cutmix", "p": 1.0},
    {"name": "random_erasing", "p": 1.0},
    {"name": "rotate", "p": 1.0},
    {"name": "autoaugment", "p": 1.0},
    {"name": "albumentations", "transforms": [{"name": "HorizontalFlip"}, {"name": "Affine", "rotate": 10, "p": 1}]},
]


def test_the_new_entries_run_through_the_loader():
    data = {"dataset": "shapes", "shapes": {"train_images": 8, "val_images": 2}}
    config = TrialConfig.model_validate({"data": data, "augment": NEW, "train": {"batch_size": 4}})
    for images, targets in build_data(config, seed=0, device=torch.device("cpu")).train:
        for image, target in zip(images, targets):
            assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
            assert len(target["boxes"]) == len(target["labels"])
            assert len(target["boxes"]) == 0 or inside(target["boxes"], *image.shape[1:])


@pytest.mark.parametrize(("name", "params"), [
    ("cutmix", {"alpha": 0.0}),
    ("cutmix", {"min_visible": 1.5}),
    ("random_erasing", {"mode": "boxes"}),
    ("random_erasing", {"scale_min": 0.5, "scale_max": 0.1}),
    ("random_erasing", {"value": 256}),
    ("rotate", {"degrees": 200}),
    ("autoaugment", {"policy": "v1"}),
    ("albumentations", {"transforms": []}),
    ("albumentations", {"transforms": [{"p": 0.5}]}),
])
def test_invalid_params_are_rejected(name, params):
    with pytest.raises(ValidationError):
        make(name, **params)
