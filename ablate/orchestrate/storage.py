"""Where trial folders (checkpoint, status.json) and Ray Tune's state live: the study's ``storage``.

- null: under the results folder, ``results/<study>/``, as on one machine;
- a path: a folder every node mounts at the same place (NFS, EFS), ``<path>/<study>/``;
- ``s3://bucket/prefix`` or ``gs://bucket/prefix``: an object store, through pyarrow's
  filesystems (credentials and endpoint from the usual environment: ``AWS_*``,
  ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``).

On a folder, a worker trains in the trial's folder itself.  On an object store it trains
in a local scratch folder: it pulls the trial's folder before it starts (a retry or a
resumed study continues from the stored checkpoint) and pushes it after every epoch,
before the epoch is reported, so a lost node costs at most the epoch it was in.
The driver reads each trial's ``status.json`` from the same place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ablate.status import STATUS

TRIALS_DIR = "trials"
OWNER = ".owner"  # in a scratch folder: the pid of the worker training there
SCHEMES = ("s3", "gs", "gcs")


def is_remote(uri: str) -> bool:
    return uri.split("://", 1)[0] in SCHEMES if "://" in uri else False


@dataclass(frozen=True)
class Storage:
    """A study's storage; picklable (Ray ships it to every worker), the filesystem is opened where used."""

    base: str  # an absolute local path, or an s3:// / gs:// URI, without the study's name
    study: str
    _opened: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, storage: str | None, results: Path, study: str) -> Storage:
        if storage is None:
            return cls(str(Path(results).resolve()), study)
        if is_remote(storage):
            return cls(storage.rstrip("/"), study)
        return cls(str(Path(storage.removeprefix("file://")).expanduser().resolve()), study)

    def __getstate__(self) -> dict:
        return {"base": self.base, "study": self.study}  # not the open filesystem (S3 clients do not travel)

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "base", state["base"])
        object.__setattr__(self, "study", state["study"])
        object.__setattr__(self, "_opened", {})

    @property
    def remote(self) -> bool:
        return is_remote(self.base)

    @property
    def where(self) -> str:
        """The study's folder as users write it: ``/mnt/shared/ablate/<study>`` or ``s3://bucket/x/<study>``."""
        return f"{self.base}/{self.study}"

    def fs(self):
        """(pyarrow filesystem, the study's path in it), opened once per process."""
        if "fs" not in self._opened:
            import pyarrow.fs as pafs

            if self.remote:
                fs, path = pafs.FileSystem.from_uri(self.base)
            else:
                fs, path = pafs.LocalFileSystem(), self.base
            self._opened["fs"] = (fs, f"{path.rstrip('/')}/{self.study}")
        return self._opened["fs"]

    def trial_path(self, tid: str) -> str:
        return f"{self.fs()[1]}/{TRIALS_DIR}/{tid}"

    def ray_path(self) -> str:
        return f"{self.fs()[1]}/ray"

    def local_dir(self, tid: str) -> Path:
        """Where a worker trains: the trial's folder itself, or a scratch folder for an object store."""
        if not self.remote:
            return Path(self.trial_path(tid))
        return Path(tempfile.gettempdir()) / "ablate-scratch" / self.study / tid

    # ------------------------------------------------------------------ files
    def read_text(self, path: str) -> str | None:
        fs, _ = self.fs()
        try:
            with fs.open_input_stream(path) as f:
                return f.read().decode()
        except (FileNotFoundError, OSError):
            return None

    def write_text(self, path: str, text: str) -> None:
        fs, _ = self.fs()
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(text.encode())

    def delete_file(self, path: str) -> None:
        fs, _ = self.fs()
        try:
            fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass

    def read_status(self, tid: str) -> dict:
        """A trial's status.json ({} if there is none yet or it cannot be read)."""
        text = self.read_text(f"{self.trial_path(tid)}/{STATUS}")
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def trial_ids(self) -> list[str]:
        import pyarrow.fs as pafs

        fs, _ = self.fs()
        selector = pafs.FileSelector(f"{self.fs()[1]}/{TRIALS_DIR}", allow_not_found=True)
        return sorted(i.base_name for i in fs.get_file_info(selector) if i.type == pafs.FileType.Directory)

    def pull(self, tid: str) -> Path:
        """The trial's folder as a local folder (an object store's copy replaces any local leftover)."""
        local = self.local_dir(tid)
        if not self.remote:
            return local
        import pyarrow.fs as pafs

        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        (local / OWNER).write_text(str(os.getpid()))
        sweep_scratch(local.parent)
        fs, _ = self.fs()
        if fs.get_file_info(self.trial_path(tid)).type == pafs.FileType.Directory:
            pafs.copy_files(self.trial_path(tid), str(local), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
        return local

    def push(self, tid: str, *, done: bool = False) -> None:
        """Copy the local trial folder to the object store (status.json last); ``done`` drops the scratch copy."""
        if not self.remote:
            return
        import pyarrow.fs as pafs

        local, fs = self.local_dir(tid), self.fs()[0]
        fs.create_dir(self.trial_path(tid), recursive=True)
        files = sorted((p for p in local.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: p.name == STATUS)  # status.json never claims an epoch the checkpoint lacks
        for path in files:
            pafs.copy_files(str(path), f"{self.trial_path(tid)}/{path.name}",
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        if done:
            shutil.rmtree(local, ignore_errors=True)

    def discard(self) -> None:
        """Delete the trial folders and Ray's state (``--restart``)."""
        import pyarrow.fs as pafs

        fs, _ = self.fs()
        for path in (f"{self.fs()[1]}/{TRIALS_DIR}", self.ray_path()):
            if fs.get_file_info(path).type == pafs.FileType.Directory:
                fs.delete_dir(path)


def sweep_scratch(root: Path) -> list[str]:
    """Delete the scratch folders under ``root`` whose worker process has ended; returns their names.

    A trial that ends normally drops its scratch copy, but one that Ray stops (ASHA's
    pruning, a Ctrl-C) is killed before it can, and a node running hundreds of trials would
    keep every pruned trial's checkpoint.  Each scratch folder names its worker in
    ``.owner`` (a dot file, so never pushed); folders without one are left alone (one
    being created right now has none yet).
    """
    gone = []
    for folder in root.iterdir() if root.is_dir() else []:
        try:
            os.kill(int((folder / OWNER).read_text()), 0)
        except ProcessLookupError:  # its worker has ended
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder.name)
        except (OSError, ValueError):  # no owner file yet, or a process we may not signal: alive
            continue
    return gone


def disk_problem(text: str) -> str | None:
    """What an error's text says is wrong with a folder: full or read-only (ENOSPC, EDQUOT, EROFS), else None.

    Errors of a trial reach the driver as text (Ray's error file, Tune's wrapped traceback), so the
    errno survives only as its message: that message is returned, e.g. "No space left on device".
    """
    from ablate.errors import DISK_ERRNOS

    text = str(text).lower()
    return next((os.strerror(e) for e in sorted(DISK_ERRNOS) if os.strerror(e).lower() in text), None)
