"""Errors a user can act on.  The CLI prints them without a traceback (unless --debug)."""

import difflib
import errno
from collections.abc import Iterable


class AblateError(Exception):
    """Base of every error whose message alone tells the user what to fix."""

    exit_code = 2  # the CLI's exit status for it (2: a mistake to fix, nothing started)


class DataError(AblateError):
    """A dataset problem, naming the file and the record (image id, annotation id, XML file)."""


class ConfigError(AblateError):
    """A configuration that validates but cannot be built here (a missing weights file, ...)."""


class TrialFailed(AblateError):
    """A deterministic failure of one trial (non-finite loss, OOM, bad data): not worth a retry.

    ``reason`` is the short text recorded as the trial's status, e.g.
    ``non-finite loss_box at epoch 3, iteration 17`` or ``OOM at batch_size 16``.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


# errnos of a folder that cannot take a write: full, over quota, read-only
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class StorageError(AblateError):
    """A results or storage folder that cannot be written (full disk, quota, read-only).

    Not the study's fault and not one trial's: the study stops (exit code 1) and resumes
    where it stopped once the folder can be written again.
    """

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'giou'?)`` or an empty string when nothing is close."""
    choices = [str(c) for c in choices]
    same = [c for c in choices if c.lower() == str(word).lower()]  # 'adamW' is 'adamw', not 'adam'
    close = same or difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
