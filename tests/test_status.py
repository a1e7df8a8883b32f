"""The one status vocabulary: labels, their parser, the table's short form."""

import pytest

from ablate.status import FINAL, label, parse, short, variant_text


@pytest.mark.parametrize("status, kwargs, text", [
    ("completed", {}, "completed"),
    ("pruned", {"epoch": 2}, "pruned@epoch 2"),
    ("failed", {"reason": "OOM at batch_size 16"}, "failed: OOM at batch_size 16"),
    ("failed", {}, "failed: unknown"),
    ("running", {}, "running"),
])
def test_a_label_parses_back_to_what_made_it(status, kwargs, text):
    assert label(status, **kwargs) == text
    assert parse(text) == (status, kwargs.get("epoch"), kwargs.get("reason", "unknown" if status == "failed" else ""))


def test_a_reason_with_a_colon_is_kept_whole():
    assert parse(label("failed", reason="crashed: RayTaskError: boom")) == ("failed", None, "crashed: RayTaskError: boom")


def test_every_final_status_has_a_label_that_names_it():
    assert {parse(label(s, epoch=1, reason="r"))[0] for s in FINAL} == set(FINAL)


def test_table_labels():
    assert short("completed", 3) == "completed"
    assert short("pruned", 2) == "pruned@2"
    assert short("failed", 0, "OOM") == "failed: OOM"
    assert short("failed", 0) == "failed: unknown"
    assert variant_text(["pruned@2", "pruned@2"]) == "pruned@2"
    assert variant_text(["pruned@10", "completed", "pruned@2"]) == "completed 1, pruned@2 1, pruned@10 1"
    assert variant_text(["failed: OOM", "running"]) == "running 1, failed 1 (OOM)"
