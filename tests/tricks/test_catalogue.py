"""The catalogue as a whole: every entry documented, default-constructible, reachable from a study."""

from __future__ import annotations

import pytest

from ablate.study.config import TrialConfig
from ablate.tricks import CATALOGUE

ENTRIES = [(kind, name) for kind, k in CATALOGUE.items() for name in k.table]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_entry_is_documented_and_has_defaults(kind, name):
    trick = CATALOGUE[kind].table[name]
    assert trick.doc.strip() and "\n" not in trick.doc
    trick.params()  # a bare name in a study means all defaults
    for field, info in trick.params.model_fields.items():
        assert info.description, f"{kind}:{name}.{field} has no description"


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_entry_names_a_builder_that_exists(kind, name):
    if kind == "detector":  # built by models/build.py's BUILDERS (tests/models/test_build_model.py checks each)
        return
    assert callable(CATALOGUE[kind].table[name].build)  # its Lazy loader imports the module and finds the builder


# kind -> (the study keys that select `name`, where the validated config holds the selection)
SELECTED_BY = {
    "detector": (lambda n: {"model": {"detector": n}}, lambda c: c.model.detector.name),
    "assigner": (lambda n: {"model": {"assigner": n}}, lambda c: c.model.assigner.name),
    "schedule": (lambda n: {"train": {"schedule": n}}, lambda c: c.train.schedule.name),
    "warmup": (lambda n: {"train": {"warmup": n}}, lambda c: c.train.warmup.name),
    "lr_scaling": (lambda n: {"train": {"lr_scaling": {"rule": n}}}, lambda c: c.train.lr_scaling.rule),
    "optimizer": (lambda n: {"train": {"optimizer": n}}, lambda c: c.train.optimizer.name),
    "distill": (lambda n: {"train": {"distill": n}}, lambda c: c.train.distill.name),
    "cls_loss": (lambda n: {"loss": {"cls": n}}, lambda c: c.loss.cls.name),
    "box_loss": (lambda n: {"loss": {"box": n}}, lambda c: c.loss.box.name),
    "augment": (lambda n: {"augment": ["hflip", n]}, lambda c: c.augment[1].name),
    "norm": (lambda n: {"model": {"norm": n}}, lambda c: c.model.norm.name),
    "activation": (lambda n: {"model": {"activation": n}}, lambda c: c.model.activation.name),
    "plugin": (lambda n: {"model": {"plugins": [n]}}, lambda c: c.model.plugins[0].name),
    "context": (lambda n: {"model": {"context": n}}, lambda c: c.model.context.name),
    "head_conv": (lambda n: {"model": {"head_conv": n}}, lambda c: c.model.head_conv.name),
    "neck": (lambda n: {"model": {"neck": n}}, lambda c: c.model.neck.name),
    "pyramid": (lambda n: {"model": {"pyramid": n}}, lambda c: c.model.pyramid.name),
    "postprocess": (lambda n: {"eval": {"nms": n}}, lambda c: c.eval.nms.name),
    "tta": (lambda n: {"eval": {"tta": n}}, lambda c: c.eval.tta.name),
}


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_every_entry_can_be_selected_in_a_study(kind, name):
    if kind == "regulariser":  # a section of its own (train.ema, ...), typed by the entry's params
        config = TrialConfig.model_validate({"train": {name: {}}})
        assert type(getattr(config.train, name)) is CATALOGUE[kind].table[name].params
        return
    keys, selected = SELECTED_BY[kind]
    assert selected(TrialConfig.model_validate(keys(name))) == name
