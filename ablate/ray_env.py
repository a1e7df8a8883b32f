"""Ray's environment switches, set when ``ablate`` is imported (before anything of ablate's imports Ray).

- ``RAY_ENABLE_UV_RUN_RUNTIME_ENV=0``: workers use this interpreter (the project's environment).
  Ray's ``uv run`` hook would instead re-launch every worker with the driver's ``uv run``
  command line, from a copy of the current folder: with uv called by a relative path (the
  Makefile's bootstrapped ``.tools/bin/uv``) that file does not exist there, and every worker
  dies at start.  Ray reads this one when it is *first imported*, so ``off_in_ray`` puts it
  right again before ``ray.init`` when something imported Ray before ablate.
- ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``: the Recorder is the logger.
- ``RAY_CHDIR_TO_TRIAL_DIR=0``: relative paths in a study mean what they mean to the driver.

A value the user set is kept (``setdefault``).
"""

from __future__ import annotations

import os

SWITCHES = {
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
}


def apply() -> None:
    for key, value in SWITCHES.items():
        os.environ.setdefault(key, value)


def uv_hook_off_in_ray() -> None:
    """Make an already imported Ray see ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` as it is now (call before ``ray.init``).

    Ray keeps the switch as a module constant read at its import; ``ray.init`` looks it up there
    (``ray._private.worker._maybe_modify_runtime_env``).  tests/test_ray_env.py fails loudly if
    an upgrade of Ray moves it.
    """
    from ray._private import ray_constants

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = os.environ.get("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "1").lower() in (
        "1", "true")
