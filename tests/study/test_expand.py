"""Expansion: each design's variants, exclusions, and stable trial ids."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ablate.study import expand, load_study, trials
from ablate.study.config import TrialConfig
from ablate.study.errors import StudyError
from ablate.study.expand import config_dict, level_of, max_t, trial_id

BOX = ["giou", "ciou", "diou"]
CLS = ["bce", "ce"]


def _study(write, **keys):
    return load_study(write("s.yaml", {"name": "s", "seeds": [0, 1], **keys}))


def test_one_at_a_time_is_baseline_plus_each_level_alone(write):
    variants = expand(_study(write, factors={"loss.box": BOX, "loss.cls": CLS}))
    assert [v.name for v in variants] == ["baseline"] + [f"loss.box={b}" for b in BOX] + [f"loss.cls={c}" for c in CLS]
    assert variants[0].is_baseline and variants[0].overrides == {}
    assert variants[4].config.loss.box.name == "smooth_l1"  # the other factor stays at the baseline
    assert variants[4].config.loss.cls.name == "bce"


def test_grid_is_the_product_with_the_baseline_first(write):
    variants = expand(_study(write, design="grid", factors={"loss.box": BOX, "loss.cls": CLS}))
    assert len(variants) == 1 + len(BOX) * len(CLS)
    combos = {(v.config.loss.box.name, v.config.loss.cls.name) for v in variants[1:]}
    assert combos == {(b, c) for b in BOX for c in CLS}


def test_a_level_equal_to_the_baseline_is_the_baseline(write):
    study = _study(write, design="grid", factors={"loss.box": ["smooth_l1", "giou"], "loss.cls": ["focal", "bce"]})
    variants = expand(study)
    assert len(variants) == 4  # (smooth_l1, focal) is the baseline itself
    assert [v.index for v in variants] == [0, 1, 2, 3]
    one = expand(_study(write, factors={"loss.box": ["smooth_l1", "giou"]}))
    assert [v.name for v in one] == ["baseline", "loss.box=giou"]


def test_cumulative_keeps_the_previous_tricks(write):
    study = _study(write, design="cumulative",
                   factors={"train.schedule": ["cosine"], "loss.box": ["giou"], "train.ema.enabled": [True]})
    variants = expand(study)
    assert [v.name for v in variants] == ["baseline", "+train.schedule=cosine", "+loss.box=giou",
                                          "+train.ema.enabled=true"]
    last = variants[-1].config
    assert (last.train.schedule.name, last.loss.box.name, last.train.ema.enabled) == ("cosine", "giou", True)
    assert variants[2].config.train.ema.enabled is False


def test_exclude_skips_matching_combinations(write):
    study = _study(write, design="grid", factors={"loss.box": BOX, "loss.cls": CLS},
                   exclude=[{"loss.box": "ciou", "loss.cls": "ce"}, {"loss.box": "diou"}])
    names = {(v.config.loss.box.name, v.config.loss.cls.name) for v in expand(study)}
    assert ("ciou", "ce") not in names and ("ciou", "bce") in names
    assert not any(box == "diou" for box, _ in names)
    assert len(names) == 1 + 6 - 1 - 2


def test_optuna_plans_the_baseline_and_validates_the_space(write):
    space = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
             "loss.box": {"type": "categorical", "choices": ["giou", "ciou"]}}
    study = _study(write, design="optuna", seeds=[0], search={"num_samples": 5, "space": space})
    assert [v.name for v in expand(study)] == ["baseline"]
    assert len(trials(study)) == 1  # the baseline; samples are drawn at run time
    with pytest.raises(StudyError, match=r"s\.yaml: seeds: design optuna runs each sampled configuration once"):
        _study(write, design="optuna", seeds=[0, 1], search={"num_samples": 5, "space": space})


def test_trials_are_variants_times_seeds_with_distinct_ids(write):
    study = _study(write, factors={"loss.box": BOX})
    all_trials = trials(study)
    assert [(t.variant.index, t.seed) for t in all_trials] == [(v, s) for v in range(4) for s in (0, 1)]
    assert len({t.trial_id for t in all_trials}) == 8


def test_trial_id_ignores_key_order_and_file_layout(write):
    a = {"name": "a", "train": {"epochs": 5, "batch_size": 4}, "loss": {"box": {"name": "giou", "weight": 2.0}}}
    b = {"loss": {"box": {"weight": 2, "name": "giou"}}, "train": {"batch_size": 4, "epochs": 5}, "name": "b"}
    write("base.yaml", {"train": {"epochs": 5}})
    c = {"_base_": "base.yaml", "name": "c", "loss": {"box": "giou"}, "train": {"batch_size": 4}}
    c["loss"]["box"] = {"name": "giou", "weight": 2.0}
    ids = [trials(load_study(write(f"{k}.yaml", v)))[0].trial_id for k, v in {"a": a, "b": b, "c": c}.items()]
    assert ids[0] == ids[1] == ids[2]


@pytest.mark.parametrize("change", [
    {"train": {"epochs": 6}}, {"loss": {"box": {"name": "giou", "weight": 2.5}}},
    {"train": {"optimizer": {"lr": 0.0101}}}, {"augment": ["hflip", "vflip"]}, {"data": {"image_size": 160}},
])
def test_any_config_change_gives_a_new_id(write, change):
    base = {"name": "s", "train": {"epochs": 5}, "loss": {"box": {"name": "giou", "weight": 2.0}}}
    changed = yaml.safe_load(yaml.safe_dump(base))
    for key, value in change.items():
        changed[key] = {**changed.get(key, {}), **value} if isinstance(value, dict) else value
    one = trials(load_study(write("a.yaml", base)))[0].trial_id
    two = trials(load_study(write("b.yaml", changed)))[0].trial_id
    assert one != two


def test_seed_is_part_of_the_id():
    config = TrialConfig()
    assert trial_id(config, 0) != trial_id(config, 1)
    assert len(trial_id(config, 0)) == 12


def test_trial_id_is_the_same_in_another_process():
    """Nothing process-specific (hash randomisation, dict order) enters the id."""
    code = ("from ablate.study.expand import trial_id; from ablate.study.config import TrialConfig;"
            "print(trial_id(TrialConfig.model_validate({'loss': {'box': 'giou'}, 'augment': ['hflip', 'mosaic']}), 3))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    here = trial_id(TrialConfig.model_validate({"augment": ["hflip", "mosaic"], "loss": {"box": "giou"}}), 3)
    assert outs == {here}


def test_a_recorded_config_reloads_as_the_same_trial(write):
    # the results store keeps config_dict's JSON; validated again (a report, a resume) it must be the same
    # trial: a validator that rewrote a value on the way in (a scaled lr, a sorted list) would change the id
    study = _study(write, design="grid", factors={"augment": [["hflip", "mosaic"], []], "model.neck": ["pan", "bifpn"],
                                                  "train.optimizer": [{"name": "sgd", "lr": 0.02}]})
    for v in expand(study):
        again = TrialConfig.model_validate(json.loads(json.dumps(config_dict(v.config))))
        assert trial_id(again, 0) == trial_id(v.config, 0), v.name


def test_max_t_null_is_the_longest_variant(write):
    study = _study(write, train={"epochs": 4}, factors={"train.epochs": [6]},
                   scheduler={"name": "asha", "grace_period": 5})
    assert max_t(study, expand(study)) == 6  # grace 5 fits the 6-epoch variant: no error either
    study = _study(write, train={"epochs": 4}, factors={"train.epochs": [6]},
                   scheduler={"name": "asha", "max_t": 8})
    assert max_t(study, expand(study)) == 8


def test_grace_beyond_a_null_max_t_says_where_the_horizon_comes_from(write):
    with pytest.raises(StudyError) as info:
        _study(write, train={"epochs": 4}, factors={"train.epochs": [6]}, scheduler={"name": "asha", "grace_period": 7})
    (problem,) = info.value.problems
    assert "grace_period (7) must be <= max_t (6 epochs: max_t is null, so the longest variant's)" in str(problem)
    assert "or null" not in str(problem)


NETWORKS = {  # a bundle: each level sets several keys at once
    "FCOS": {"model.detector": "fcos"},
    "ATSS": {"model.detector": "atss", "train.optimizer.lr": 0.02},
    "SSD300": {"model.detector": "ssd", "data.image_size": 300, "train.epochs": 24},
}


def test_a_bundle_level_sets_all_its_keys_and_is_named_by_its_label(write):
    variants = expand(_study(write, train={"epochs": 12}, factors={"network": NETWORKS, "loss.box": ["giou"]}))
    assert [v.name for v in variants] == ["baseline", "network=FCOS", "network=ATSS", "network=SSD300",
                                          "loss.box=giou"]
    atss, ssd = variants[2].config, variants[3].config
    assert (atss.model.detector.name, atss.train.optimizer.lr, atss.data.image_size) == ("atss", 0.02, 192)
    assert (ssd.model.detector.name, ssd.data.image_size, ssd.train.epochs) == ("ssd", 300, 24)
    assert variants[3].overrides == {"network": "SSD300"}


def test_a_bundle_level_equal_to_the_baseline_is_the_baseline_and_names_its_rows(write):
    study = _study(write, model={"detector": "fcos"}, factors={"network": NETWORKS, "loss.box": ["giou"]})
    variants = expand(study)
    assert [v.name for v in variants] == ["baseline", "network=ATSS", "network=SSD300", "loss.box=giou"]
    assert [level_of(study, v, "network") for v in variants] == ["FCOS", "ATSS", "SSD300", "FCOS"]


def test_bundles_in_a_grid_and_in_exclude(write):
    study = _study(write, design="grid", factors={"network": NETWORKS, "loss.box": ["giou", "ciou"]},
                   exclude=[{"network": "SSD300", "loss.box": "ciou"}])
    names = [v.name for v in expand(study)]
    assert "network=SSD300, loss.box=giou" in names and "network=SSD300, loss.box=ciou" not in names
    assert "network=ATSS, loss.box=ciou" in names


@pytest.mark.parametrize(("factors", "key", "fragment"), [
    ({"model.detector": {"A": {"model.detector": "atss"}}}, "factors.model.detector", "is a config key"),
    ({"network": {"A": {"model.detektor": "atss"}}}, "factors.network.A.model.detektor",
     "did you mean 'model.detector'"),
    ({"network": {"A": {}}}, "factors.network.A", "sets no key"),
    ({"network": {"A": {"model.detector": "ssd", "model.assigner": "atss"}}}, "factors.network.A",
     "model.assigner: atss does not apply to detector ssd"),
])
def test_a_bad_bundle_is_an_error_naming_the_key(write, factors, key, fragment):
    from ablate.study.expand import check

    with pytest.raises(StudyError) as info:
        check(_study(write, factors=factors))
    assert any(p.key.startswith(key) and fragment in p.message for p in info.value.problems), info.value.problems


def test_a_variant_s_level_is_named_as_the_study_writes_it(write):
    detector = {"name": "retinanet", "head_convs": 2}
    study = _study(write, design="grid", model={"detector": detector}, loss={"box": {"name": "giou"}},
                   factors={"model.detector": [detector, "atss"], "loss.box": ["giou", "ciou"]})
    variants = expand(study)
    # the baseline's detector is the first listed level, written out: the same label as the variants that list it
    assert [level_of(study, v, "model.detector") for v in variants] == [detector, detector, "atss", "atss"]
    assert level_of(study, variants[0], "loss.box") == "giou"  # the level that gives the baseline's value
    plain = _study(write, factors={"loss.box": ["ciou"]})
    assert level_of(plain, expand(plain)[0], "loss.box") == {"name": "smooth_l1", "beta": 1 / 9, "weight": 1.0}
