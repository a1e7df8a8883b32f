import pytest
import torch
from augment_samples import BOXES, make, sample  # tests/ is on sys.path (pyproject)
from pydantic import ValidationError
from torchvision import tv_tensors
from torchvision.ops import box_iou

from ablate.tricks.augment import AUGMENTS
from ablate.tricks.augment.geometric import make_sample, tidy
from ablate.tricks.registry import UnknownTrick, build, lookup


def run(name, main=None, **params):
    aug = make(name, **params)
    return aug(main or sample(), [sample(seed=i + 1) for i in range(aug.n_extra)])


def assert_same(a, b):
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1]["boxes"], b[1]["boxes"]) and a[1]["boxes"].canvas_size == b[1]["boxes"].canvas_size
    assert torch.equal(a[1]["labels"], b[1]["labels"])


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_every_entry_keeps_the_contract(name):
    torch.manual_seed(0)
    image, target = run(name, p=1.0)
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
    boxes, labels = target["boxes"], target["labels"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    h, w = image.shape[-2:]
    assert boxes.canvas_size == (h, w)
    assert len(boxes) > 0 and len(labels) == len(boxes) and labels.dtype == torch.int64
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
    assert target["image_id"] == 0


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_every_entry_accepts_images_without_boxes(name):
    torch.manual_seed(0)
    image, target = run(name, main=sample(boxes=[], labels=()), p=1.0)
    assert target["boxes"].shape[1:] == (4,) and len(target["labels"]) == len(target["boxes"])
    assert target["boxes"].canvas_size == image.shape[-2:]


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_every_entry_is_documented(name):
    trick = AUGMENTS[name]
    assert trick.doc.strip() and "\n" not in trick.doc
    trick.params()  # a bare name means all defaults
    for field, info in trick.params.model_fields.items():
        assert info.description, f"{name}.{field} has no description"
    assert "p" in trick.params.model_fields


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_p0_returns_the_sample_unchanged(name):
    torch.manual_seed(0)
    before = sample()
    assert_same(run(name, main=before, p=0.0), sample())


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_seeded_runs_are_reproducible(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        outs.append(run(name, p=1.0))
    assert_same(*outs)


@pytest.mark.parametrize(("name", "once"), [
    ("hflip", [[43.5, 6.0, 60.0, 30.0], [4.0, 10.0, 34.0, 40.0], [0.5, 50.0, 64.0, 64.0]]),
    ("vflip", [[4.0, 34.0, 20.5, 58.0], [30.0, 24.0, 60.0, 54.0], [0.0, 0.0, 63.5, 14.0]]),
])
def test_flip_once_mirrors_and_twice_is_the_identity(name, once):
    aug, original = make(name, p=1.0), sample()
    flipped = aug(original)
    assert flipped[1]["boxes"].tolist() == once
    dim = -1 if name == "hflip" else -2
    assert torch.equal(flipped[0], original[0].flip(dim))
    assert_same(aug(flipped), original)


def test_mosaic_places_each_image_in_its_quadrant():
    # centre fixed at (64, 64): 64 x 64 inputs fit their quadrants at scale 1
    aug = make("mosaic", p=1.0, size=128, center_jitter=0.0, fill=7)
    tiles = [sample(fill=10 * (i + 1), boxes=[[2.0, 3.0, 12.0, 40.0]], labels=[i]) for i in range(4)]
    tiles[3] = sample(fill=40, boxes=[[50.0, 60.0, 64.0, 64.0], [0.0, 0.0, 0.5, 9.0]], labels=[3, 4])
    image, target = aug(tiles[0], tiles[1:])
    assert image.shape == (3, 128, 128) and target["boxes"].canvas_size == (128, 128)
    assert target["boxes"].tolist() == [
        [2.0, 3.0, 12.0, 40.0], [66.0, 3.0, 76.0, 40.0], [2.0, 67.0, 12.0, 104.0], [114.0, 124.0, 128.0, 128.0]
    ]  # the 0.5 px wide box is dropped with its label
    assert target["labels"].tolist() == [0, 1, 2, 3]
    for i, (y, x) in enumerate([(0, 0), (0, 64), (64, 0), (64, 64)]):
        assert (image[:, y:y + 64, x:x + 64] == 10 * (i + 1)).all()


def test_mosaic_scales_to_fit_and_drops_what_shrinks_away():
    aug = make("mosaic", p=1.0, size=64, center_jitter=0.0)  # quadrants of 32 x 32
    tiles = [sample(h=64, w=128, boxes=[[8.0, 8.0, 40.0, 24.0], [0.0, 0.0, 1.5, 1.5]], labels=[5, 6])] + [
        sample(boxes=[[0.0, 0.0, 64.0, 64.0]], labels=[i]) for i in range(3)]
    image, target = aug(tiles[0], tiles[1:])
    # 64 x 128 -> 16 x 32 (scale 1/4), touching the centre (32, 32) from the top left: placed at (0, 16)
    assert target["boxes"].tolist() == [
        [2.0, 18.0, 10.0, 22.0], [32.0, 0.0, 64.0, 32.0], [0.0, 32.0, 32.0, 64.0], [32.0, 32.0, 64.0, 64.0]
    ]
    assert target["labels"].tolist() == [5, 0, 1, 2]
    assert (image[:, :16, :32] == 114).all()  # uncovered canvas keeps the fill


def test_mixup_keeps_both_box_sets_and_blends():
    torch.manual_seed(0)
    main = sample(fill=100)
    other = sample(fill=200, h=128, w=64, boxes=[[0.0, 0.0, 20.0, 40.0], [10.0, 100.0, 30.0, 128.0]], labels=[7, 8])
    image, target = make("mixup", p=1.0)(main, [other])
    # the 128 x 64 extra shrinks to 64 x 32 and is padded on the right
    assert target["boxes"].tolist() == BOXES + [[0.0, 0.0, 10.0, 20.0], [5.0, 50.0, 15.0, 64.0]]
    assert target["labels"].tolist() == [1, 2, 3, 7, 8]
    lam = image[0, 0, -1].item() / 100  # right half: lam * 100 + (1 - lam) * 0
    assert 0 < lam < 1
    assert abs(image[0, 0, 0].item() - (100 * lam + 200 * (1 - lam))) <= 1.5


@pytest.mark.parametrize("max_iou", [0.0, 0.1, 0.5])
def test_copy_paste_adds_boxes_that_barely_overlap(max_iou):
    main = sample(fill=50, boxes=[[4.0, 4.0, 30.0, 30.0], [36.0, 36.0, 60.0, 60.0]], labels=[1, 2])
    other = sample(fill=200, boxes=[[0.0, 0.0, 16.0, 12.0], [20.0, 20.5, 30.0, 40.0], [40.0, 2.0, 56.0, 18.0]],
                   labels=[7, 8, 9])
    aug = make("copy_paste", p=1.0, max_iou=max_iou, max_objects=2, n_sources=1)
    added = 0
    for seed in range(10):
        torch.manual_seed(seed)
        image, target = aug(main, [other])
        boxes, labels = target["boxes"], target["labels"]
        assert torch.equal(boxes[:2], main[1]["boxes"]) and labels[:2].tolist() == [1, 2]
        new = boxes[2:]
        assert len(new) <= 2 and set(labels[2:].tolist()) <= {7, 8, 9}
        if len(new):
            assert box_iou(new, boxes[:2]).max() <= max_iou + 1e-6
            for b in new.round().int().tolist():  # pasted pixels come from the extra
                assert (image[:, b[1]:b[3], b[0]:b[2]] == 200).all()
        if len(new) == 2:
            assert box_iou(new[:1], new[1:]).max() <= max_iou + 1e-6
        added += len(new)
    assert added > 0


def test_cutout_erases_pixels_but_leaves_boxes():
    torch.manual_seed(0)
    before = sample(fill=90)
    image, target = make("cutout", p=1.0)(before)
    assert (image == 0).any() and (image == 90).any()
    assert torch.equal(target["boxes"], before[1]["boxes"]) and torch.equal(target["labels"], before[1]["labels"])


def test_tidy_clips_and_drops_degenerate_boxes_with_their_labels():
    s = sample(boxes=[[-5.0, 10.0, 20.0, 70.0], [30.0, 30.0, 30.5, 50.0], [10.0, 10.0, 20.0, 20.0]], labels=[1, 2, 3])
    _, target = tidy(s)
    assert target["boxes"].tolist() == [[0.0, 10.0, 20.0, 64.0], [10.0, 10.0, 20.0, 20.0]]
    assert target["labels"].tolist() == [1, 3]


def test_wrong_number_of_extras_is_an_error():
    with pytest.raises(ValueError, match="needs 3 extra samples, got 1"):
        make("mosaic", p=1.0)(sample(), [sample()])


@pytest.mark.parametrize(("name", "params"), [
    *[(name, {"p": 1.5}) for name in AUGMENTS],
    ("hflip", {"p": -0.1}),
    ("multiscale", {"sizes": []}),
    ("multiscale", {"sizes": [160, 0]}),
    ("multiscale", {"max_size": 0}),
    ("multiscale", {"mode": "range", "sizes": [160, 192, 224]}),
    ("multiscale", {"mode": "range", "sizes": [224, 160]}),
    ("random_crop", {"min_scale": 0.8, "max_scale": 0.5}),
    ("zoom_out", {"max_ratio": 0.5}),
    ("zoom_out", {"fill": [0, 0, 256]}),
    ("blur", {"kernel_size": 4}),
    ("blur", {"sigma_min": 3.0, "sigma_max": 1.0}),
    ("cutout", {"scale_min": 0.5, "scale_max": 0.1}),
    ("mixup", {"alpha": 0.0}),
    ("mosaic", {"size": 8}),
    ("copy_paste", {"max_iou": 1.2}),
    ("copy_paste", {"max_objects": 0}),
    ("hflip", {"prob": 0.5}),
])
def test_invalid_params_are_rejected(name, params):
    with pytest.raises(ValidationError):
        make(name, **params)


def test_misspelt_name_suggests_the_closest():
    with pytest.raises(UnknownTrick, match="did you mean 'mosaic'"):
        lookup(AUGMENTS, "mosiac", "augmentation")


def test_multiscale_range_draws_every_size_between_its_ends():
    # mmdetection's multiscale_mode='range': the shorter side is any integer in [low, high]
    torch.manual_seed(0)
    aug = build(AUGMENTS, "multiscale", "augment", {"mode": "range", "sizes": [100, 103]})
    seen = set()
    for _ in range(200):
        image, _ = aug(make_sample(torch.zeros(3, 50, 80, dtype=torch.uint8), [[0, 0, 10, 10]], [0]), [])
        seen.add(min(image.shape[-2:]))
    assert seen == {100, 101, 102, 103}
