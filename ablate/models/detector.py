"""The detector the engine trains and evaluates: a torchvision model plus ablate's inference.

Train mode is the torchvision model unchanged.  Eval mode runs the test-time
augmentation over the model's raw candidates (already in original image
coordinates, not yet merged), then the catalogue post-processing once per image,
so NMS, Soft-NMS, DIoU-NMS, Matrix NMS or WBF sees the candidates of every view together.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ablate.tricks.postprocess.ops import postprocess


def keep_all(boxes: Tensor, scores: Tensor, labels: Tensor, image_size: tuple[int, int]):
    """The merge step of a detector that predicts a set (DETR): nothing to merge, best first."""
    order = scores.argsort(descending=True)
    return boxes[order], scores[order], labels[order]


class Detector(nn.Module):
    """A detector whose evaluation output is the catalogue's.

    ``forward(images, targets)`` in train mode returns the named, weighted losses
    (``loss_cls``, ``loss_box``, and ``loss_ctr`` for FCOS); in eval mode,
    ``forward(images)`` returns one ``{"boxes" [K, 4] xyxy, "scores" [K], "labels"
    int64 [K]}`` per image, in that image's own pixel coordinates.

    Args:
        model: a ``Catalogue*`` detector of this package (eval output: raw candidates).
        method: a built ``POSTPROCESS`` function (nms, soft_nms, diou_nms, matrix_nms, wbf), or ``keep_all``.
        tta: a built ``TTA`` function, called as ``tta(model, images)``; ``multiscale_flip`` rescales
            ``model.transform``'s eval resize for each of its views.
        score_thresh: detections scoring at or below this are dropped.
        max_dets: detections kept per image.
    """

    def __init__(self, model: nn.Module, *, method: Callable, tta: Callable, score_thresh: float, max_dets: int):
        super().__init__()
        self.model = model
        self.method, self.tta = method, tta
        self.score_thresh, self.max_dets = score_thresh, max_dets

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("a Detector in train mode needs targets; call .eval() to predict")
            return self.model(images, targets)
        candidates = self.tta(self.model, images)  # per image: all views, original coordinates
        detections = []
        for image, raw in zip(images, candidates):
            boxes, scores, labels = postprocess(
                raw["boxes"], raw["scores"], raw["labels"], method=self.method,
                score_thresh=self.score_thresh, max_dets=self.max_dets, image_size=tuple(image.shape[-2:]),
            )
            detections.append({"boxes": boxes, "scores": scores, "labels": labels})
        return detections
