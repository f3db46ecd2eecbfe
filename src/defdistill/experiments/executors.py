"""Where the sweep's tasks run: in this process (``local``) or on a Ray cluster (``ray``).

An executor maps a task function ``fn(shared, task)`` over a list of tasks and yields
the results in task order. ``shared`` is one large read-only object (the data set) that
every task needs: the local executor passes it as it is, Ray puts it once in its object
store. Tasks write their own results (:mod:`.tasks`), so whatever finished before a
failure or a killed driver is reused by the next run.

Ray is an optional dependency (``pip install 'defdistill[ray]'``). Each Ray task asks
for ``cpus_per_task`` CPUs (and sets torch's thread count to match) and, when the cluster
has GPUs and the device is not ``cpu``, for ``gpus_per_task`` of a GPU (:func:`gpu_request`;
a fraction packs several of the sweep's small, independent trainings onto one GPU); a task
whose worker dies or that raises a transient error (``OSError``, ``MemoryError``, an
unwritable output) is retried up to ``max_retries`` times. Deterministic failures (a model
that did not learn, bad data) are not retried: they would fail again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import torch

from defdistill.io import OutputError
from defdistill.names import ExecutorKind, values

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = values(ExecutorKind)
RAY_MISSING = "install the ray extra: pip install 'defdistill[ray]'"
RETRIED = (OSError, MemoryError, OutputError)  # transient; a RuntimeError may be CUDA out of memory


class ExecutorError(Exception):
    """An executor cannot be used (Ray missing, cluster unreachable, no GPU, ...)."""


class Executor(Protocol):
    """Runs independent tasks; results come back in task order."""

    @property
    def name(self) -> str:
        """Its kind (``local``, ``ray``), as ``--executor`` names it."""
        ...

    def start(self) -> None:
        """Acquire the resources (connect to a cluster); ``map`` does it when needed."""
        ...

    def map(self, fn: Callable[[Any, T], R], tasks: Sequence[T], shared: Any = None) -> Iterator[R]:
        """Yield ``fn(shared, task)`` for every task, in order; raise the first failure. An
        executor with workers submits the tasks when called, so that a second ``map`` called
        before the first one's results are read fills the workers the first leaves idle."""
        ...

    def close(self) -> None:
        """Release what the executor started."""
        ...


class LocalExecutor:
    """Runs every task in this process, one after the other, as soon as it is asked for."""

    name = ExecutorKind.LOCAL

    def start(self) -> None:
        pass

    def map(self, fn: Callable[[Any, T], R], tasks: Sequence[T], shared: Any = None) -> Iterator[R]:
        for task in tasks:
            yield fn(shared, task)

    def close(self) -> None:
        pass


def _in_worker(fn: Callable[[Any, T], R], shared: Any, task: T, threads: int) -> R:
    """What a Ray worker runs: ``fn(shared, task)`` with torch using ``threads`` threads."""
    torch.set_num_threads(threads)
    return fn(shared, task)


class RayExecutor:
    """Runs tasks in parallel on Ray workers (a local instance or a cluster).

    Args:
        address: ``None`` starts a private local Ray instance (all CPUs of this machine),
            ``"auto"`` joins the cluster started on this machine by ``ray start``,
            ``"HOST:PORT"`` a remote cluster. If Ray is already initialised in this
            process, that instance is used as it is.
        cpus_per_task: CPUs each task reserves (and torch threads it uses).
        max_retries: attempts after the first for a task that fails transiently.
        device: the sweep's device; ``auto`` or ``cuda`` ask for a GPU when the cluster
            has GPUs.
        gpus_per_task: the share of one GPU each task reserves, in (0, 1]: ``1`` one task per
            GPU, ``0.25`` four at a time on each.
    """

    name = ExecutorKind.RAY

    def __init__(
        self, address: str | None = None, cpus_per_task: int = 1, max_retries: int = 2,
        device: str = "auto", gpus_per_task: float = 1.0,
    ) -> None:  # fmt: skip
        if cpus_per_task < 1 or max_retries < 0:
            raise ValueError(f"need cpus_per_task >= 1 and max_retries >= 0, got {cpus_per_task}, "
                             f"{max_retries}")  # fmt: skip
        if not 0 < gpus_per_task <= 1:
            raise ValueError(f"--gpus-per-task must be in (0, 1], got {gpus_per_task:g}")
        try:
            import ray
        except ImportError:
            raise ExecutorError(RAY_MISSING) from None
        self._ray = ray
        self.address, self.cpus_per_task, self.max_retries = address, cpus_per_task, max_retries
        self.device, self.gpus_per_task = device, gpus_per_task
        self._started = False
        self._remote: Any = None
        self._pending: list[Any] = []  # submitted tasks whose results were not read yet

    def start(self) -> None:
        """Connect to (or start) Ray once and check it has what the tasks will ask for."""
        if self._remote is not None:
            return
        ray = self._ray
        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=True)  # fmt: skip
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"at {self.address}" if self.address else "on this machine"
                raise ExecutorError(f"cannot start or reach Ray {where} ({' '.join(str(err).split())}); "
                                    "start a cluster with `ray start --head` or check "
                                    "--address") from err  # fmt: skip
            self._started = True
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if cpus < self.cpus_per_task:  # Ray would wait forever for such a worker
            raise ExecutorError(f"--cpus-per-task {self.cpus_per_task} but the Ray cluster has "
                                f"{cpus:g} CPUs")  # fmt: skip
        if self.device == "cuda" and gpus < 1:
            raise ExecutorError("--device cuda but the Ray cluster has no GPU; use --device auto or cpu")
        num_gpus = gpu_request(self.device, gpus, self.gpus_per_task)
        log.info("ray: %g CPUs, %g GPUs; %d CPU(s) and %g GPU per task", cpus, gpus,
                 self.cpus_per_task, num_gpus)  # fmt: skip
        self._remote = ray.remote(_in_worker).options(
            num_cpus=self.cpus_per_task, num_gpus=num_gpus, max_retries=self.max_retries,
            retry_exceptions=list(RETRIED),
        )  # fmt: skip

    def map(self, fn: Callable[[Any, T], R], tasks: Sequence[T], shared: Any = None) -> Iterator[R]:
        """Submit every task now, before any result is asked for; yield the results in order.

        A later ``map`` may be called before this one's results are read: its tasks queue
        behind these and start as workers free up. After a failure every task submitted and
        not yet read, of any ``map``, is still awaited (what they compute is saved), then the
        task's own exception is raised, not Ray's wrapper.
        """
        self.start()
        shared_ref = self._ray.put(shared)
        refs = [self._remote.remote(fn, shared_ref, task, self.cpus_per_task) for task in tasks]
        self._pending.extend(refs)
        return self._results(refs)

    def _results(self, refs: list[Any]) -> Iterator[Any]:
        ray = self._ray
        for ref in refs:
            try:
                yield ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                self._await_pending(ref)
                cause = getattr(err, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise ExecutorError(f"a Ray task failed: {' '.join(str(err).split())[:300]}") from None
            except ray.exceptions.RayError as err:  # a worker or node died more often than retried
                raise ExecutorError(f"a Ray task was lost: {' '.join(str(err).split())[:300]}; "
                                    "run again to resume") from None  # fmt: skip
            finally:
                if ref in self._pending:
                    self._pending.remove(ref)

    def _await_pending(self, failed: Any) -> None:
        rest = [ref for ref in self._pending if ref is not failed]
        if rest:
            self._ray.wait(rest, num_returns=len(rest))

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it."""
        if self._started:
            self._ray.shutdown()
            self._started = False
        self._remote = None
        self._pending = []


def gpu_request(device: str, cluster_gpus: float, gpus_per_task: float = 1.0) -> float:
    """The share of a GPU one task asks Ray for: ``gpus_per_task`` when the device may be a GPU
    (``auto`` or ``cuda``) and the cluster has one, else 0 (the task runs on CPUs)."""
    return gpus_per_task if device != "cpu" and cluster_gpus >= 1 else 0.0


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable ``HOST:PORT`` (``ray.init`` would retry for minutes)."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--address must be auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ExecutorError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); "
                            "is `ray start --head` running there?") from None  # fmt: skip


def make_executor(
    name: str = ExecutorKind.LOCAL, address: str | None = None, cpus_per_task: int = 1, max_retries: int = 2,
    device: str = "auto", gpus_per_task: float = 1.0,
) -> Executor:  # fmt: skip
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == ExecutorKind.LOCAL:
        if address is not None:
            raise ValueError("--address needs --executor ray")
        return LocalExecutor()
    return RayExecutor(address=address, cpus_per_task=cpus_per_task, max_retries=max_retries,
                       device=device, gpus_per_task=gpus_per_task)  # fmt: skip
