"""The process pool that ``convert`` and ``crop`` share, and how many workers to use.

Workers are forked where that is safe: on Linux, from a process that runs one thread.
A fork starts a worker in a few milliseconds, holding every module the parent imported;
``forkserver`` took 0.17 s to the first worker's first task on 2 cores (the server
starting, then the worker importing lxml and the reader), as long as reading 7,000
VOC files. Forking a process that runs other threads (a notebook that imported
TensorFlow, a GUI, numpy's BLAS pool, a pool of ours still closing) can deadlock the
child, and macOS frameworks are not fork-safe: there the workers start by
``forkserver`` (``spawn`` where there is none). Nothing is preloaded into the
forkserver: the workers import what they need side by side, which on a first pool is
quicker than the server importing it alone before forking them.

Workers end when the process that started them ends, also when it is killed (``kill
-9``, an out-of-memory killer, a job scheduler): otherwise they wait for work forever,
and with them the forkserver and the resource tracker, which run until their last
client ends. Each worker watches a pipe whose writing end only the starting process
holds; the kernel closes it when that process dies, however it dies. (``prctl``'s
parent-death signal would not do: a forkserver worker's parent is the server.)

Errors cross the process boundary as :class:`Failure` values, because a
:class:`~dsxsd.errors.DsxsdError` (keyword-only arguments) does not survive pickling.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

from .errors import DsxsdError, WorkerProcessError


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, which
    ``taskset``, cgroups-aware launchers and batch schedulers set), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """``None`` or ``0``: all available cores; ``n >= 1``: ``n``. Negative or non-integer
    values raise :class:`ValueError`."""
    if workers is None:
        return available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a whole number >= 0 (0: all cores), got {workers!r}")
    return workers or available_cores()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, started as the module docs say, that end when
    this process ends."""
    context = multiprocessing.get_context(start_method())
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_end_with, initargs=(_lifeline(),)
    )


# (reading end, writing end) of this process's lifeline; see the module docs.
_LIFELINE: tuple[Connection, Connection] | None = None


def _lifeline() -> Connection:
    global _LIFELINE
    if _LIFELINE is None:
        _LIFELINE = multiprocessing.Pipe(duplex=False)
    return _LIFELINE[0]


def _forget_lifeline() -> None:
    """In a forked child: let go of the parent's writing end, which would otherwise keep
    the parent's workers alive as long as this child; a pool here gets its own."""
    global _LIFELINE
    if _LIFELINE is not None:
        _LIFELINE[1].close()
        _LIFELINE = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lifeline)


def _end_with(lifeline: Connection) -> None:
    """Worker initializer: exit when the lifeline's writing end closes."""
    threading.Thread(target=_exit_at_end_of, args=(lifeline,), daemon=True).start()


def _exit_at_end_of(lifeline: Connection) -> None:
    try:
        lifeline.recv_bytes()  # nothing is ever sent: this returns only at the end
    except (EOFError, OSError):
        pass
    os._exit(1)


def start_method() -> str:
    """``fork`` where it is safe (see the module docs), else ``forkserver`` or ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threads_running() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def threads_running() -> int | None:
    """The threads of this process as the OS counts them (so also those that C
    libraries start, which :mod:`threading` does not see); ``None`` where /proc cannot
    tell."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def worker_died(doing: str, where: str | os.PathLike[str]) -> WorkerProcessError:
    """The error for a pool whose worker ended abruptly (``BrokenProcessPool``). Every
    unfinished task then fails alike, so the file at fault is unknown: ``where`` names
    the input, and one process finds the file."""
    return WorkerProcessError(
        f"a worker process ended abruptly while {doing} (killed for lack of memory, or a "
        "crash in a library); run again with --workers 1 to find the file at fault",
        file=where,
    )


@dataclass(frozen=True)
class Failure:
    """A :class:`DsxsdError` carried back from a worker with its class and fields."""

    kind: type
    reason: str
    file: str | None = None
    line: int | None = None
    row: int | None = None
    field: str | None = None

    @classmethod
    def of(cls, exc: DsxsdError) -> "Failure":
        return cls(type(exc), exc.reason, exc.file, exc.line, exc.row, exc.field)

    def error(self) -> DsxsdError:
        return self.kind(
            self.reason, file=self.file, line=self.line, row=self.row, field=self.field
        )


__all__ = [
    "Failure",
    "available_cores",
    "process_pool",
    "resolve_workers",
    "start_method",
    "threads_running",
    "worker_died",
]
