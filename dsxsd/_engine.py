"""The engine that reads folders of per-image files and runs ``convert`` and ``crop`` on
worker processes: chunking, the worker pool, failures carried back, ordering, first-error
or skip semantics and the memory tricks, in one place for every format and stage.

A folder-of-files format (VOC, YOLO, labelme) gives the engine a :class:`FileFormat`: how
to list a folder's files and the context they are read with, and one pure function from
one file's bytes to its annotation (the reference reader). It may add a fast path, a
function that reads many files' bytes at once and answers ``None`` for each file it
cannot vouch for; those go to the reference reader, which also gives every error. The
contract tests check each fast path against its reference reader.

What is read, its order, the skipped list and the error raised are what one process
gives: workers only change who reads. Under ``on_error="raise"`` the error raised is the
first bad file in file order; under ``"skip"`` every bad file is listed, in file order.

Workers are forked where that is safe: on Linux, from a process that runs one thread. A
fork starts a worker at once, holding every module the parent imported. Forking a process
that runs other threads (a notebook that imported TensorFlow, a GUI, numpy's BLAS pool, a
pool of ours still closing) can deadlock the child, and macOS frameworks are not
fork-safe: there the workers start by ``forkserver`` (``spawn`` where there is none),
importing what they need side by side. Such workers start slower, so a folder needs more
files before a pool pays (see ``MIN_FILES``; the figures are in benchmarks/README.md).

Workers end when the process that started them ends, also when it is killed (``kill
-9``, an out-of-memory killer, a job scheduler): otherwise they wait for work forever,
and with them the forkserver and the resource tracker. Each worker watches a pipe whose
writing end only the starting process holds; the kernel closes it when that process
dies, however it dies. (``prctl``'s parent-death signal would not do: a forkserver
worker's parent is the server.)

Errors cross the process boundary as :class:`Failure` values, because a pickled
:class:`~dsxsd.errors.DsxsdError` comes back without its fields (file, line, row, field:
keyword-only arguments), and the message must still name the file and line.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sys
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

from .errors import DsxsdError, ErrorPolicy, UsageError, WorkerProcessError
from .annotations import BBox, ImageAnnotation, ObjectAnnotation, SkippedFile

# --------------------------------------------------------------------------- how many


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
    """``None`` or ``0``: all available cores; ``n >= 1``: ``n``. Anything else is a
    :class:`~dsxsd.errors.UsageError` (a ``ValueError``)."""
    if workers is None:
        return available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"workers must be a whole number >= 0 (0: all cores), got {workers!r}")
    return workers or available_cores()


# Fewest files (images, for crop) worth a pool: below them starting workers costs more
# than they save. Forked workers start at once; others import lxml and the readers first.
MIN_FILES = 4_000
MIN_FILES_UNFORKED = 20_000
# Files per chunk handed to a worker: large enough that pickling is a small part of a
# chunk, small enough that ``on_error="raise"`` stops soon after the first bad file.
CHUNK_FILES = (64, 512)


def min_files() -> int:
    """The fewest files worth a pool with the workers this process can start now."""
    return MIN_FILES if start_method() == "fork" else MIN_FILES_UNFORKED


def chunks_of(items: Sequence[Any], workers: int, bounds: tuple[int, int] | None = None) -> list[Any]:
    """``items`` in consecutive chunks, a few per worker, each within ``bounds`` (default
    :data:`CHUNK_FILES`)."""
    bounds = bounds or CHUNK_FILES
    size = min(max(len(items) // (workers * 8), bounds[0]), bounds[1])
    return [items[start : start + size] for start in range(0, len(items), size)]


# --------------------------------------------------------------------------- the pool


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
    """The error for a pool whose worker ended abruptly. Every unfinished task then fails
    alike, so the file at fault is unknown: ``where`` names the input, and one process
    finds the file."""
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


def run_chunks(
    chunks: Sequence[Any],
    task: Callable[..., Any],
    args: tuple[Any, ...],
    workers: int,
    *,
    where: str | os.PathLike[str],
    doing: str,
    here: Callable[[Any], Any] | None = None,
    arrived: Callable[[Any], Any] | None = None,
    wait_on_exit: bool = False,
) -> Iterator[Any]:
    """``task(chunk, *args)`` of each chunk, in chunk order, worked out by this process
    (``here(chunk)`` where given) and ``workers - 1`` others (``task``, then ``arrived``
    of its result in this process).

    The others are given chunks from the back of the list, two each at a time, and this
    process works from the front until the two meet: starting a process costs as much as
    reading thousands of files, and this process would otherwise spend it waiting.
    (Chunks are handed out as they are needed rather than all at once and then
    cancelled, which Python 3.11 does not survive when a worker dies.) Between its own
    chunks this process takes what the workers sent back as soon as it arrives, not when
    its turn in chunk order comes, so the workers are never kept waiting for it. A caller
    that stops early (an error raised at a chunk, the generator closed) cancels what is
    still queued; with ``wait_on_exit`` it also waits for running chunks (which write
    files, for crop). ``where`` and ``doing`` name the input and the work in the error
    for a worker that died."""
    here = here or (lambda chunk: task(chunk, *args))
    arrived = arrived or (lambda result: result)
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield here(chunk)
        return
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
                        raise worker_died(doing, where) from None
                    done[number] = arrived(result)
                    hand_out()
                elif front < back:
                    done[front] = here(chunks[front])
                    front += 1
                else:
                    wait(list(pending.values()), return_when=FIRST_COMPLETED)
            yield done.pop(index)
    finally:
        pool.shutdown(wait=wait_on_exit, cancel_futures=True)


# --------------------------------------------------------------------------- memory tricks


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many small objects are made and kept
    (a folder being read): each collection walks every object kept so far, for nothing,
    since nothing read forms a reference cycle. The few an error's traceback may make
    are collected once it runs again.

    Afterwards the objects go straight to the oldest generation, where a long-lived
    result belongs; left in the youngest, the first collection after the pause would
    walk all of them at once. ``freeze()`` sets every tracked object aside and
    ``unfreeze()`` puts them all in the oldest generation; nothing is freed or kept
    differently. Not done when the program keeps objects frozen itself (a server that
    froze them before forking), which ``unfreeze()`` would undo."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


_FIRST_READ = 1 << 16


def read_bytes(file: str | os.PathLike[str], *, short_read_ends: bool = False) -> bytes:
    """The file's bytes, by ``os.read`` on a descriptor: the buffered file object of
    ``open().read()`` is wasted on one whole-file read.

    ``short_read_ends``: a read that returns less than asked is taken as the end of the
    file, as it is on a local disk, so a small file costs one read. Some network and
    FUSE file systems do return short reads, so what is read this way only feeds fast
    paths, which turn down a cut-off document; the reference reader reads whole."""
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        data = os.read(fd, _FIRST_READ)
        if short_read_ends and len(data) < _FIRST_READ:
            return data
        parts = [data]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# An image as plain values, what a worker sends back (pickling the frozen dataclasses
# makes loading them cost several times as much) and what a fast path may answer:
# (filename, width, height, depth, folder, path, attributes,
#  [(label, xmin, ymin, xmax, ymax, difficult, truncated, occluded, pose, attributes)...])
Record = tuple


def pack(image: ImageAnnotation) -> Record:
    """A checked image as a :data:`Record`."""
    return (
        image.filename, image.width, image.height, image.depth, image.folder, image.path,
        image.attributes,
        [
            (obj.label, *obj.bbox.as_tuple(), obj.difficult, obj.truncated, obj.occluded,
             obj.pose, obj.attributes)
            for obj in image.objects
        ],
    )


def unpack(record: Record) -> ImageAnnotation:
    """The image of a record, rebuilt the way unpickling rebuilds a dataclass: its fields
    set without running the constructor's checks again, which the worker (or a fast
    path's grammar) ran on these very values. Written out, with no helper calls: this
    runs for every image of a large folder."""
    new, set_fields = object.__new__, object.__setattr__
    filename, width, height, depth, folder, path, attributes, records = record
    objects = []
    for label, xmin, ymin, xmax, ymax, difficult, truncated, occluded, pose, extra in records:
        box = new(BBox)
        set_fields(box, "__dict__", {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax})
        obj = new(ObjectAnnotation)
        set_fields(obj, "__dict__", {
            "label": label, "bbox": box, "difficult": difficult, "truncated": truncated,
            "occluded": occluded, "pose": pose, "attributes": extra,
        })
        objects.append(obj)
    image = new(ImageAnnotation)
    set_fields(image, "__dict__", {
        "filename": filename, "width": width, "height": height, "depth": depth,
        "objects": tuple(objects), "folder": folder, "path": path, "attributes": attributes,
    })
    return image


# --------------------------------------------------------------------------- folders of files


class Parsed(NamedTuple):
    """What a reference reader may answer instead of an image alone: the image and the
    parts of the file it left out (as skipped entries, e.g. labelme's non-box shapes)."""

    image: ImageAnnotation
    left_out: list[SkippedFile]


class Folder(NamedTuple):
    """A folder opened for reading: its files in reading order, the context every file is
    read with (picklable: it goes to the workers), and the class list it names, if any."""

    files: list[str]
    context: Any = None
    classes: Optional[tuple[str, ...]] = None


@dataclass(frozen=True)
class FileFormat:
    """How the engine reads a folder-of-files format.

    ``open(path, **options) -> Folder``; ``parse(data, file, context) -> ImageAnnotation |
    Parsed``, the reference reader of one file's bytes, raising a
    :class:`~dsxsd.errors.DsxsdError` that names the file; optionally ``fast(contents,
    files, context)``, each file's image (or :data:`Record`) or ``None`` for the
    reference reader, ``contents`` holding ``None`` for a file that could not be read;
    optionally ``load(file) -> bytes``, how the reference reader's bytes are read (a
    format with a size limit refuses a larger file unread), :func:`read_bytes` if not
    given."""

    name: str
    open: Callable[..., Folder]
    parse: Callable[[bytes, str, Any], Any]
    fast: Optional[Callable[[list[Optional[bytes]], list[str], Any], list[Any]]] = None
    load: Optional[Callable[[str], bytes]] = None

    def read_fast(self, data: bytes, file: str, context: Any = None) -> Optional[ImageAnnotation]:
        """What the fast path makes of one file: its image, or ``None`` (declined, or no
        fast path). The contract tests compare it with :attr:`parse`."""
        if self.fast is None:
            return None
        outcome = self.fast([data], [file], context)[0]
        return unpack(outcome) if type(outcome) is tuple else outcome


def parse_file(fmt: FileFormat, file: str, context: Any) -> Any:
    """One file read by the format's reference reader: an image, a :class:`Parsed`, or
    the :class:`DsxsdError` it raised (returned, not raised)."""
    try:
        try:
            data = read_bytes(file) if fmt.load is None else fmt.load(file)
        except OSError as exc:
            return DsxsdError(f"cannot read: {exc.strerror or exc}", file=file)
        return fmt.parse(data, file, context)
    except DsxsdError as exc:
        return exc


def _read_files(fmt: FileFormat, files: list[str], context: Any) -> Iterator[Any]:
    """Each file's outcome in order: an image, a record, a :class:`Parsed` or an error."""
    if fmt.fast is None:
        for file in files:
            yield parse_file(fmt, file, context)
        return
    # Fast paths look at many files at a time (a group parses as one document).
    for start in range(0, len(files), _FAST_GROUP):
        group = files[start : start + _FAST_GROUP]
        contents = [_bytes_or_none(file) for file in group]
        for file, outcome in zip(group, fmt.fast(contents, group, context)):
            yield parse_file(fmt, file, context) if outcome is None else outcome


_FAST_GROUP = 128


def _bytes_or_none(file: str) -> bytes | None:
    try:
        return read_bytes(file, short_read_ends=True)
    except OSError:
        return None  # the reference reader reports it


@dataclass
class Chunk:
    """What one chunk of files gave: its skipped entries in file order (a ``(file,
    Failure)`` for a bad file, a :class:`SkippedFile` for a part left out), its images
    (records, from a worker) when they are kept, and ``finish(images, ...)``."""

    skipped: list[Any] = field(default_factory=list)
    images: Optional[list[Any]] = None
    value: Any = None


def _chunk(
    files: list[str],
    fmt: FileFormat,
    context: Any,
    stop: bool,
    keep: bool,
    finish: Optional[Callable[..., Any]],
    finish_args: tuple[Any, ...],
    in_worker: bool = True,
) -> Chunk:
    """Read a chunk of files (in a worker, or in this process with ``in_worker`` false):
    a chunk under ``stop`` ends at its first bad file."""
    chunk = Chunk()
    images: list[ImageAnnotation] = []
    with gc_paused():
        for file, outcome in zip(files, _read_files(fmt, files, context)):
            kind = type(outcome)
            if kind is tuple:
                images.append(unpack(outcome))
            elif kind is Parsed:
                images.append(outcome.image)
                chunk.skipped.extend(outcome.left_out)
            elif isinstance(outcome, DsxsdError):
                chunk.skipped.append((file, Failure.of(outcome) if in_worker else outcome))
                if stop:
                    break
            else:
                images.append(outcome)
        if finish is not None:
            try:
                chunk.value = finish(images, *finish_args)
            except DsxsdError as exc:
                if not in_worker:
                    raise
                chunk.value = Failure.of(exc)
        if keep:
            chunk.images = [pack(image) for image in images] if in_worker else images
    return chunk


def map_folder(
    fmt: FileFormat,
    folder: Folder,
    policy: ErrorPolicy,
    workers: int,
    *,
    where: str | os.PathLike[str],
    keep: bool = True,
    finish: Optional[Callable[..., Any]] = None,
    finish_args: tuple[Any, ...] = (),
) -> Iterator[Chunk]:
    """Read ``folder``'s files by ``workers`` processes (this one alone for a small
    folder), chunk by chunk in file order, with ``policy``: a bad file raises, or goes
    into ``policy.skipped`` (with the parts files left out) in file order. Each chunk
    comes back with its images (``keep``) and ``finish(images, *finish_args)``, which
    runs where the chunk was read (a conversion writes its output there)."""
    files = folder.files
    if workers > 1 and len(files) >= min_files():
        chunks = chunks_of(files, workers)
    else:
        workers, chunks = 1, [files]
    args = (fmt, folder.context, policy.stops, keep, finish, finish_args)

    def here(chunk: list[str]) -> Chunk:
        return _chunk(chunk, *args, in_worker=False)

    def arrived(chunk: Chunk) -> Chunk:
        if chunk.images is not None:
            chunk.images = [unpack(record) for record in chunk.images]
        return chunk

    results = run_chunks(chunks, _chunk, args, workers, where=where, doing="reading",
                         here=here, arrived=arrived)
    with gc_paused(), contextlib.closing(results):  # stopping here stops the pool
        for chunk in results:
            for entry in chunk.skipped:
                if isinstance(entry, SkippedFile):
                    policy.skipped.append(entry)
                else:
                    file, error = entry
                    policy.failed(error.error() if isinstance(error, Failure) else error, file)
            if isinstance(chunk.value, Failure):  # finish() failed in a worker
                raise chunk.value.error()
            yield chunk


def read_folder(
    fmt: FileFormat, path: Path, on_error: Any, workers: int | None, **options: Any
) -> tuple[list[ImageAnnotation], list[SkippedFile], Optional[tuple[str, ...]]]:
    """A folder (or one file) of ``fmt`` read: its images, what was skipped, and the class
    list it names."""
    workers = resolve_workers(workers)
    policy = ErrorPolicy(on_error)
    folder = fmt.open(Path(path), **options)
    images: list[ImageAnnotation] = []
    for chunk in map_folder(fmt, folder, policy, workers, where=path):
        images.extend(chunk.images)
    return images, policy.skipped, folder.classes


__all__ = [
    "Chunk",
    "Failure",
    "FileFormat",
    "Folder",
    "Parsed",
    "available_cores",
    "chunks_of",
    "gc_paused",
    "map_folder",
    "min_files",
    "pack",
    "parse_file",
    "process_pool",
    "read_bytes",
    "read_folder",
    "resolve_workers",
    "run_chunks",
    "start_method",
    "threads_running",
    "unpack",
    "worker_died",
]
