"""The local Ray of ``ablate run``: started (or joined) in a thread while the driver gets ready, stopped at the end.

Imports nothing heavy itself, so ``run_study`` makes its refusals (weights, data, results folder)
without Ray, torch or MLflow, then begins Ray's start (about 2 s alone, 3-4 s beside the driver's
imports on 2 cores) and imports Ray Tune, MLflow and the rest beside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ablate import ray_env
from ablate.errors import AblateError
from ablate.orchestrate.terminate import TERM

START_TIMEOUT_S = 300.0  # a local start takes 2-4 s; joining a cluster, Ray's own timeouts come first


@dataclass(frozen=True)
class Workers:
    """What a local Ray's worker processes are for: at most ``at_once`` trials of ``cpu`` and ``gpu`` each,
    whose function imports ``imports``.

    A local start prestarts only as many workers as trials can run at once (Ray's own number is one per CPU,
    each an idle process on a box with more cores than trials).  Where those leave the driver a core, they
    import ``imports`` as they start (Ray's ``preload_python_modules``; every worker this Ray starts imports
    them, and the trials' actors are reused, so none imports them for nothing): a trial's 3-4 s of imports
    (torch, torchvision, the engine) are then done on a core the driver's start leaves idle, instead of after
    the trial is launched.  On 2 cores, one trial: its first step 16.5 -> 11.5 s (medians of 4, alternated);
    two trials: no gain (15.0 and 14.3 s), the driver and two importing workers share the two cores."""

    at_once: int
    cpu: float
    gpu: float
    imports: tuple[str, ...] = ()

    def prestart(self, resources: dict[str, float], ray_default: int) -> int:
        """How many workers a local Ray of ``resources`` prestarts: no more than Ray would, nor than trials fit."""
        fit = [ray_default, self.at_once]
        if self.cpu > 0:
            fit.append(int(resources.get("CPU", 0.0) / self.cpu + 1e-9))
        if self.gpu > 0 and resources.get("GPU", 0.0) > 0:  # no GPU: the trials run on CPU (preflight.py)
            fit.append(int(resources["GPU"] / self.gpu + 1e-9))
        return max(0, min(fit))

    def preload(self) -> bool:
        """Whether the workers import ``imports`` as they start: where they leave the driver a core."""
        from ray._private.utils import get_num_cpus  # Ray's count of this node's CPUs (a container's quota too)

        cpus = get_num_cpus()
        return bool(self.imports) and self.prestart({"CPU": cpus}, int(cpus)) < cpus


def ray_init(address: str | None, verbose: bool, workers: Workers | None = None) -> bool:
    """Join ``address`` (or RAY_ADDRESS) or start a local Ray (for ``workers``); True if this process started it."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    quiet = logging.WARNING if verbose else logging.ERROR
    for name in ("ray", "ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(quiet)
    if not verbose:  # Tune logs each trial error with its traceback; ablate records its reason and notes it
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return False
    ray_env.uv_hook_off_in_ray()  # Ray may have been imported before ablate set the switch
    local = address is None
    saved = _sigterm_action()
    if local:  # the processes ray.init starts (and theirs) inherit this mask: SIGTERM stays blocked in them
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    workers = workers if local else None  # a joined cluster's workers are its own
    preload = {"preload_python_modules": list(workers.imports)} if workers and workers.preload() else None
    try:
        with _lean(verbose, workers.prestart if workers else None) if local else contextlib.nullcontext():
            ray.init(address=address, include_dashboard=False, log_to_driver=verbose, logging_level=quiet,
                     configure_logging=True, _system_config=preload)
    finally:
        # Ray's core worker put in abseil's failure handler for SIGTERM (a C++ stack dump, then abort), from
        # whichever thread ran ray.init (signal.signal cannot be called outside the main thread): SIGTERM's
        # disposition goes back to what it was, ablate's handler (terminate.py), before it is unblocked
        _sigterm_action(saved)
        if local:  # a SIGTERM that came meanwhile is delivered now, to ablate's handler
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    TERM.install()
    return local


@contextlib.contextmanager
def _lean(log_monitor: bool, prestart: Callable[[dict[str, float], int], int] | None = None):
    """A local ``ray.init`` without three Python processes ablate never uses, each importing Ray on the same
    cores as the start: the dashboard's API server (with ``include_dashboard=False`` Ray still starts it, to
    report usage statistics, and ``ray.init`` waits until it is up), the autoscaler's monitor (a local Ray has
    nothing to scale) and, unless ``log_monitor`` (``--verbose``: workers' output shown in the driver), the log
    monitor.  A local start: 4.0 -> 2.0 s, its processes' CPU 4.2 -> 2.2 s (medians, bench/ray_start.py).  Ray
    runs without a dashboard as it does when one fails to start; ``ray status`` then has no autoscaler to ask.
    With ``prestart`` (``Workers.prestart``), the raylet prestarts the workers it says instead of one per CPU.
    Private Ray (``Node.start_api_server``, ``RayParams``' fields, the raylet's command line): pyproject.toml
    pins Ray's minor version and tests/orchestrate/test_logic.py checks they are there."""
    from ray._private import node, parameter, ray_constants, services

    start_api_server, init, start_process = (node.Node.start_api_server, parameter.RayParams.__init__,
                                             services.start_ray_process)

    def params(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.no_monitor = True
        self.include_log_monitor = log_monitor

    def start(command, process_type, *args, **kwargs):
        if process_type == ray_constants.PROCESS_TYPE_RAYLET and prestart is not None:
            command = prestarting(command, prestart)
        return start_process(command, process_type, *args, **kwargs)

    node.Node.start_api_server = lambda self, **kwargs: None
    parameter.RayParams.__init__ = params
    services.start_ray_process = start
    try:
        yield
    finally:
        node.Node.start_api_server, parameter.RayParams.__init__ = start_api_server, init
        services.start_ray_process = start_process


PRESTART = "--num_prestart_python_workers="
RESOURCES = "--static_resource_list="


def prestarting(command: list[str], prestart: Callable[[dict[str, float], int], int]) -> list[str]:
    """The raylet's ``command`` with its prestarted workers' number (``PRESTART``, one per CPU) set by
    ``prestart(resources, that number)``, the resources read from ``RESOURCES`` (``CPU,2.0,GPU,1,...``)."""
    listed = next((w[len(RESOURCES):].split(",") for w in command if w.startswith(RESOURCES)), None)
    if listed is None:
        return command
    resources = {name: float(value) for name, value in zip(listed[::2], listed[1::2], strict=True)}
    return [f"{PRESTART}{prestart(resources, int(w[len(PRESTART):]))}" if w.startswith(PRESTART) else w
            for w in command]


def _sigterm_action(new: bytes | None = None) -> bytes:
    """SIGTERM's process-wide disposition (libc's ``sigaction``, its struct kept opaque): read, or set to
    ``new`` (a value read before); returns the one it replaced."""
    libc = ctypes.CDLL(None, use_errno=True)
    old = ctypes.create_string_buffer(512)  # struct sigaction: 152 bytes on x86-64 glibc
    if libc.sigaction(signal.SIGTERM, None if new is None else ctypes.create_string_buffer(new, 512), old) != 0:
        raise OSError(ctypes.get_errno(), "sigaction(SIGTERM)")
    return old.raw


class RayStart:
    """Ray for one ``run_study``: ``begin()`` runs ``ray_init`` in a thread, so a local Ray's processes start
    (2-4 s on 2 cores) while the driver imports Ray Tune, MLflow and the engine,
    takes the lock and reads its records; ``wait()`` gives ray_init's answer (True: this process started a local Ray) or raises
    its error in the caller's thread; ``close()`` stops a Ray this started.

    The thread lives until ``close()``: Ray starts its processes with PR_SET_PDEATHSIG, which kills them
    when the *thread* that started them ends.  In a thread ``ray.init`` puts in no SIGTERM handler of its
    own, and ray_init's SIGTERM block stays in that thread and the processes it starts.
    """

    def __init__(self, address: str | None, verbose: bool, workers: Workers | None = None):
        self.address, self.verbose, self.workers = address, verbose, workers
        self._thread: threading.Thread | None = None
        self._ready, self._release = threading.Event(), threading.Event()
        self._started = False
        self._error: BaseException | None = None

    def begin(self) -> None:
        if self._thread is not None:
            return
        # The caller imports its own modules (Ray Tune, MLflow, the engine) beside the start thread, and two
        # threads importing one module can meet it partly imported: what ray.init imports as it runs is
        # imported here first.  A local start needs only these few (0.2 s; Ray Tune, 1-1.4 s, then imports
        # beside the start); joining a cluster takes other paths, so Ray Tune, which covers them, comes first.
        local = not (self.address or os.environ.get("RAY_ADDRESS"))
        if local:
            imports_of_a_local_start()
        else:
            import ray.tune  # noqa: F401
        self._thread = threading.Thread(target=self._run, name="ray-start", daemon=True)
        self._thread.start()
        import ray.tune  # noqa: F401,F811 -- beside a local start

    def _run(self) -> None:
        try:
            self._started = ray_init(self.address, self.verbose, self.workers)
        except BaseException as e:  # noqa: BLE001 -- raised again by wait(), in the caller's thread
            self._error = e
        self._ready.set()
        if self._started:
            self._release.wait()  # Ray's processes die with this thread (see the class doc)
            ray_shutdown()

    def wait(self) -> bool:
        self.begin()
        if not self._ready.wait(START_TIMEOUT_S):
            raise AblateError(f"Ray did not start within {START_TIMEOUT_S:g} s (a local start takes 2-4 s); its "
                              f"logs are in {_ray_logs()}; nothing was run or recorded, run the same command again")
        if self._error is not None:
            raise self._error
        return self._started

    def close(self) -> None:
        """Stop the local Ray this started; after a SIGTERM it gets 10 s (a Ray whose GCS is gone, as when
        something SIGKILLed it, can wait a minute) and the run goes on without it.  A start that never
        finished is not waited for (a hung ``ray.init``: its processes end with this one)."""
        if self._thread is None or not self._ready.is_set():
            return
        self._release.set()
        self._thread.join(10 if TERM.requested else None)


def imports_of_a_local_start() -> None:
    """Import what a local ``ray_init`` imports as it runs (tests/orchestrate/test_logic.py lists them again and
    fails if the driver's later imports meet any other)."""
    import ray._common.usage.usage_lib  # noqa: F401
    import ray._private.thirdparty.pynvml  # noqa: F401
    import ray.dag.compiled_dag_node  # noqa: F401
    from ray._private import node, parameter  # noqa: F401 -- _lean's
    from ray._private.utils import get_dashboard_dependency_error

    get_dashboard_dependency_error()  # as Ray probes it: imports aiohttp and the rest it finds


def _ray_logs() -> str:
    """Where a local Ray's logs are: its temp folder ($RAY_TMPDIR, else $TMPDIR on Linux, else /tmp) + ray/."""
    try:
        from ray._common.utils import get_default_ray_temp_dir  # private: the rule Ray itself follows
    except ImportError:
        return "session_latest/logs in Ray's temp folder ($RAY_TMPDIR/ray, else $TMPDIR/ray or /tmp/ray)"
    return f"{get_default_ray_temp_dir()}/session_latest/logs"


def ray_shutdown() -> None:
    """``ray.shutdown()`` of the local Ray ``ray_init`` started, whose processes block SIGTERM.

    A SIGTERM sent to every process of a job (Slurm, ``timeout``, a process-group kill) used to end
    Ray's raylet too, and the driver with it at its next touch of the object store ("connection to
    the plasma store is failed. Terminate the process": exit 1, no records flushed, no message).
    With SIGTERM blocked in Ray's own processes the driver stops the study itself (terminate.py);
    Ray's graceful kill would then wait 1 s per process for a SIGTERM that never lands, and the
    raylet's agents would outlive it, so all of them are killed at once (SIGKILL): a local Ray
    keeps nothing worth a graceful stop.
    """
    import psutil
    import ray

    node = ray._private.worker._global_node  # private: Ray has no public switch for this
    spawned = []
    if node is not None:
        for infos in node.all_processes.values():
            for info in infos:
                with contextlib.suppress(psutil.Error):
                    spawned += psutil.Process(info.process.pid).children(recursive=True)  # workers, agents
        kill = node.kill_all_processes
        node.kill_all_processes = lambda **kw: kill(**{**kw, "allow_graceful": False})
    ray.shutdown()
    for process in spawned:
        with contextlib.suppress(psutil.Error):
            process.kill()


def exposure_note() -> str | None:
    """A warning when a local Ray would take anyone who reaches this machine, else None.

    Ray 2.60 binds its gRPC servers (GCS, raylet, every worker) to all interfaces and turns
    ``_node_ip_address="127.0.0.1"`` into the node's own address, so no setting keeps a local Ray on
    loopback.  What keeps other machines out is Ray's token authentication, on by default for a local
    start (the token in ``~/.ray/auth_token``): a client without it is refused (tests/orchestrate/test_exposure.py).
    ``RAY_AUTH_MODE=disabled`` turns that off; Ray's own warning is silenced with its logs, so ablate says it.
    """
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "disabled":
        return None
    return ("RAY_AUTH_MODE=disabled: the local Ray listens on every network interface without authentication, "
            "and anyone who can reach this machine can run code in it; unset RAY_AUTH_MODE (Ray's default is "
            "token authentication) unless this machine is on a closed network")
