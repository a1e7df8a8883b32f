"""A DETR-style detector (Carion et al. 2020) on ablate's backbones and necks, with the catalogue's losses.

The pipeline, as DETR's:

- torchvision's ``GeneralizedRCNNTransform`` normalises and pads the batch (and resizes at evaluation,
  as every ablate detector); a padding mask keeps the attention off the padding.
- The backbone and neck give P3..P7.  The encoder reads one map at the stride of ``level``: the five
  levels brought to that size (max-pooled from finer, nearest-upsampled from coarser) and averaged,
  as Libra R-CNN's balanced feature integration, so every neck output serves it.  DETR reads C5 alone.
- A 1x1 projection to ``d_model`` (``model.channels``) with GroupNorm (Deformable DETR's), DETR's
  normalised 2D sine positional encoding, encoder and decoder layers of ``nn.MultiheadAttention`` with
  the positional encoding added to queries and keys (and the query embedding to the decoder's queries)
  as DETR's; post-norm, or pre-norm with ``pre_norm`` (DETR's ``normalize_before``).
- A class head (C logits; the catalogue classification loss decides sigmoid or softmax) and a 3-layer
  MLP box head: normalised ``(cx, cy, w, h)`` through a sigmoid, after every decoder layer.

``anchors`` (none in DETR): ``learned`` gives each query a learned reference box, its positional query
an MLP of the box's sine embedding and its box an offset to it in logit space (DAB-DETR, Liu et al.
2022); ``refine`` also starts each decoder layer from the previous layer's box (Deformable DETR's
iterative refinement); ``encoder`` takes the reference boxes from the encoder: every token predicts a
class and a box (an offset to a square of ``TOKEN_BOX`` tokens on it), trained with the same set loss,
and the ``queries`` best tokens become the queries, their features the content queries (Deformable
DETR's two-stage, RT-DETR's selection).  Two more levers for that mode: ``encoder_repeat`` matches each
box to that many tokens (one-to-many, as H-DETR's hybrid branch), which gives the backbone the dense
supervision a one-stage detector gets; ``refine_logits`` makes the decoder's logits corrections to the
chosen tokens' logits, as its boxes are corrections to their boxes, so the decoder starts from the
encoder's ranking instead of from scratch.

Matching and losses: models/detr_match.py.  At inference every (query, class) pair above
``score_thresh`` is a candidate, as Deformable DETR's top-k; ``Detector`` sorts and caps them, no NMS.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_convert, clip_boxes_to_image

from ablate.models.common import group_count
from ablate.models.detr_match import set_loss

LEVELS = {"p3": 0, "p4": 1, "p5": 2}  # index into the neck's P3..P7
ANCHORS = ("none", "learned", "refine", "encoder")
PRIOR = 0.01  # the class heads' initial foreground probability, as RetinaNet and Deformable DETR
TOKEN_BOX = 2.0  # side of an encoder token's box before its regression, in tokens (Deformable DETR: 0.05 x 2^l)


def sine(coords: Tensor, feats: int, temperature: float = 10000.0) -> Tensor:
    """DETR's sine embedding of normalised coordinates ``[..., K]`` -> ``[..., K * feats]`` (sin, cos interleaved)."""
    dim_t = temperature ** (2 * (torch.arange(feats, device=coords.device) // 2) / feats)  # [feats]
    pos = coords[..., None] * (2 * math.pi) / dim_t  # [..., K, feats]
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)
    return pos.flatten(-2)


def position_encoding(mask: Tensor, d_model: int) -> Tensor:
    """DETR's ``PositionEmbeddingSine(normalize=True)``: ``[B, H, W]`` padding mask -> ``[B, H*W, d_model]`` (y, then x)."""
    inside = (~mask).float()
    y, x = inside.cumsum(1), inside.cumsum(2)  # [B, H, W]
    y = y / (y[:, -1:, :] + 1e-6)
    x = x / (x[:, :, -1:] + 1e-6)
    return sine(torch.stack((y, x), dim=-1), d_model // 2).flatten(1, 2)


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def token_boxes(mask: Tensor) -> Tensor:
    """``[B, H*W, 4]`` logit boxes of ``mask [B, H, W]``'s tokens: centred on each, ``TOKEN_BOX`` tokens wide.

    Normalised by each image's unpadded extent, as the predictions are; padding tokens fall outside.
    """
    _, h, w = mask.shape
    rows, cols = (~mask[:, :, 0]).sum(1).clamp(min=1), (~mask[:, 0, :]).sum(1).clamp(min=1)  # [B]
    y, x = torch.meshgrid(torch.arange(h, device=mask.device) + 0.5, torch.arange(w, device=mask.device) + 0.5,
                          indexing="ij")
    size = torch.stack((TOKEN_BOX / cols, TOKEN_BOX / rows), -1)[:, None, None].expand(-1, h, w, -1)
    centre = torch.stack((x[None] / cols[:, None, None], y[None] / rows[:, None, None]), -1)  # [B, H, W, 2]
    return inverse_sigmoid(torch.cat((centre, size), -1).flatten(1, 2))


class MLP(nn.Module):
    """``layers`` linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, d_in: int, hidden: int, d_out: int, layers: int):
        super().__init__()
        dims = [d_in] + [hidden] * (layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class Sublayer(nn.Module):
    """A residual around ``fn`` with its LayerNorm and dropout: post-norm ``norm(x + drop(fn(x)))`` as DETR's
    default, or pre-norm ``x + drop(fn(norm(x)))`` (DETR's ``normalize_before``), which keeps each query's
    own content in the residual stream instead of renormalising it away after every sublayer."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm, self.drop, self.pre_norm = nn.LayerNorm(d_model), nn.Dropout(dropout), pre_norm

    def forward(self, x: Tensor, fn) -> Tensor:
        if self.pre_norm:
            return x + self.drop(fn(self.norm(x)))
        return self.norm(x + self.drop(fn(x)))


def feed_forward(d_model: int, ffn: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, d_model))


class EncoderLayer(nn.Module):
    """DETR's encoder layer: self-attention with ``pos`` added to queries and keys (not values), then the FFN."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ffn = feed_forward(d_model, ffn, dropout)
        self.sub1, self.sub2 = Sublayer(d_model, dropout, pre_norm), Sublayer(d_model, dropout, pre_norm)

    def forward(self, src: Tensor, pos: Tensor, mask: Tensor) -> Tensor:  # [B, HW, D], [B, HW, D], [B, HW]
        src = self.sub1(src, lambda x: self.attn(x + pos, x + pos, x, key_padding_mask=mask, need_weights=False)[0])
        return self.sub2(src, self.ffn)


class DecoderLayer(nn.Module):
    """DETR's decoder layer: self-attention among queries, cross-attention to the memory, the FFN."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ffn = feed_forward(d_model, ffn, dropout)
        self.subs = nn.ModuleList(Sublayer(d_model, dropout, pre_norm) for _ in range(3))

    def forward(self, tgt: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
        # tgt, query_pos [B, Q, D]; memory, pos [B, HW, D]; mask [B, HW]
        tgt = self.subs[0](tgt, lambda x: self.self_attn(x + query_pos, x + query_pos, x, need_weights=False)[0])
        tgt = self.subs[1](tgt, lambda x: self.cross_attn(x + query_pos, memory + pos, memory, key_padding_mask=mask,
                                                          need_weights=False)[0])
        return self.subs[2](tgt, self.ffn)


class Proposals(NamedTuple):
    """What the encoder's tokens predict with ``anchors='encoder'``."""

    logits: Tensor  # [B, HW, C]
    boxes: Tensor  # [B, HW, 4] normalised (cx, cy, w, h)
    chosen_logits: Tensor  # [B, K, C] of the K tokens that became queries, detached


class Transformer(nn.Module):
    """The input projection, encoder and decoder; ``forward`` returns every decoder layer's (normed) output.

    ``box_head`` (shared with the detector) is passed in with ``anchors`` refine or encoder, where each
    layer starts from the box the previous layer predicted.  With ``encoder``, the encoder's tokens
    predict classes and boxes (heads of their own, ``num_classes`` wide) and the ``queries`` best become
    the decoder's reference boxes (at most as many as the image has tokens).
    """

    def __init__(self, in_channels: int, d_model: int, *, queries: int, encoder_layers: int, decoder_layers: int,
                 heads: int, ffn: int, dropout: float, anchors: str, num_classes: int, pre_norm: bool = False):
        super().__init__()
        self.d_model, self.anchors, self.queries = d_model, anchors, queries
        # GroupNorm as Deformable DETR's: a neck's maps start ~100x smaller than a ResNet's C5, and without it
        # the projection's bias drowns them: every token, and so every query, would look the same
        self.input_proj = nn.Sequential(nn.Conv2d(in_channels, d_model, kernel_size=1),
                                        nn.GroupNorm(group_count(d_model), d_model))
        layer = dict(d_model=d_model, heads=heads, ffn=ffn, dropout=dropout, pre_norm=pre_norm)
        self.encoder = nn.ModuleList(EncoderLayer(**layer) for _ in range(encoder_layers))
        self.encoder_norm = nn.LayerNorm(d_model) if pre_norm and encoder_layers else nn.Identity()  # as DETR's
        self.decoder = nn.ModuleList(DecoderLayer(**layer) for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        if anchors == "none":
            self.query_embed = nn.Embedding(queries, d_model)
        elif anchors == "encoder":  # Deformable DETR's two-stage heads on the memory
            self.enc_output = nn.Sequential(nn.Linear(d_model, d_model), nn.LayerNorm(d_model))
            self.enc_class, self.enc_bbox = nn.Linear(d_model, num_classes), MLP(d_model, d_model, 4, 3)
        else:
            # reference boxes (logit space): centres spread uniformly as Deformable DETR's reference points
            self.reference = nn.Parameter(inverse_sigmoid(torch.cat([torch.rand(queries, 2),
                                                                     torch.full((queries, 2), 0.1)], dim=1)))
        if anchors != "none":
            self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)  # DAB-DETR: sine(box) -> query_pos
        own = self.query_embed.weight if anchors == "none" else getattr(self, "reference", None)
        kept = {id(own)}  # DETR's N(0, 1) query embeddings, Deformable DETR's uniform reference points
        for p in self.parameters():  # DETR's xavier on the rest
            if p.dim() > 1 and id(p) not in kept:
                nn.init.xavier_uniform_(p)
        if anchors == "encoder":
            nn.init.constant_(self.enc_class.bias, -math.log((1 - PRIOR) / PRIOR))
            nn.init.zeros_(self.enc_bbox.layers[-1].weight)
            nn.init.zeros_(self.enc_bbox.layers[-1].bias)

    def query_pos(self, reference: Tensor) -> Tensor:
        """``[B, Q, D]`` positional queries of ``reference [B, Q, 4]`` logit boxes (learned ones without anchors)."""
        if self.anchors == "none":
            return self.query_embed.weight.expand(reference.shape[0], -1, -1)
        return self.ref_point_head(sine(reference.sigmoid(), self.d_model // 2))

    def proposals(self, memory: Tensor, mask: Tensor, grid: Tensor) -> tuple[Proposals, Tensor, Tensor]:
        """The encoder tokens' predictions, and the best ``K`` tokens' logit boxes ``[B, K, 4]`` and features
        ``[B, K, D]``: the decoder's reference boxes and content queries (RT-DETR's)."""
        out = self.enc_output(memory.masked_fill(mask[..., None], 0.0))  # [B, HW, D]
        logits, boxes = self.enc_class(out), self.enc_bbox(out) + token_boxes(grid)  # [B, HW, C], [B, HW, 4]
        best = logits.max(-1).values.masked_fill(mask, float("-inf"))  # [B, HW]
        top = best.topk(min(self.queries, best.shape[1]), dim=1).indices  # [B, K]

        def chosen(x: Tensor) -> Tensor:  # [B, K, ...], without gradient as Deformable DETR's reference boxes
            return x.gather(1, top[..., None].expand(-1, -1, x.shape[-1])).detach()

        return Proposals(logits, boxes.sigmoid(), chosen(logits)), chosen(boxes), chosen(out)

    def forward(self, feature: Tensor, mask: Tensor,
                box_head: nn.Module | None = None) -> tuple[Tensor, Tensor, Proposals | None]:
        """``feature [B, C, H, W]``, ``mask [B, H, W]`` (True on padding) -> ``hs [L, B, Q, D]``, ``refs [L, B, Q, 4]``
        and, with ``anchors='encoder'``, the encoder tokens' ``Proposals``.

        ``refs`` are the reference boxes in logit space each layer's box offsets apply to (zero without anchors).
        """
        src = self.input_proj(feature).flatten(2).transpose(1, 2)  # [B, HW, D]
        grid, pos, mask = mask, position_encoding(mask, self.d_model), mask.flatten(1)  # ..., [B, HW, D], [B, HW]
        for layer in self.encoder:
            src = layer(src, pos, mask)
        src = self.encoder_norm(src)  # [B, HW, D]
        batch, proposals, tgt = src.shape[0], None, None
        if self.anchors == "none":
            reference = src.new_zeros(batch, self.query_embed.num_embeddings, 4)
        elif self.anchors == "encoder":
            proposals, reference, tgt = self.proposals(src, mask, grid)
        else:
            reference = self.reference.expand(batch, -1, -1)
        if tgt is None:  # DETR's content queries start at zero
            tgt = reference.new_zeros(*reference.shape[:2], self.d_model)
        outputs, refs = [], []
        for layer in self.decoder:
            tgt = layer(tgt, self.query_pos(reference), src, pos, mask)
            outputs.append(self.decoder_norm(tgt))
            refs.append(reference)
            if self.anchors in ("refine", "encoder") and box_head is not None:  # Deformable DETR: ref detached
                reference = (box_head(outputs[-1]) + reference).detach()
        return torch.stack(outputs), torch.stack(refs), proposals


def balanced_level(levels: list[Tensor], index: int) -> Tensor:
    """The pyramid's levels brought to the size of ``levels[index]`` and averaged (Libra R-CNN's integration)."""
    size = levels[index].shape[-2:]
    resized = [F.adaptive_max_pool2d(f, size) if i < index else
               f if i == index else F.interpolate(f, size=size, mode="nearest") for i, f in enumerate(levels)]
    return torch.stack(resized).mean(0)


class CatalogueDetr(nn.Module):
    """A DETR-style set predictor (see the module doc) whose losses come from the catalogue.

    Train mode returns ``{"loss_cls", "loss_box", "loss_l1"}`` (summed over the decoder layers with
    ``aux_loss``); eval mode returns, per image, every (query, class) above ``score_thresh`` in original
    image coordinates.

    Args:
        backbone: returns P3..P7 and has ``out_channels`` (ablate's BackboneWithNeck).
        num_classes: foreground classes; labels are ``0..num_classes-1``.
        cls_loss, box_loss: catalogue modules (``CLS_LOSSES``, ``BOX_LOSSES``).
        d_model: the transformer's width.
        level: p3 | p4 | p5, the stride the encoder reads.
        queries, encoder_layers, decoder_layers, heads, ffn, dropout: the transformer.
        anchors: none | learned | refine | encoder (see the module doc).
        encoder_repeat: with ``encoder``, how many tokens each box is matched to in the encoder's loss.
        refine_logits: with ``encoder``, the decoder's logits are corrections to the chosen tokens' logits.
        pre_norm: LayerNorm before each sublayer, not after (DETR's ``normalize_before``).
        aux_loss: the losses after every decoder layer, not only the last.
        cost_class, cost_l1, cost_giou: the matching cost's weights (cost_l1 also weighs ``loss_l1``).
        min_size, max_size: evaluation resize (training images are used as given).
        image_mean, image_std: the pixel statistics of ``model.style`` (backbones.PIXELS).
        score_thresh: candidate threshold at inference.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, cls_loss: nn.Module, box_loss: nn.Module,
                 d_model: int, level: str = "p5", queries: int = 100, encoder_layers: int = 6,
                 decoder_layers: int = 6, heads: int = 8, ffn: int = 2048, dropout: float = 0.1,
                 anchors: str = "none", encoder_repeat: int = 1, refine_logits: bool = False, pre_norm: bool = False,
                 aux_loss: bool = True, cost_class: float = 2.0, cost_l1: float = 5.0, cost_giou: float = 2.0,
                 min_size: int = 800, max_size: int = 1333, image_mean: list[float], image_std: list[float],
                 score_thresh: float = 0.05):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"unknown level '{level}'; valid: {', '.join(LEVELS)}")
        if anchors not in ANCHORS:
            raise ValueError(f"unknown anchors '{anchors}'; valid: {', '.join(ANCHORS)}")
        if (encoder_repeat > 1 or refine_logits) and anchors != "encoder":
            raise ValueError("encoder_repeat and refine_logits need anchors='encoder'")
        self.transform = GeneralizedRCNNTransform(min_size, max_size, image_mean, image_std, _skip_resize=True)
        self.backbone, self.level = backbone, LEVELS[level]
        self.transformer = Transformer(backbone.out_channels, d_model, queries=queries, encoder_layers=encoder_layers,
                                       decoder_layers=decoder_layers, heads=heads, ffn=ffn, dropout=dropout,
                                       anchors=anchors, num_classes=num_classes, pre_norm=pre_norm)
        self.class_embed = nn.Linear(d_model, num_classes)
        self.bbox_embed = MLP(d_model, d_model, 4, 3)
        if refine_logits:  # the first logits are the chosen tokens' own
            nn.init.zeros_(self.class_embed.weight)
            nn.init.zeros_(self.class_embed.bias)
        else:
            nn.init.constant_(self.class_embed.bias, -math.log((1 - PRIOR) / PRIOR))
        if anchors != "none":  # the first boxes are the reference boxes themselves
            nn.init.zeros_(self.bbox_embed.layers[-1].weight)
            nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        self.cls_loss, self.box_loss, self.aux_loss = cls_loss, box_loss, aux_loss
        self.costs = dict(cost_class=cost_class, cost_l1=cost_l1, cost_giou=cost_giou)
        self.encoder_repeat, self.refine_logits, self.score_thresh = encoder_repeat, refine_logits, score_thresh

    def predict(self, tensors: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Proposals | None]:
        """Padded batch ``[B, 3, H, W]`` and its mask ``[B, H, W]`` -> logits ``[L, B, Q, C]``, boxes ``[L, B, Q, 4]``
        and the encoder tokens' ``Proposals`` with ``anchors='encoder'``."""
        levels = list(self.backbone(tensors).values())  # P3..P7, [B, D, H/s, W/s]
        feature = balanced_level(levels, self.level)
        mask = F.interpolate(mask[None].float(), size=feature.shape[-2:])[0].bool()  # [B, h, w], as DETR
        hs, refs, proposals = self.transformer(feature, mask, self.bbox_embed)
        logits = self.class_embed(hs)  # [L, B, Q, C]
        if self.refine_logits:  # corrections to the chosen tokens' logits, as the boxes are to their boxes
            logits = logits + proposals.chosen_logits
        return logits, (self.bbox_embed(hs) + refs).sigmoid(), proposals

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training and targets is None:
            raise ValueError("CatalogueDetr in train mode needs targets")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, targets = self.transform(images, targets)
        batch, _, height, width = image_list.tensors.shape
        mask = torch.ones(batch, height, width, dtype=torch.bool, device=image_list.tensors.device)
        for index, (h, w) in enumerate(image_list.image_sizes):
            mask[index, :h, :w] = False  # True on the padding
        logits, boxes, proposals = self.predict(image_list.tensors, mask)
        scales = torch.tensor([[w, h, w, h] for h, w in image_list.image_sizes], dtype=boxes.dtype,
                              device=boxes.device)  # [B, 4]: boxes are fractions of each image's own size
        if self.training:
            outputs = list(zip(logits, boxes)) if self.aux_loss else [(logits[-1], boxes[-1])]
            common = dict(cls_loss=self.cls_loss, box_loss=self.box_loss, **self.costs)
            losses = [set_loss(*output, targets, scales, **common) for output in outputs]
            if proposals is not None:  # the encoder's tokens, matched one-to-many with encoder_repeat > 1
                losses.append(set_loss(proposals.logits, proposals.boxes, targets, scales, repeat=self.encoder_repeat,
                                       **common))
            return {name: sum(layer[name] for layer in losses) for name in losses[0]}
        detections = self.candidates(logits[-1], boxes[-1], scales, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    def candidates(self, logits: Tensor, boxes: Tensor, scales: Tensor,
                   image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Every (query, class) pair scoring above ``score_thresh``, per image, in the resized image's pixels."""
        detections = []
        for image_logits, image_boxes, scale, size in zip(logits, boxes, scales, image_sizes):
            scores = self.cls_loss.scores(image_logits)  # [Q, C]
            query, label = torch.where(scores > self.score_thresh)
            xyxy = clip_boxes_to_image(box_convert(image_boxes[query], "cxcywh", "xyxy") * scale, size)
            detections.append({"boxes": xyxy, "scores": scores[query, label], "labels": label})
        return detections
