"""DETR: the matcher on tiny exact cases, every catalogue loss, the query modes, and a short overfit that can fail."""

import math

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from ablate.models import build_model
from ablate.models.detr import ANCHORS, position_encoding, token_boxes
from ablate.models.detr_match import class_cost, hungarian, match, normalised, set_loss
from ablate.study.config import TrialConfig
from ablate.tricks.losses import BOX_LOSSES, CLS_LOSSES, QUALITY_LOSSES
from ablate.tricks.registry import build

ENCODER = {"anchors": "encoder", "encoder_repeat": 3, "refine_logits": True}

NUM_CLASSES = 3
SMALL = {"queries": 10, "encoder_layers": 1, "decoder_layers": 2, "heads": 4, "ffn": 32, "dropout": 0.0, "level": "p3"}


def detr(detector=None, loss=None, size=64, seed=0):
    torch.manual_seed(seed)
    config = TrialConfig.model_validate({
        "model": {"detector": {"name": "detr", **SMALL, **(detector or {})}, "width": 0.5, "channels": 16},
        "data": {"image_size": size}, "loss": loss or {}, "eval": {"score_thresh": 0.0}})
    return build_model(config, num_classes=NUM_CLASSES)


def squares(n=4, size=64, seed=1):
    """``n`` grey images with two coloured squares each (class = colour channel), and their targets."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        image, boxes = torch.full((3, size, size), 0.2), []
        for k in range(2):
            x, y = torch.randint(0, size - 24, (2,), generator=g).tolist()
            side = torch.randint(12, 24, (1,), generator=g).item()
            image[k, y:y + side, x:x + side] = 1.0
            boxes.append([x, y, x + side, y + side])
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float), "labels": torch.tensor([0, 1])})
    return images, targets


def test_hungarian_finds_the_least_total_cost():
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])  # best: 1 + 2 + 2 = 5, unique
    rows, cols = hungarian(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    rows, cols = hungarian(torch.tensor([[5.0, 1.0], [0.0, 9.0], [1.0, 0.5], [7.0, 7.0]]))  # 4 queries, 2 boxes
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(1, 0), (2, 1)]  # 0 + 0.5 beats 0 + 1 and 1 + 1


def test_match_gives_each_box_the_query_that_predicts_it():
    scale = torch.tensor([[100.0, 50.0, 100.0, 50.0]])
    gt = torch.tensor([[10.0, 10.0, 30.0, 40.0], [60.0, 5.0, 90.0, 20.0]])  # xyxy pixels
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], normalised(gt[1:], scale)[0].tolist(), [0.9, 0.9, 0.1, 0.1],
                          normalised(gt[:1], scale)[0].tolist()])[None]  # [1, 4, 4]: query 3 is box 0, query 1 box 1
    logits = torch.full((1, 4, NUM_CLASSES), -4.0)
    logits[0, 3, 2] = logits[0, 1, 0] = 4.0
    targets = [{"boxes": gt, "labels": torch.tensor([2, 0])}]
    focal = build(CLS_LOSSES, "focal", "cls")
    [(queries, found)] = match(logits, boxes, targets, scale, cls_loss=focal, cost_class=2.0, cost_l1=5.0,
                               cost_giou=2.0)
    assert dict(zip(found.tolist(), queries.tolist())) == {0: 3, 1: 1}
    # the box cost alone decides without the class cost, and the class cost alone with swapped classes
    logits[0, 3, 2], logits[0, 1, 0], logits[0, 0, 2], logits[0, 2, 0] = -4.0, -4.0, 4.0, 4.0
    [(queries, found)] = match(logits, boxes, targets, scale, cls_loss=focal, cost_class=1.0, cost_l1=0.0,
                               cost_giou=0.0)
    assert dict(zip(found.tolist(), queries.tolist())) == {0: 0, 1: 2}


def test_class_cost_is_focal_for_sigmoid_losses_and_minus_probability_for_ce():
    logits, labels = torch.tensor([[2.0, -1.0], [0.0, 0.5]]), torch.tensor([1, 0, 1])
    p = logits.sigmoid()
    focal = (0.25 * (1 - p) ** 2 * -p.log() - 0.75 * p**2 * -(1 - p).log())[:, labels]
    assert torch.allclose(class_cost(build(CLS_LOSSES, "focal", "cls"), logits, labels), focal, atol=1e-6)
    assert torch.allclose(class_cost(build(CLS_LOSSES, "bce", "cls"), logits, labels), focal, atol=1e-6)
    softmax = torch.cat([torch.zeros(2, 1), logits], 1).softmax(1)[:, 1:]
    assert torch.allclose(class_cost(build(CLS_LOSSES, "ce", "cls"), logits, labels), -softmax[:, labels])


def test_position_encoding_and_token_boxes_ignore_the_padding():
    mask = torch.ones(1, 4, 6, dtype=torch.bool)
    mask[0, :2, :3] = False  # a 2x3 image padded to 4x6
    alone = position_encoding(torch.zeros(1, 2, 3, dtype=torch.bool), 8)  # [1, 6, 8]
    padded = position_encoding(mask, 8).reshape(1, 4, 6, 8)[:, :2, :3].flatten(1, 2)
    assert torch.allclose(padded, alone, atol=1e-5)
    boxes = token_boxes(mask).sigmoid().reshape(4, 6, 4)
    assert torch.allclose(boxes[1, 2], torch.tensor([2.5 / 3, 1.5 / 2, 2 / 3, 2 / 2]), atol=1e-4)


def test_repeat_matches_each_box_to_as_many_queries():
    scale = torch.tensor([[100.0, 100.0, 100.0, 100.0]])
    gt = torch.tensor([[10.0, 10.0, 30.0, 40.0], [60.0, 50.0, 90.0, 70.0]])
    boxes = normalised(gt, scale).repeat_interleave(3, dim=0)[None]  # [1, 6, 4]: queries 0-2 box 0, 3-5 box 1
    logits = torch.full((1, 6, NUM_CLASSES), -8.0)
    logits[0, :3, 1] = logits[0, 3:, 2] = 8.0  # and their classes, confidently
    targets = [{"boxes": gt, "labels": torch.tensor([1, 2])}]
    losses = dict(cls_loss=build(CLS_LOSSES, "focal", "cls"), box_loss=build(BOX_LOSSES, "giou", "box"),
                  cost_class=2.0, cost_l1=5.0, cost_giou=2.0)
    many = set_loss(logits, boxes, targets, scale, repeat=3, **losses)
    assert many["loss_l1"].item() == pytest.approx(0.0, abs=1e-5)
    assert many["loss_box"].item() == pytest.approx(0.0, abs=1e-5)
    assert many["loss_cls"].item() < 1e-3  # every query is a positive it predicts
    one = set_loss(logits, boxes, targets, scale, **losses)
    assert one["loss_cls"].item() > 100 * many["loss_cls"].item()  # four confident queries are now background


def test_encoder_keys_need_encoder_anchors():
    with pytest.raises(ValueError, match="apply to anchors: encoder"):
        TrialConfig.model_validate({"model": {"detector": {"name": "detr", "anchors": "refine", "encoder_repeat": 2}}})
    with pytest.raises(ValueError, match="apply to anchors: encoder"):
        TrialConfig.model_validate({"model": {"detector": {"name": "detr", "refine_logits": True}}})


def test_refine_logits_starts_from_the_chosen_tokens_logits():
    model = detr(ENCODER).eval()
    images, _ = squares(2)
    with torch.no_grad():
        image_list, _ = model.model.transform(images)
        mask = torch.zeros(2, *image_list.tensors.shape[-2:], dtype=torch.bool)
        logits, _, proposals = model.model.predict(image_list.tensors, mask)
    assert logits.shape == (SMALL["decoder_layers"], 2, SMALL["queries"], NUM_CLASSES)
    assert torch.equal(logits[-1], proposals.chosen_logits)  # the class head starts at zero
    top = proposals.logits.max(-1).values.topk(SMALL["queries"], dim=1).values  # the best tokens became the queries
    assert torch.allclose(proposals.chosen_logits.max(-1).values, top)


@pytest.mark.parametrize("options", [{}, ENCODER], ids=["detr", "encoder"])
def test_a_batch_without_boxes_has_no_box_loss(options):
    model = detr(options).train()
    images, targets = squares(2)
    empty = [{"boxes": t["boxes"][:0], "labels": t["labels"][:0]} for t in targets]
    losses = model(images, empty)
    assert losses["loss_box"].item() == 0.0 and losses["loss_l1"].item() == 0.0
    assert losses["loss_cls"].item() > 0  # every query learns background
    sum(losses.values()).backward()


@pytest.mark.parametrize("cls_loss", [c for c in CLS_LOSSES if c not in QUALITY_LOSSES])  # those need IoU targets
@pytest.mark.parametrize("box_loss", list(BOX_LOSSES))
def test_every_catalogue_loss_trains(cls_loss, box_loss):
    model = detr(loss={"cls": cls_loss, "box": box_loss}).train()
    images, targets = squares(2)
    losses = model(images, targets)
    assert set(losses) == {"loss_cls", "loss_box", "loss_l1"}
    assert all(v.ndim == 0 and math.isfinite(v.item()) and v.item() > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    assert model.model.bbox_embed.layers[0].weight.grad.abs().sum() > 0
    assert model.model.class_embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{"anchors": a} for a in ANCHORS] + [ENCODER, {"pre_norm": True}],
                         ids=[*ANCHORS, "encoder-repeat-refine", "pre_norm"])
def test_every_query_mode_trains_every_parameter_and_predicts(options):
    model = detr(options).train()
    images, targets = squares(2)
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    model.eval()
    with torch.no_grad():
        detections = model(images)
    # every (query, class) pair scores above 0; the Detector caps at max_dets (100)
    assert [len(d["scores"]) for d in detections] == [SMALL["queries"] * NUM_CLASSES] * 2
    assert all((d["boxes"][:, 2:] >= d["boxes"][:, :2]).all() for d in detections)


def test_aux_loss_adds_every_decoder_layers_loss():
    images, targets = squares(2)
    with_aux = detr({"aux_loss": True}).train()(images, targets)
    last_only = detr({"aux_loss": False}).train()(images, targets)  # same seed: the same weights
    assert all(with_aux[k] > last_only[k] for k in last_only), (with_aux, last_only)
    one_layer = {"decoder_layers": 1}
    assert all(torch.isclose(a, b) for a, b in zip(detr({**one_layer, "aux_loss": True}).train()(images, targets).values(),
                                                   detr({**one_layer, "aux_loss": False}).train()(images, targets).values()))


def matched_iou(model, images, targets):
    """Mean IoU of each box with the query the final layer matches it to (eval mode, no dropout)."""
    model.eval()
    with torch.no_grad():
        image_list, _ = model.model.transform(images)
        mask = torch.zeros(len(images), *image_list.tensors.shape[-2:], dtype=torch.bool)
        logits, boxes, _ = model.model.predict(image_list.tensors, mask)
    scale = torch.tensor([[64.0, 64.0, 64.0, 64.0]]).expand(len(images), 4)
    matches = match(logits[-1], boxes[-1], targets, scale, cls_loss=model.model.cls_loss, **model.model.costs)
    ious = [box_iou(box_convert(boxes[-1][i, q], "cxcywh", "xyxy") * 64, t["boxes"][f]).diag()
            for i, (t, (q, f)) in enumerate(zip(targets, matches))]
    model.train()
    return torch.cat(ious).mean().item()


# It learns: tests/models/test_detectors_learn.py fits four images with every detector and finds their boxes.
