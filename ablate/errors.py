"""Errors a user can act on.  The CLI prints them without a traceback (unless --debug)."""


class AblateError(Exception):
    """Base of every error whose message alone tells the user what to fix."""


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
