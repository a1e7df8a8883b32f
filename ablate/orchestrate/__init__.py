"""Running a study on Ray Tune: launch, ASHA / Optuna, MLflow tracking, the results store, resume."""

import os

# Read by Ray when it is first imported, so set before anything here imports it.
# Workers use this interpreter (the project's environment); Ray's `uv run` hook would
# instead rebuild an environment per worker from the current folder, the user's, not ablate's.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the Recorder is the logger
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative paths in a study mean what they mean to the driver
