"""Where grid cells run: `local` (one spawned process per cell, as many at once as the cores allow) or `ray` (one
Ray task per cell, on a cluster or on a Ray instance started here). Both return each cell's result to the driver."""

from __future__ import annotations

import importlib
import ipaddress
import math
import multiprocessing as mp
import os
import socket
import warnings
from contextlib import contextmanager, nullcontext
from multiprocessing.connection import wait
from pathlib import Path

from ..processes import spawn_safe_main, usable_cores
from .grid_cells import run_cell
from .grid_file import Cell, GridError

RAY_INSTALL = 'pip install "sorl-lab[ray]" (or pip install ray==2.60.0)'


def cell_dir(out: Path, cell: Cell) -> str:
    return str(out / "cells" / cell.id)


def _child(cell: Cell, folder: str, threads: int, conn) -> None:
    conn.send(run_cell(cell, folder, threads))
    conn.close()


class LocalBackend:
    """Each cell in its own spawned process (a crash fails that cell only), `slots` at a time."""

    def __init__(self, out: Path, cpus_per_cell: int = 1):
        self.out, self.threads = out, cpus_per_cell
        self.slots = max(1, usable_cores() // max(1, cpus_per_cell))
        self.queue: list[Cell] = []
        self.running: dict = {}  # receiving end -> (cell, process)
        self.context = mp.get_context("spawn")

    def submit(self, cell: Cell) -> None:
        self.queue.append(cell)

    def stack_size(self, cells: list[Cell]) -> int:
        """Seeds per stack job: spread over the slots, every core busy (each job has its own processes' cores)."""
        return math.ceil(len(cells) / self.slots)

    def _start(self) -> None:
        while self.queue and len(self.running) < self.slots:
            cell = self.queue.pop(0)
            receive, send = self.context.Pipe(duplex=False)
            process = self.context.Process(target=_child, args=(cell, cell_dir(self.out, cell), self.threads, send),
                                           name=f"grid-{cell.id}")
            with spawn_safe_main():
                process.start()
            send.close()
            self.running[receive] = (cell, process)

    def next_result(self) -> tuple[Cell, dict]:
        """Block until a running cell ends; its result, or a failure when its process died."""
        self._start()
        sentinels = {process.sentinel: receive for receive, (_, process) in self.running.items()}
        ready = wait(list(self.running) + list(sentinels))
        receive = ready[0] if ready[0] in self.running else sentinels[ready[0]]
        cell, process = self.running.pop(receive)
        try:
            result = receive.recv()
        except (EOFError, OSError):
            process.join(5)
            result = {"state": "failed", "node": socket.gethostname(), "seconds": "",
                      "error": f"its process died (exit code {process.exitcode}): killed, or out of memory?"}
        receive.close()
        process.join()
        return cell, result

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.running)

    def close(self) -> None:
        """Stop what still runs: SIGTERM first, so training saves a checkpoint to resume from."""
        self.queue.clear()
        for _, process in self.running.values():
            process.terminate()
        for _, process in self.running.values():
            process.join(30)
            if process.is_alive():
                process.kill()
        self.running.clear()


def import_ray():
    try:
        import ray
    except ImportError:
        raise GridError(f"--backend ray needs Ray, which is not installed here: {RAY_INSTALL}") from None
    return ray


def check_reachable(address: str, timeout: float) -> None:
    """Fail within `timeout` seconds when nothing accepts a connection at HOST:PORT."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise GridError(f"--address {address!r} is not `auto`, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError:
        raise GridError(unreachable(address)) from None


def unreachable(address: str) -> str:
    if address == "auto":
        return "--address auto found no Ray cluster started on this machine (`ray start --head`)"
    return f"no Ray cluster answered at {address}: is `ray start --head` running there, and is its port open from here?"


@contextmanager
def connect_within(timeout: float):
    """Bound ray.init's own retries (about 20 s for a cluster, 30 s for Ray Client) by `timeout` seconds, unless
    the user set these Ray variables."""
    seconds = str(max(1, math.ceil(timeout)))
    names = ("RAY_gcs_server_port_wait_time_s", "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S",
             "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S")
    added = [name for name in names if name not in os.environ]
    os.environ.update({name: seconds for name in added})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray Client's timeout warning: the error below says it
            yield
    finally:
        for name in added:
            os.environ.pop(name, None)


LOOPBACK = "127.0.0.1"
RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, on the loopback address


def is_local(address: str | None) -> bool:
    """True for a Ray on this machine: one started here (None), `auto`, or a loopback HOST:PORT."""
    if not address or address == "auto":
        return True
    if address.startswith("ray://"):
        return False  # Ray Client dials the host as given: nothing for us to pin
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def on_loopback():
    """Keep a Ray on this machine on 127.0.0.1. Ray 2.60 (ray._private.services) replaces a loopback address, a
    GCS address such as 127.0.0.1:PORT as much as `_node_ip_address="127.0.0.1"`, by the node IP it sees from
    outside (the interface with the default route, eth0), and a node started here binds its servers to all
    interfaces and registers that IP; where eth0 is unreachable (a firewall, a sandbox) the driver then cannot
    reach its own GCS. Its single-machine mode (ENABLE_RAY_CLUSTER false, as on macOS and Windows) keeps
    127.0.0.1: the node IP is the loopback address and the GCS, the raylet and the workers bind 127.0.0.1 only.
    The environment variable reaches the processes Ray starts; the constant is read when ray is imported, which
    it already is, so it is set too. Both are restored afterwards."""
    try:
        constants = importlib.import_module("ray._private.ray_constants")
    except ImportError:  # a later Ray that moved it: the environment variable alone still reaches new processes
        constants = None
    had_constant = hasattr(constants, "ENABLE_RAY_CLUSTER")
    saved_env, saved_constant = os.environ.get(RAY_LOCAL_ONLY), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[RAY_LOCAL_ONLY] = "0"
    if had_constant:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(RAY_LOCAL_ONLY, None)
        else:
            os.environ[RAY_LOCAL_ONLY] = saved_env
        if had_constant:
            constants.ENABLE_RAY_CLUSTER = saved_constant


OWN_RAY_ATTEMPTS = 3


def start_own_ray(ray, attempts: int = OWN_RAY_ATTEMPTS) -> None:
    """ray.init of a local instance on 127.0.0.1. Ray 2.60's raylet gives its Python agents 15 s to start and takes
    the node down when they are late, as they can be on a busy 2-core machine: a start that times out is retried."""
    for _ in range(attempts):
        try:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK)
            return
        except Exception as exc:  # Ray raises a bare Exception for this one
            if "timed out during startup" not in str(exc):
                raise
            ray.shutdown()
    raise GridError(f"Ray's own processes did not start in time ({attempts} tries): the machine is too busy; run the "
                    "grid again when it is quieter, or start Ray yourself (`ray start --head`) and pass --address")


class RayBackend:
    """Each cell a Ray task (num_cpus = cpus_per_cell; train cells also num_gpus); results come back here."""

    def __init__(self, out: Path, address: str | None, cpus_per_cell: int = 1, gpus_per_train_cell: float | None = None,
                 retries: int = 0, connect_timeout: float = 5.0):
        ray = self.ray = import_ray()
        if address and address != "auto":
            check_reachable(address, connect_timeout)
        try:
            with on_loopback() if is_local(address) else nullcontext():
                if address:  # on this machine: reached at 127.0.0.1, not at the node IP Ray would put in its place
                    with connect_within(connect_timeout):
                        ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:  # a Ray instance of our own on 127.0.0.1 only, stopped in close()
                    start_own_ray(ray)
        except ConnectionError:
            raise GridError(unreachable(address)) from None
        except (RuntimeError, ValueError) as exc:
            raise GridError(f"could not connect to Ray at {address}: {' '.join(str(exc).split())}") from None
        self.out, self.cpus, self.retries = out, cpus_per_cell, retries
        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        self.gpus = gpus_per_train_cell if gpus_per_train_cell is not None else (1.0 if cluster_gpus else 0.0)
        self.task = ray.remote(run_cell)
        self.pending: dict = {}  # object ref -> cell

    def gpus_for(self, cell: Cell) -> float:
        device = cell.options.get("agent.device", "auto")
        if cell.kind != "train" or device == "cpu":
            return 0.0
        return self.gpus if device == "auto" else max(self.gpus, 1.0)

    def stack_size(self, cells: list[Cell]) -> int:
        """Seeds per stack job: all of them on a GPU (one device trains them as one model); one on CPU workers,
        which a cluster has many of (a stack on one task's cores would only queue the seeds)."""
        return len(cells) if self.gpus_for(cells[0]) > 0 else 1

    def submit(self, cell: Cell) -> None:
        options = dict(num_cpus=self.cpus, num_gpus=self.gpus_for(cell), max_retries=self.retries, name=cell.id)
        ref = self.task.options(**options).remote(cell, cell_dir(self.out, cell), self.cpus)
        self.pending[ref] = cell

    def next_result(self) -> tuple[Cell, dict]:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        cell = self.pending.pop(ready[0])
        try:
            return cell, self.ray.get(ready[0])
        except self.ray.exceptions.RayError as exc:
            return cell, {"state": "failed", "node": "", "seconds": "", "error": ray_failure(self.ray, exc)}

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def close(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.pending.clear()
        self.ray.shutdown()


def ray_failure(ray, exc: Exception) -> str:
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return "its Ray worker process died (killed, or out of memory?)"
    if isinstance(exc, ray.exceptions.NodeDiedError):
        return "its node left the Ray cluster"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given"
    return f"Ray could not run it: {first}"


def make_backend(name: str, out: Path, address: str | None, cpus_per_cell: int, gpus_per_train_cell: float | None,
                 retries: int, connect_timeout: float):
    if name == "local":
        if address:
            raise GridError("--address is for --backend ray; the local backend runs on this machine's cores")
        return LocalBackend(out, cpus_per_cell)
    return RayBackend(out, address, cpus_per_cell, gpus_per_train_cell, retries, connect_timeout)

