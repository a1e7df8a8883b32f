"""The results store reads (and writes) in the caller's thread only: Ray forks its processes while the driver
reads its records (store.read_frame), and CPython without the gh-112275 fix deadlocks a child forked while
another thread holds its runtime lock, which pyarrow's converting threads take over and over."""

from __future__ import annotations

import subprocess
import sys

# a table read in a loop in one thread (as the store reads the records), while the main thread starts 1000
# processes with a preexec_fn, as Ray's ray.init does (services.start_ray_process): each child runs Python
# after the fork
RACE = """
import subprocess, sys, threading
import pandas as pd
from pathlib import Path
from ablate.results.store import read_frame, write_frame
path = Path(sys.argv[1]) / "t.parquet"
frame = pd.DataFrame({f"s{i}": [f"x{j}" for j in range(2000)] for i in range(20)})  # long enough for threads
write_frame(frame, path)
stop = threading.Event()
def churn():
    while not stop.is_set():
        read_frame(path)
threading.Thread(target=churn, daemon=True).start()
for _ in range(1000):
    subprocess.Popen(["true"], preexec_fn=lambda: None).wait()
stop.set()
print("forked 1000", flush=True)
"""


def test_processes_forked_while_the_store_reads_do_not_hang(tmp_path):
    # with pyarrow's threads (pd.read_parquet's default) 2 runs in 4 of 600 forks hung here (another script: 4 in 5
    # of 300); 1000 forks take about 12 s
    try:
        done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("a child forked while the store read never started: the fork deadlocked") from None
    assert done.returncode == 0 and "forked 1000" in done.stdout, done.stderr[-2000:]
