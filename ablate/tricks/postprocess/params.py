"""The merge steps' user-facing parameters (no torch here, see ``registry.Trick``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ablate.tricks.registry import Params

IOU = "overlap (IoU, 0..1) above which a lower-scored box of the same label is suppressed"
CLASS_AGNOSTIC = "merge all boxes together, whatever their labels; false: boxes of different labels never interact"


class NMSParams(Params):
    iou: float = Field(0.5, ge=0, le=1, description=IOU)
    class_agnostic: bool = Field(False, description=CLASS_AGNOSTIC)


class SoftNMSParams(Params):
    iou: float = Field(0.3, ge=0, le=1, description="linear method only: IoU (0..1) from which scores decay")
    sigma: float = Field(0.5, gt=0, description="gaussian method only: decay exp(-iou^2 / sigma); smaller decays harder")
    method: Literal["gaussian", "linear"] = Field(
        "gaussian", description='"gaussian": score *= exp(-iou^2/sigma); "linear": score *= 1 - iou where iou >= iou'
    )
    min_score: float = Field(0.001, ge=0, le=1, description="boxes whose decayed score falls below this are dropped")
    class_agnostic: bool = Field(False, description=CLASS_AGNOSTIC)


class DIoUNMSParams(Params):
    iou: float = Field(0.5, ge=0, le=1, description="DIoU (IoU - centre distance^2 / enclosing diagonal^2) above which to suppress")
    class_agnostic: bool = Field(False, description=CLASS_AGNOSTIC)


class MatrixNMSParams(Params):
    kernel: Literal["gaussian", "linear"] = Field(
        "gaussian", description='"gaussian" (SOLOv2): decay exp(-sigma * (iou^2 - c^2)); "linear": (1 - iou) / (1 - c), '
        "where c is the suppressor's own largest IoU with a higher-scored box (PP-YOLO's configs use linear)"
    )
    sigma: float = Field(2.0, gt=0, description="gaussian kernel only: multiplies the squared IoUs; larger decays harder "
                         "(the inverse of soft_nms's sigma); 2.0 as SOLOv2 and PP-YOLO")
    min_score: float = Field(0.01, ge=0, le=1, description="boxes whose decayed score falls below this are dropped "
                             "(PP-YOLO's post_threshold)")
    pre_top_k: int = Field(1000, ge=1, description="only the highest-scored this many boxes per label (of all boxes when "
                           "class_agnostic) are decayed and kept: the IoU matrix is pre_top_k^2")
    class_agnostic: bool = Field(False, description=CLASS_AGNOSTIC)


class WBFParams(Params):
    iou: float = Field(0.55, ge=0, le=1, description="IoU (0..1) above which a box joins a cluster")
    skip_box_thr: float = Field(0.0, ge=0, le=1, description="boxes scoring below this are ignored before fusing")
    conf_type: Literal["avg", "max", "box_and_model_avg", "absent_model_aware_avg"] = Field(
        "avg", description="fused score: 'avg' mean of the cluster, 'max' its maximum, or the "
        "library's model-aware averages (equal to 'avg' for a single model)"
    )


class MultiscaleFlipParams(Params):
    scales: list[Annotated[float, Field(gt=0)]] = Field(
        [0.8, 1.0, 1.2], min_length=1, description="evaluation sizes as factors (> 0) of data.image_size: the "
        "detector's own resize (shorter side, and its longer-side cap) is multiplied by each in turn"
    )
    flip: bool = Field(True, description="also predict on the horizontal mirror at every scale")
