"""train.distill teachers found in the study before anything runs: each missing piece named, and the order."""

from __future__ import annotations

import json

import pytest

from ablate.orchestrate.teachers import resolve, split
from ablate.study import load_study
from ablate.study.errors import StudyError
from ablate.study.expand import check, trials


def _study(write, tiny_raw, factors, seeds=(0, 1), **train):
    data = {"name": "kd", **tiny_raw, "factors": factors, "seeds": list(seeds), "scheduler": {"name": "none"}}
    data["train"] = {**data["train"], **train}
    study = load_study(write("kd.yaml", data))
    variants = check(study)
    return study, variants, trials(study, variants)


def test_each_student_gets_its_teachers_trial_of_the_same_seed(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"train.distill": [{"name": "logits", "teacher": "baseline"},
                                                                          {"name": "features", "teacher": "baseline"}]})
    found = resolve(study, variants, planned, {})
    base = {t.seed: t.trial_id for t in planned if t.variant.is_baseline}
    assert len(found) == 4 and all(found[t.trial_id] == base[t.seed] for t in planned if not t.variant.is_baseline)
    # a trial id names that very trial, whatever the student's seed
    study, variants, planned = _study(write, tiny_raw, {"train.distill": [{"name": "logits", "teacher": base[1]}]})
    assert set(resolve(study, variants, planned, {}).values()) == {base[1]}


def test_an_unknown_teacher_is_named_with_the_variants(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"model.neck": ["pan"],
                                                        "train.distill": [{"name": "logits", "teacher": "model.neck=pna"}]})
    with pytest.raises(StudyError, match=r"train.distill.teacher: 'model.neck=pna' .* is neither a variant of study kd "
                       r"\(did you mean 'model.neck=pan'\?\) \(variants: baseline, model.neck=pan, "):
        resolve(study, variants, planned, {})


def test_a_teacher_variant_without_the_students_seed_says_which_seeds_it_has(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"train.distill": ["logits"]})
    without = [t for t in planned if not (t.variant.is_baseline and t.seed == 1)]
    with pytest.raises(StudyError, match=r"variant baseline has no trial of seed 1 \(its seeds: 0\), which variant "
                       r"train.distill=logits seed 1 distils from"):
        resolve(study, variants, without, {})


def test_a_teacher_trial_of_an_earlier_run_must_have_completed(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"train.distill": [{"name": "logits", "teacher": "0123456789ab"}]})
    records = {"0123456789ab": {"status": "pruned", "status_label": "pruned@epoch 1", "variant_name": "old",
                                "config": json.dumps(planned[0].variant.config.model_dump(mode="json"))}}
    with pytest.raises(StudyError, match=r"trial 0123456789ab \(variant old, an earlier run's\) has not completed "
                       r"\(pruned@epoch 1\), so variant .* has no teacher"):
        resolve(study, variants, planned, records)
    records["0123456789ab"]["status"] = "completed"
    assert set(resolve(study, variants, planned, records).values()) == {"0123456789ab"}


def test_a_teacher_of_another_family_or_width_is_refused_naming_both_keys(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"network": {"r": {"model.detector": "retinanet",
                                                                          "train.distill": "logits"}}})
    with pytest.raises(StudyError, match=r"train.distill.teacher: variant baseline is model.detector fcos, the "
                       r"student is retinanet; the same detector family"):
        resolve(study, variants, planned, {})
    study, variants, planned = _study(write, tiny_raw, {"network": {"w": {"model.channels": 64,
                                                                          "train.distill": "features"}}})
    with pytest.raises(StudyError, match=r"variant baseline is model.channels 32, the student is 64"):
        resolve(study, variants, planned, {})


def test_the_baseline_cannot_teach_itself_nor_a_student_teach(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"model.neck": ["pan"]}, distill="logits")
    with pytest.raises(StudyError, match="variant baseline seed 0 names itself as its teacher"):
        resolve(study, variants, planned, {})
    study, variants, planned = _study(write, tiny_raw, {"train.distill": [{"name": "logits", "teacher": "baseline"},
                                                                          {"name": "features",
                                                                           "teacher": "train.distill=logits(teacher=baseline)"}]})
    with pytest.raises(StudyError, match=r"variant train.distill=logits\(teacher=baseline\) itself distils "
                       r"\(train.distill: logits from baseline\); a teacher must train without"):
        resolve(study, variants, planned, {})


def test_students_wait_for_their_teacher_and_fail_when_it_did_not_complete(write, tiny_raw):
    study, variants, planned = _study(write, tiny_raw, {"train.distill": ["logits"]}, seeds=(0,))
    found = resolve(study, variants, planned, {})
    teacher, student = planned
    assert split(planned, found, {}) == ([teacher], [student], [])
    done = {teacher.trial_id: {"status": "completed"}}
    assert split([student], found, done) == ([student], [], [])
    pruned = {teacher.trial_id: {"status": "pruned", "status_label": "pruned@epoch 1", "variant_name": "baseline",
                                 "seed": 0}}
    ready, waiting, orphans = split([student], found, pruned)
    assert not ready and not waiting and orphans[0][0] == student
    assert orphans[0][1] == f"teacher trial {teacher.trial_id} (baseline seed 0) ended pruned@epoch 1: nothing to distil from"


def test_an_added_seed_of_a_student_is_added_to_its_teacher_variant_too(tmp_path, write):
    from ablate.orchestrate.seeds import add_seeds, planned_trials
    from ablate.results.store import ResultsStore

    path = write("s.yaml", {"name": "s", "seeds": [0, 1, 2], "decision": {"max_seeds": 5},
                            "factors": {"loss.box": ["diou"],
                                        "train.distill": [{"name": "logits", "teacher": "loss.box=diou"}]}})
    study = load_study(path)
    variants = check(study)
    folder = tmp_path / "results" / "s"
    store = ResultsStore(folder)
    finals = {0: [0.40, 0.42, 0.41], 1: [0.45, 0.471, 0.46], 2: [0.43, 0.40, 0.42]}  # 2 (the student): unresolved
    for v, values in finals.items():
        for seed, value in enumerate(values):
            store.add_epoch(f"v{v}s{seed}", {"epoch": 1, "mAP": value})
            store.upsert_trial(f"v{v}s{seed}", variant=v, variant_name=variants[v].name, seed=seed,
                               status="completed", epochs=1)
    store.flush()
    assert add_seeds(study, variants, folder) == [(0, 3), (1, 3), (2, 3)]  # variant 1 is resolved, yet it teaches
    planned = planned_trials(study, variants, folder)
    found = resolve(study, variants, planned, {})
    assert {planned_trial.seed for planned_trial in planned if planned_trial.trial_id in found.values()} == {0, 1, 2, 3}
