"""Running a study on Ray Tune, resumably; a trial's life in five steps:

1. the driver plans the trials and checks the environment (run.py, preflight.py) while Ray starts (local_ray.py);
2. Tune starts a worker for each (tuner.py: resources, scheduler.py / search.py, start_watch.py);
3. the worker pulls the trial's folder and trains it (worker.py, worker_watchdog.py, storage.py);
4. each epoch is reported to Tune (``tune.report``, with the folder pushed back);
5. the driver records it in Parquet, then MLflow (record.py -> results/store.py, mlflow_mirror.py -> mlflow_runs.py);
   when every trial ended, seeds.py may add seeds to the variants still unresolved, and the round repeats.

Files named ``worker*`` run in the Ray worker process, storage.py in both; the rest in the driver.
lock.py keeps one driver per study folder, view.py is its console, terminate.py turns SIGTERM into a stop.  Ray's environment switches are
set by ``ablate/__init__.py`` (ablate/ray_env.py), before Ray is imported.
"""
