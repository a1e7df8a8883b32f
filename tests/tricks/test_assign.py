"""The assigners on tiny exact cases (as detectron2's test_matcher: hand-written boxes, known answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.tricks.assign import ASSIGNERS
from ablate.tricks.registry import build


def assign(name: str, boxes, strides, level_counts, gt, **params):
    fn = build(ASSIGNERS, name, "assigner", params)
    return fn(torch.tensor(boxes, dtype=torch.float32), torch.tensor(strides, dtype=torch.float32), level_counts,
              torch.tensor(gt, dtype=torch.float32)).tolist()


def test_max_iou_positive_ignored_background_and_the_best_anchor_of_a_lonely_gt():
    # anchor IoUs with GT 0 [0, 0, 10, 10]: 1.0, 0.45 (between 0.4 and 0.5: ignored), 0.0
    boxes = [[0, 0, 10, 10], [0, 0, 10, 4.5], [20, 20, 30, 30], [19, 19, 29, 29]]
    gt = [[0, 0, 10, 10], [20, 20, 29, 29]]  # GT 1's best anchor (#3, IoU 0.81) is positive; #2 (IoU 0.66) too
    assert assign("max_iou", boxes, [8] * 4, [4], gt) == [0, -2, 1, 1]
    # low_quality: a GT whose best IoU (0.44 here, between the thresholds) is under fg_iou still gets that anchor
    lonely = ([[0, 0, 10, 10], [0, 0, 30, 30]], [8, 8], [2], [[0, 0, 20, 20]])  # IoUs 0.25 and 0.44
    assert assign("max_iou", *lonely) == [-1, 0]
    assert assign("max_iou", *lonely, low_quality=False) == [-1, -2]
    assert assign("max_iou", *lonely, fg_iou=0.7, bg_iou=0.2, low_quality=False) == [-2, -2]


def test_atss_threshold_is_mean_plus_std_of_the_nearest_candidates():
    # level 1: four 10 px anchors; level 2: one 20 px anchor.  GT [0, 0, 12, 11], centre (6, 5.5).
    boxes = [[0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [10, 10, 20, 20], [0, 0, 20, 20]]
    gt = [[0, 0, 12, 11]]
    # topk 2: anchors 0 and 1 on level 1 (centre distances 1.1 and 9.0), anchor 4 on level 2 (its only one)
    iou = np.array([100 / 132, 20 / 212, 132 / 400])
    threshold = iou.mean() + iou.std(ddof=1)  # 0.394 + 0.336 = 0.730
    assert iou[0] >= threshold > iou[2] > iou[1]
    assert assign("atss", boxes, [8, 8, 8, 8, 16], [4, 1], gt, topk=2) == [0, -1, -1, -1, -1]
    # with topk 1 the candidates are anchors 0 and 4: threshold 0.544 + 0.303 = 0.847 > 0.758, nothing passes
    two = np.array([100 / 132, 132 / 400])
    assert two.mean() + two.std(ddof=1) > two[0]
    assert assign("atss", boxes, [8, 8, 8, 8, 16], [4, 1], gt, topk=1) == [-1] * 5


def test_atss_needs_the_centre_inside_and_resolves_overlaps_by_iou():
    boxes = [[0, 0, 10, 10], [100, 100, 110, 110], [200, 0, 210, 10]]
    # GT 0 contains anchor 0's centre; GT 1 [6, 6, 16, 16] overlaps anchor 0 less (IoU 16/184) than GT 0
    gt = [[0, 0, 10, 10], [6, 6, 16, 16], [4, 4, 9, 9]]
    matched = assign("atss", boxes, [8, 8, 8], [3], gt, topk=1)
    assert matched[0] == 0  # positive for GT 0 (IoU 1) and GT 2 (IoU 0.25): the larger IoU wins
    # GT 1's only candidate is anchor 0, whose centre (5, 5) lies outside it: GT 1 gets no anchor
    assert 1 not in matched and matched[1:] == [-1, -1]


def test_fcos_ranges_scale_ranges_centre_sampling_and_the_smallest_gt():
    # points (the boxes' centres) at (4, 4) on stride 8 and (8, 8) on stride 16
    boxes = [[0, 0, 8, 8], [0, 0, 16, 16]]
    small, big = [0, 0, 20, 20], [0, 0, 120, 120]  # largest distance from (4,4): 16 (< 64: P3); from (8,8): 112
    assert assign("fcos_ranges", boxes, [8, 16], [1, 1], [small], center_radius=0) == [0, -1]
    # the big box reaches 116 from (4, 4): beyond P3's 64, and (8, 8) is P4's, whose range (64, 128) holds 112
    assert assign("fcos_ranges", boxes, [8, 16], [1, 1], [big], center_radius=0) == [-1, 0]
    # centre sampling: (4, 4) is 56 px from the big box's centre (60, 60), beyond 1.5 x 16 on P4 too
    assert assign("fcos_ranges", boxes, [8, 16], [1, 1], [big], center_radius=1.5) == [-1, -1]
    # both GTs hold the first point within its range: the smaller one wins
    assert assign("fcos_ranges", boxes, [8, 8], [2], [[0, 0, 30, 30], small], center_radius=0)[0] == 1


@pytest.mark.parametrize("name", list(ASSIGNERS))
def test_no_ground_truth_is_all_background(name):
    assert assign(name, [[0, 0, 8, 8], [8, 8, 16, 16]], [8, 8], [2], torch.zeros(0, 4).tolist()) == [-1, -1]
