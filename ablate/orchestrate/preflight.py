"""Before a study starts: what the environment must give it, each checked with the fix in the message.

The results folder and the storage take a write; on a cluster every node sees the storage;
the cluster has the CPUs and GPUs a trial asks for.  Runs in the driver.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from ablate.errors import ConfigError, StorageError
from ablate.orchestrate.storage import Storage
from ablate.study.schema import Study


def check_writable(folder: Path, storage: Storage, *, results_only: bool) -> None:
    """Before anything starts: the results folder (and the storage, when elsewhere) take a write.

    Running as root, permissions rarely stop a write, but a read-only mount or a full disk does; found
    here, nothing is started.  (A disk that fills up later stops the study with the same advice.)
    """
    probe = folder / f".write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ablate")
        probe.unlink()
    except OSError as e:
        raise StorageError(f"the results folder {folder.resolve()} cannot be written ({e.strerror or e}); free space "
                           "or remount it writable, or pass --results a folder that can be written") from None
    if results_only:
        return
    marker = f"{storage.fs()[1]}/.write-check-{os.getpid()}"
    try:
        storage.write_text(marker, "ablate")
    except OSError as e:
        raise StorageError(f"the study's storage {storage.where} cannot be written ({e}); free space or fix its "
                           "permissions, or pass --storage a folder (or bucket) that can be written") from None
    storage.delete_file(marker)


def check_shared(storage: Storage, option: str) -> None:
    """On a multi-node cluster, every node must see the study's storage (trial checkpoints live there).

    A file written there by the driver is looked for by a zero-CPU task pinned to each
    alive node; a node that cannot read it has the folder on its own disk (or no access
    to the bucket), and a trial retried there would start from scratch while the driver
    read stale status files.
    """
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    token = uuid.uuid4().hex
    marker = f"{storage.fs()[1]}/.shared-check-{token}"
    storage.write_text(marker, token)

    @ray.remote(num_cpus=0)
    def sees(where: Storage, path: str, expected: str) -> bool:
        return where.read_text(path) == expected

    try:
        refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(storage, marker, token)
            for n in nodes}
        blind = [name for name, ref in refs.items() if not ray.get(ref, timeout=120)]
    finally:
        storage.delete_file(marker)
    if blind:
        raise ConfigError(f"{option} {storage.base} is not shared: node(s) {', '.join(blind)} cannot see "
                          f"{storage.where}; on a cluster, trial checkpoints must be on storage every node reaches: "
                          "--storage on a folder every node mounts (NFS, EFS), e.g. --storage /mnt/shared/ablate, "
                          "or an object store, e.g. --storage s3://bucket/ablate")


def resources(study: Study, console: Console, *, joined: bool) -> dict[str, float]:
    """Per-trial resources; on a cluster that autoscales, what is missing now may come (a note, not an error)."""
    import ray

    have = ray.cluster_resources()
    cpu, gpu = study.resources.cpu, study.resources.gpu
    if joined and (cpu > have.get("CPU", 0) or gpu > have.get("GPU", 0)):
        console.print(f"[yellow]note[/] a trial needs cpu {cpu:g}, gpu {gpu:g}; the cluster has cpu "
                      f"{have.get('CPU', 0):g}, gpu {have.get('GPU', 0):g} now: trials wait for the autoscaler")
        return {"cpu": cpu, "gpu": gpu}
    if cpu > have.get("CPU", 0):
        raise ConfigError(f"resources.cpu: {cpu:g} per trial, but the Ray cluster has {have.get('CPU', 0):g} CPUs; "
                          f"lower it (-o resources.cpu={max(1, int(have.get('CPU', 1)))})")
    if gpu > 0 and have.get("GPU", 0) == 0:
        console.print(f"[yellow]note[/] resources.gpu: {gpu:g}, but the Ray cluster has no GPU: trials run on CPU")
        gpu = 0.0
    if gpu > have.get("GPU", 0):
        raise ConfigError(f"resources.gpu: {gpu:g} per trial, but the Ray cluster has {have.get('GPU', 0):g} GPUs")
    return {"cpu": cpu, "gpu": gpu}
