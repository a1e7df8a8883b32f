"""One trial: train loop, COCO evaluation, checkpoints, metrics."""
