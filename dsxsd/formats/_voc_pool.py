"""Reading a folder of VOC files with worker processes (``read_voc(..., workers=N)``).

This process and the workers split the folder's files in chunks (:func:`run_in_pool`);
workers send each file back as a plain record (see ``voc._pack``) or a
:class:`~dsxsd._parallel.Failure`, which this process turns into images and errors. What
is read, its order, the skipped list and the error raised are what one process gives:
the pool only changes who reads. ``dsxsd.convert`` from VOC to CSV hands the workers
other chunk tasks (see :mod:`dsxsd.conversion`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import DsxsdError

# Below this many files a folder is read in this process: with the LabelImg fast path a
# file takes about 25 us to read, of which a second process saves about half, less the
# cost of sending the result back. Forked workers (see :mod:`dsxsd._parallel`) start in
# a few milliseconds: measured on 2 cores (best of 5, a CLI run each), two processes were
# level with one at 2,000 files and 1.1x and 1.35x faster at 5,000 and 17,000. Workers
# started by forkserver or spawn import lxml and the reader first, 0.17 s on a first
# pool: there one process and two were level at 17,000 files, and two 1.4-1.6x faster at
# 30,000 and 60,000.
PARALLEL_MIN_FILES = 4_000
PARALLEL_MIN_FILES_UNFORKED = 20_000
# Files per task sent to a worker: large enough that pickling is a small part of a
# task, small enough that ``on_error="raise"`` stops soon after the first bad file.
_CHUNK_FILES = (64, 512)


def min_files() -> int:
    """The fewest files worth a pool with the workers this process can start now."""
    from .._parallel import start_method

    return PARALLEL_MIN_FILES if start_method() == "fork" else PARALLEL_MIN_FILES_UNFORKED


def chunks_of(files: list[str], workers: int) -> list[list[str]]:
    """``files`` in consecutive chunks, a few per worker."""
    size = min(max(len(files) // (workers * 8), _CHUNK_FILES[0]), _CHUNK_FILES[1])
    return [files[start : start + size] for start in range(0, len(files), size)]


def read_in_pool(
    files: list[str], images: str | None, workers: int, stop: bool
) -> Iterator[Any]:
    """The outcome of each file, in file order (see :func:`run_in_pool`). With ``stop``,
    a chunk ends at its first bad file and what is still queued is cancelled once the
    caller stops at it: the error raised is the first in file order, as in one process."""
    from . import voc

    folder = None if images is None else Path(images)
    image_of = voc._image_of
    results = run_in_pool(
        chunks_of(files, workers),
        _read_chunk,
        (images, stop),
        workers,
        where=Path(files[0]).parent,
        here=lambda chunk: [image_of(o) for o in voc._read_files(chunk, folder)],
        arrived=lambda outcomes: [image_of(o) for o in outcomes],
    )
    with contextlib.closing(results):  # stopping here stops the pool
        for outcomes in results:
            yield from outcomes


def run_in_pool(
    chunks: list[list[str]],
    task: Callable[..., Any],
    args: tuple[Any, ...],
    workers: int,
    *,
    where: Path,
    here: Callable[[list[str]], Any] | None = None,
    arrived: Callable[[Any], Any] | None = None,
) -> Iterator[Any]:
    """``task(chunk, *args)`` of each chunk, in chunk order, worked out by this process
    (``here(chunk)`` where given) and ``workers - 1`` others (``task``, then
    ``arrived`` of its result in this process). The others are given chunks from the back
    of the list, two each at a time, and this process works from the front until the two
    meet: starting a process costs as much as reading thousands of files, and this
    process would otherwise spend it waiting. (Chunks are handed out as they are needed
    rather than all at once and then cancelled, which Python 3.11 does not survive when a
    worker dies.) Between its own chunks this process takes what the workers sent back
    (``arrived``) as soon as it arrives, not when its turn in chunk order comes: left to
    the end, that work kept the workers idle for a quarter of the run. A caller that
    stops early (an error raised at a chunk, the generator closed) cancels what is still
    queued. ``where`` names the input in the error for a worker that died."""
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from .._parallel import process_pool, worker_died

    here = here or (lambda chunk: task(chunk, *args))
    arrived = arrived or (lambda result: result)
    queued_per_worker = 2  # one running, one waiting in the pipe
    pool = process_pool(workers - 1)
    try:
        finished: deque[int] = deque()  # chunks whose future is done, as they finish
        pending: dict[int, Any] = {}
        front, back = 0, len(chunks)  # chunks[front:back]: neither worked out here nor handed out

        def hand_out() -> None:
            nonlocal back
            while back > front and len(pending) < queued_per_worker * (workers - 1):
                back -= 1
                future = pool.submit(task, chunks[back], *args)
                future.add_done_callback(lambda _, index=back: finished.append(index))
                pending[back] = future

        hand_out()
        done: dict[int, Any] = {}
        for index in range(len(chunks)):
            while index not in done:
                if finished:
                    number = finished.popleft()
                    try:
                        result = pending.pop(number).result()
                    except BrokenProcessPool:
                        raise worker_died("reading", where) from None
                    done[number] = arrived(result)
                    hand_out()
                elif front < back:
                    done[front] = here(chunks[front])
                    front += 1
                else:
                    wait(list(pending.values()), return_when=FIRST_COMPLETED)
            yield done.pop(index)
    finally:
        # Also on an early exit (an error raised, a generator closed): cancel what has
        # not started. The tasks have no side effects, so running ones need no waiting.
        pool.shutdown(wait=False, cancel_futures=True)


def _read_chunk(files: list[str], images: str | None, stop: bool) -> list[Any]:
    """Runs in a worker (and for each chunk of a VOC to CSV conversion, see
    :mod:`dsxsd.conversion`): records and :class:`~dsxsd._parallel.Failure` values."""
    from .._parallel import Failure
    from . import voc

    folder = None if images is None else Path(images)
    outcomes: list[Any] = []
    with voc._gc_paused():
        for outcome in voc._read_files(files, folder):
            if isinstance(outcome, DsxsdError):
                outcomes.append(Failure.of(outcome))
                if stop:
                    break
            else:
                outcomes.append(outcome if isinstance(outcome, tuple) else voc._pack(outcome))
    return outcomes


__all__ = [
    "PARALLEL_MIN_FILES",
    "PARALLEL_MIN_FILES_UNFORKED",
    "chunks_of",
    "min_files",
    "read_in_pool",
    "run_in_pool",
]
