"""The catalogue as a whole: every entry documented, default-constructible, reachable from a study."""

from __future__ import annotations

import pytest

from ablate.study.schema import TrialConfig
from ablate.tricks import CATALOGUE

ENTRIES = [(kind, name) for kind, k in CATALOGUE.items() for name in k.table]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_entry_is_documented_and_has_defaults(kind, name):
    trick = CATALOGUE[kind].table[name]
    assert trick.doc.strip() and "\n" not in trick.doc
    trick.params()  # a bare name in a study means all defaults
    for field, info in trick.params.model_fields.items():
        assert info.description, f"{kind}:{name}.{field} has no description"


SELECTED_BY = {
    "schedule": lambda n: {"train": {"schedule": n}},
    "warmup": lambda n: {"train": {"warmup": n}},
    "lr_scaling": lambda n: {"train": {"lr_scaling": {"rule": n}}},
    "optimizer": lambda n: {"train": {"optimizer": n}},
    "regulariser": lambda n: {"train": {n: {}}},
    "cls_loss": lambda n: {"loss": {"cls": n}},
    "box_loss": lambda n: {"loss": {"box": n}},
    "augment": lambda n: {"augment": [n]},
    "neck": lambda n: {"model": {"neck": n}},
    "postprocess": lambda n: {"eval": {"nms": n}},
    "tta": lambda n: {"eval": {"tta": n}},
}


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_every_entry_can_be_selected_in_a_study(kind, name):
    config = TrialConfig.model_validate(SELECTED_BY[kind](name))
    assert name in str(config.model_dump())
