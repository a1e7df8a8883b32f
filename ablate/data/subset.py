"""``data.train_subset``: a class-stratified part of the train split, the same on every machine.

Each image's stratum is the rarest class among its boxes (an image without boxes: a stratum of
its own), so a rare class keeps its share.  Within a stratum the images are ordered by a hash of
the seed and the image's file name (not its position or an absolute path: the same images on
every machine and whatever the format), and each stratum gives its share of the total by largest
remainder, so the count is exact.  The subset is part of the trial's configuration, so of its id.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from ablate.data.coco import Annotations
from ablate.errors import DataError
from ablate.study.config import Subset


def subset(train: Annotations, spec: Subset) -> Annotations:
    """The images of ``train`` that ``spec`` keeps, in their original order."""
    n = len(train.records)
    target = spec.images if spec.images is not None else max(1, round(spec.fraction * n))
    if target > n:
        raise DataError(f"{train.source}: data.train_subset.images is {target}, but the train split has {n} images; "
                        f"give at most {n}, or a fraction")
    names = {img["id"]: img["file_name"] for img in train.gt["images"]}
    freq = Counter(int(label) for r in train.records for label in r.labels)
    strata: dict[int, list[int]] = {}
    for k, r in enumerate(train.records):
        rarest = min((int(c) for c in set(r.labels.tolist())), key=lambda c: (freq[c], c), default=-1)
        strata.setdefault(rarest, []).append(k)
    quotas = {s: len(members) * target / n for s, members in strata.items()}
    take = {s: math.floor(q) for s, q in quotas.items()}
    for s in sorted(quotas, key=lambda s: (-(quotas[s] - take[s]), s))[:target - sum(take.values())]:
        take[s] += 1

    def rank(k: int) -> str:
        return hashlib.sha256(f"{spec.seed}:{names[train.records[k].image_id]}".encode()).hexdigest()

    kept = sorted(k for s, members in strata.items() for k in sorted(members, key=rank)[:take[s]])
    ids = {train.records[k].image_id for k in kept}
    gt = {**train.gt, "images": [i for i in train.gt["images"] if i["id"] in ids],
          "annotations": [a for a in train.gt["annotations"] if a["image_id"] in ids]}
    return Annotations(train.source, [train.records[k] for k in kept],
                       train.classes, train.cat_ids, gt, train.repairs, train.examples)
