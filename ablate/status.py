"""How a trial ends, in one vocabulary: the Parquet records, MLflow's ``status`` tag and the tables.

A trial's ``status`` is one word, ``running`` or one of ``FINAL``; its *label* adds what the
word alone does not say, and ``parse`` reads a label back:

    completed
    pruned@epoch 2                 stopped by the scheduler after epoch 2
    failed: OOM at batch_size 16   the reason is the trial's own or Ray's

The results table writes a label shorter (``pruned@2``, ``short``) and a variant's seeds
as counts (``variant_text``).
"""

from __future__ import annotations

import re
from collections import Counter

COMPLETED, PRUNED, FAILED, RUNNING = "completed", "pruned", "failed", "running"
FINAL = (COMPLETED, PRUNED, FAILED)  # the statuses a trial ends with
STATUS = "status.json"  # in a trial's folder: its status, history and starts (engine/trial.py writes it)
CRASHED = "crashed"  # prefix of the reason of a trial Ray gave up retrying: not deterministic, run again on resume

_PRUNED = re.compile(r"pruned@(?:epoch )?(\d+)$")


def label(status: str, *, epoch: int | None = None, reason: str | None = None) -> str:
    """The recorded label: ``completed``, ``pruned@epoch 2``, ``failed: reason``, ``running``.

    Example:
        >>> label("pruned", epoch=2), label("failed", reason="OOM at batch_size 16")
        ('pruned@epoch 2', 'failed: OOM at batch_size 16')
    """
    if status == PRUNED:
        return f"pruned@epoch {epoch}" if epoch is not None else PRUNED
    if status == FAILED:
        return f"failed: {reason or 'unknown'}"
    return status or "unknown"


def parse(text: str) -> tuple[str, int | None, str]:
    """(status, epoch, reason) of a label, its inverse: ``'pruned@epoch 2'`` -> ``('pruned', 2, '')``.

    Example:
        >>> parse("failed: OOM"), parse("pruned@epoch 2"), parse("completed")
        (('failed', None, 'OOM'), ('pruned', 2, ''), ('completed', None, ''))
    """
    if text.startswith(FAILED):
        return FAILED, None, text.partition(": ")[2]
    pruned = _PRUNED.match(text)
    if pruned:
        return PRUNED, int(pruned.group(1)), ""
    return text, None, ""


def ended(row: dict) -> bool:
    """A recorded trial that a rerun leaves alone: completed, pruned, or failed for a reason that would repeat."""
    status = row.get("status")
    return status in (COMPLETED, PRUNED) or (status == FAILED and not str(row.get("reason", "")).startswith(CRASHED))


def short(status: str, epochs: int, reason: str = "") -> str:
    """One trial in the results table: ``completed``, ``pruned@2``, ``failed: <reason>``, ``running``.

    Example:
        >>> short("pruned", 2), short("failed", 0, "OOM at batch_size 16")
        ('pruned@2', 'failed: OOM at batch_size 16')
    """
    if status == PRUNED:
        return f"pruned@{epochs}"
    return label(status, reason=reason)


def variant_text(labels: list[str]) -> str:
    """A variant's status from its trials' ``short`` labels.

    One label when all seeds agree (``completed``, ``pruned@2``, ``failed: OOM``); else a
    count of each, completed first: ``completed 1, pruned@2 1, failed 1 (OOM)``.
    """
    counts = Counter(labels)
    if len(counts) == 1:
        return labels[0]
    rank = {COMPLETED: 0, PRUNED: 1, RUNNING: 2, FAILED: 3}

    def key(text: str) -> tuple:
        word, _, rest = text.partition("@")
        word = word.partition(":")[0]
        return rank.get(word, 4), int(rest) if rest.isdigit() else 0, text

    parts = []
    for text in sorted(counts, key=key):
        if text.startswith("failed: "):
            parts.append(f"failed {counts[text]} ({text[len('failed: '):]})")
        else:
            parts.append(f"{text} {counts[text]}")
    return ", ".join(parts)
