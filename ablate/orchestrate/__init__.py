"""Running a study on Ray Tune: launch, ASHA / Optuna, MLflow tracking, the results store, resume.

Ray's environment switches are set by ``ablate/__init__.py`` (ablate/ray_env.py), before Ray is imported.
"""
