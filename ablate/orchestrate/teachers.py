"""``train.distill``: each student trial's teacher, found in the study before anything runs, and the order.

A teacher is named by a variant of the study (``baseline``, ``model.neck=pan``: its trial of the
student's seed) or by a trial id (that trial, whatever its seed: a variant of the study, or one
its records keep from an earlier run).  ``resolve`` maps every student's trial id to its teacher's,
with an error naming the key and what is missing when a teacher is unknown, lacks the seed, does
not fit the student (study/distill.py) or, when it is not part of this run, never completed.

Running order (run.py): one ``ablate run`` trains in passes.  A pass starts every trial that is
not a student, and every student whose teacher's trial has completed; the next pass starts the
students whose teachers completed in the one before (a teacher is never itself a student, so two
passes do).  A student whose teacher ended pruned or failed is recorded failed, naming the teacher.
Nothing computed is lost: a pass is a Tune run like any other, resumed as any other.
"""

from __future__ import annotations

import json
import re

from ablate.errors import did_you_mean
from ablate.status import COMPLETED, FAILED, ended
from ablate.study.config import TrialConfig
from ablate.study.distill import teacher_mismatch
from ablate.study.errors import Problem, StudyError
from ablate.study.expand import Trial, Variant, trial_id
from ablate.study.schema import Study

TRIAL_ID = re.compile(r"[0-9a-f]{12}")
KEY = "train.distill.teacher"


def _fail(study: Study, message: str) -> StudyError:
    origin = study._source.of(("train", "distill")) if study._source else "study"
    return StudyError([Problem(origin, KEY, message)])


def students(trials: list[Trial]) -> list[Trial]:
    return [t for t in trials if t.variant.config.train.distill.name != "none"]


def teacher_of(study: Study, student: Trial, variants: list[Variant], seeds_of: dict[int, list[int]],
               records: dict[str, dict], planned: dict[str, Trial]) -> tuple[str, str, TrialConfig]:
    """(teacher trial id, how messages name it, its config) of ``student``; StudyError if there is none."""
    name = student.variant.config.train.distill.teacher
    me = f"variant {student.variant.name} seed {student.seed}"
    variant = next((v for v in variants if v.name == name), None)
    if variant is not None:
        if variant.index == student.variant.index:
            raise _fail(study, f"{me} names itself as its teacher; name another variant (e.g. baseline) or a "
                        "trial id")
        seeds = seeds_of.get(variant.index, [])
        if student.seed not in seeds:
            raise _fail(study, f"variant {name} has no trial of seed {student.seed} (its seeds: "
                        f"{', '.join(map(str, seeds)) or 'none'}), which {me} distils from; give it that seed, "
                        "or name a trial id as the teacher")
        tid, config, who = trial_id(variant.config, student.seed), variant.config, f"variant {name}"
    elif TRIAL_ID.fullmatch(name) and (name in planned or name in records):
        tid = name
        if name in planned:
            config, who = planned[name].variant.config, f"trial {name} (variant {planned[name].variant.name})"
        else:
            row = records[name]
            config = TrialConfig.model_validate(json.loads(row["config"]))
            who = f"trial {name} (variant {row.get('variant_name', '?')}, an earlier run's)"
            if row.get("status") != COMPLETED:
                raise _fail(study, f"{who} has not completed ({row.get('status_label') or row.get('status')}), "
                            f"so {me} has no teacher; name a completed trial or a variant of this study")
        if tid == student.trial_id:
            raise _fail(study, f"{me} names itself as its teacher; name another trial")
    else:
        names = [v.name for v in variants]
        raise _fail(study, f"'{name}' ({me}) is neither a variant of study {study.name}{did_you_mean(name, names)} "
                    f"(variants: {', '.join(names)}) nor one of its trial ids (see `ablate plan --json`)")
    problem = teacher_mismatch(student.variant.config, config, who)
    if problem:
        raise _fail(study, problem.removeprefix(f"{KEY}: ") + f" ({me})")
    return tid, who, config


def resolve(study: Study, variants: list[Variant], planned: list[Trial], records: dict[str, dict]) -> dict[str, str]:
    """Student trial id -> teacher trial id, for every student in ``planned``; StudyError before anything runs."""
    learners = students(planned)
    if not learners:
        return {}
    if study.design == "optuna":
        raise _fail(study, "design optuna samples each trial as it goes, so no teacher can be ordered before "
                    "it; distil in a grid, one_at_a_time or cumulative study")
    seeds_of: dict[int, list[int]] = {}
    for t in planned:
        seeds_of.setdefault(t.variant.index, []).append(t.seed)
    by_id = {t.trial_id: t for t in planned}
    return {t.trial_id: teacher_of(study, t, variants, seeds_of, records, by_id)[0] for t in learners}


def split(todo: list[Trial], teachers: dict[str, str], records: dict[str, dict]
          ) -> tuple[list[Trial], list[Trial], list[tuple[Trial, str]]]:
    """(ready to start, waiting for a teacher still to run, (student, reason) whose teacher ended otherwise)."""
    ready, waiting, orphans = [], [], []
    for t in todo:
        tid = teachers.get(t.trial_id)
        row = records.get(tid, {}) if tid is not None else {}
        if tid is None or row.get("status") == COMPLETED:
            ready.append(t)
        elif ended(row):
            label = row.get("status_label") or row.get("status")
            orphans.append((t, f"teacher trial {tid} ({row.get('variant_name', '?')} seed {row.get('seed', '?')}) "
                               f"ended {label}: nothing to distil from"))
        else:
            waiting.append(t)
    return ready, waiting, orphans


def orphan_status(tid: str, reason: str) -> dict:
    """The status.json of a student that never started because its teacher did not complete."""
    return {"trial_id": tid, "status": FAILED, "reason": reason, "epochs_done": 0, "history": [], "starts": []}
