"""A local Ray's start as `ablate run` makes it (lean) against Ray's own `ray.init`, side by side.

    uv run python bench/ray_start.py [--repeat 5]

Each run is a fresh interpreter that starts a local Ray, alternately with plain ``ray.init`` (the
arguments ablate passes: no dashboard, no logs to the driver) and with ablate's ``local_ray.ray_init``,
which leaves out the dashboard's API server, the autoscaler's monitor and the log monitor
(local_ray._lean).  A second later it asks for a trial's actor: with Tune's runtime environment of
environment variables after plain ``ray.init``, without it after ablate's (tuner.actors_in_prestarted_workers:
it can take a worker Ray prestarted).  Per run: ``ray.init``'s wall time, the actor's time to answer, and the
CPU seconds Ray's processes used by 4 s after the start (what they take from a study's driver and its
first trial on the same cores).  Prints the medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = r"""
import json, os, sys, time
import psutil, ray
lean = sys.argv[1] == "ablate"
began = time.perf_counter()
if lean:
    from ablate.orchestrate.local_ray import ray_init, ray_shutdown
    ray_init(None, verbose=False)
else:
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=40, configure_logging=True)
started = time.perf_counter()

@ray.remote(num_cpus=1)
class Ping:
    def pid(self):
        return os.getpid()

time.sleep(1.0)  # the driver's own set-up between Ray's start and Tune's first actor
asked = time.perf_counter()
# Tune gives a trial's actor a runtime environment of environment variables; ablate leaves it out in a local Ray
env = {} if lean else {"runtime_env": {"env_vars": {"PL_DISABLE_FORK": "1", "RAY_CHDIR_TO_TRIAL_DIR": "0"}}}
ray.get(Ping.options(**env).remote().pid.remote())
answered = time.perf_counter()
time.sleep(max(0.0, 4.0 - (answered - started)))
kids = psutil.Process().children(recursive=True)
cpu = 0.0
for p in kids:
    try:
        cpu += sum(p.cpu_times()[:2])
    except psutil.Error:
        pass
print(json.dumps({"init": started - began, "actor": answered - asked, "cpu": cpu, "processes": len(kids)}))
ray_shutdown() if lean else ray.shutdown()
"""


def one(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, mode], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"ray": [], "ablate": []}
    for i in range(args.repeat):
        for mode in (("ray", "ablate") if i % 2 == 0 else ("ablate", "ray")):
            runs[mode].append(one(mode))
            print(f"{mode:6s} {json.dumps(runs[mode][-1])}", flush=True)
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    print(f"\nmedians of {args.repeat} runs each, alternated:")
    print("| figure | ray.init (Ray's own) | ablate (lean) | ratio |")
    print("| --- | --- | --- | --- |")
    for key, label in (("init", "ray.init wall time, s"), ("actor", "a trial's actor, asked 1 s after the start, to its answer, s"),
                       ("cpu", "CPU of Ray's processes by 4 s, s"), ("processes", "Ray's processes")):
        print(f"| {label} | {med['ray'][key]:.2f} | {med['ablate'][key]:.2f} | {med['ablate'][key] / med['ray'][key]:.2f} |")


if __name__ == "__main__":
    main()
