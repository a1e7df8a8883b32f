"""The merge steps' user-facing parameters (no torch here, see ``registry.Trick``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ablate.tricks.registry import Params

IOU = "overlap (IoU, 0..1) above which a lower-scored box of the same label is suppressed"


class NMSParams(Params):
    iou: float = Field(0.5, ge=0, le=1, description=IOU)


class SoftNMSParams(Params):
    iou: float = Field(0.3, ge=0, le=1, description="linear method only: IoU (0..1) from which scores decay")
    sigma: float = Field(0.5, gt=0, description="gaussian method only: decay exp(-iou^2 / sigma); smaller decays harder")
    method: Literal["gaussian", "linear"] = Field(
        "gaussian", description='"gaussian": score *= exp(-iou^2/sigma); "linear": score *= 1 - iou where iou >= iou'
    )
    min_score: float = Field(0.001, ge=0, le=1, description="boxes whose decayed score falls below this are dropped")


class DIoUNMSParams(Params):
    iou: float = Field(0.5, ge=0, le=1, description="DIoU (IoU - centre distance^2 / enclosing diagonal^2) above which to suppress")


class WBFParams(Params):
    iou: float = Field(0.55, ge=0, le=1, description="IoU (0..1) above which a box joins a cluster")
    skip_box_thr: float = Field(0.0, ge=0, le=1, description="boxes scoring below this are ignored before fusing")
    conf_type: Literal["avg", "max", "box_and_model_avg", "absent_model_aware_avg"] = Field(
        "avg", description="fused score: 'avg' mean of the cluster, 'max' its maximum, or the "
        "library's model-aware averages (equal to 'avg' for a single model)"
    )
