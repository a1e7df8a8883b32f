"""The names of every metric a trial reports each epoch, and of the COCO evaluators.

The ground floor of the layers: the study schema checks ``scheduler.metric`` (and
the ``plateau`` schedule's metric) against this list, so a study can never wait on
a metric that the engine never reports; the engine reports under these names; the
records and the report read them.  Nothing here imports torch.
"""

from ablate.errors import did_you_mean

# COCO summary numbers (COCOeval's twelve, in its stats order, from eval.backend), as fractions in [0, 1].
COCO_METRICS = ("mAP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# Training losses (mean over the epoch), each detector's under its own names: loss_cls and loss_box
# (the catalogue's losses) for all; FCOS and ATSS add centerness, Faster R-CNN its RPN's objectness and
# box terms, DETR its L1 on normalised boxes (beside loss_box, the catalogue's GIoU-like loss); a
# student of train.distill adds loss_distill (the weighted distillation loss).
LOSS_METRICS = ("loss", "loss_cls", "loss_box", "loss_ctr", "loss_objectness", "loss_rpn_box", "loss_l1",
                "loss_distill")

# Cost and bookkeeping: seconds of the epoch's training, evaluation and checkpoint, and the whole epoch.
COST_METRICS = ("lr", "imgs_per_s", "peak_mem_mb", "epoch_time_s", "train_time_s", "eval_time_s", "checkpoint_s")

# Every name a trial reports per epoch; the engine fails a trial that computes one not listed here
# (it would never reach a record), and the records keep exactly these.
METRICS = COCO_METRICS + LOSS_METRICS + COST_METRICS

# Which way is better, for validation and for ``mode`` defaults.
HIGHER_IS_BETTER = frozenset(COCO_METRICS + ("imgs_per_s",))


# eval.backend: the COCOeval implementations (engine/coco_eval.py maps each to its classes).
EVAL_BACKENDS = ("faster_coco_eval", "pycocotools")
DEFAULT_EVAL_BACKEND = "faster_coco_eval"


def check_metric(name: str) -> str:
    """``name`` if the engine reports it, else a ValueError with the closest valid name."""
    if name not in METRICS:
        raise ValueError(f"'{name}' is not reported by the engine{did_you_mean(name, METRICS)}; "
                         f"valid: {', '.join(METRICS)}")
    return name
