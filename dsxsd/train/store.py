"""Where a split's decoded images live while training: memory, or a store on disk.

A split's distinct images, decoded and resized, are ``N x S x S x 3`` uint8 rows. They are
held in memory when they fit ``--cache-limit``; otherwise they go to a disk store, one
file of the rows back to back, read by index through a memory map, so a split larger than
the machine's memory trains in bounded memory (``docs/run-folder.md``)::

    cache/train-<digest>.u8     the rows, row i = image i of the split's distinct paths
    cache/train-<digest>.json   written last: count, shape, bytes, sha256, mtime

The digest is of what was decoded and how (the image size, the resize mode, each path with
its file's size and modification time), so other settings or changed images never read a
stale store. The rows are written under a temporary name and renamed when complete, and the
``.json`` is written after that: a store killed halfway has no ``.json`` and is rebuilt,
never read. A finished store whose file is shorter or longer than its ``.json`` says, or
whose bytes changed, is refused (:class:`ImageStoreError`), not silently trained on.

Memory and disk hold the same bytes and a batch takes the same rows from either (from
memory by ``tf.gather``; from disk by :meth:`Rows.read` where the page cache can hold the
store, else by :meth:`Rows.read_sorted` and ``tf.gather``): the same pairs, seed and
settings give bit-identical batches. Which split goes where, and the
decode pass that fills a store, are :func:`dsxsd.train.data.prepare`'s: this module reads
and writes stores and imports nothing from the pipeline.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .._io import atomic_path, sha256_file, write_text
from .._preflight import container_memory_limit
from . import run
from ..errors import ImageStoreError, OutputWriteError

STORE_FORMAT = "dsxsd.images"
STORE_VERSION = 1
# The folder of a run (``--cache auto`` or ``disk``) that holds its stores.
CACHE_FOLDER = run.CACHE_FOLDER
# The store's pages a process may keep mapped where nothing says how many (a store opened
# by itself, not by dsxsd.train.data.prepare, which gives what --cache-limit leaves).
MAPPED_BUDGET = 64 * 2**20
# What a row read from a mapped store may leave resident beyond its own bytes: a page fault
# maps the neighbouring pages the page cache holds too (Linux's fault-around), since Linux
# 6.18 the whole large folio holding the row, up to 2 MiB on x86-64 (measured: 30,000
# crops, a 568 MB store, 250-490 MB of it resident when counted by the rows' bytes alone).
# The store is counted in blocks of this size, aligned as the page cache's folios are.
MAPPED_AROUND = 2 * 2**20
# Bytes a store's writer writes through the page cache before it has the system flush
# them to the disk.
SYNC_EVERY = 64 * 2**20
# Bytes a store's writer writes at a time around the page cache: a multiple of the block
# size of any disk, from a buffer aligned to a page.
DIRECT_CHUNK = 8 * 2**20


@dataclass
class Rows:
    """A split's decoded images: ``array`` uint8 [N, S, S, 3], in memory (:func:`in_memory`)
    or mapped from ``file``; ``decoded`` counts the images decoded to make it (0: a finished
    store reused).
    ``kind`` is ``"memory"``, ``"disk"`` or ``"none"`` (decoded every pass; no ``array``).
    Of a store larger than ``mapped_budget``, the pages reads leave mapped are released
    whenever they may come to more than that (:meth:`_release`)."""

    kind: str
    array: np.ndarray | None = None
    file: Path | None = None
    decoded: int = 0
    # Bytes of a mapped store's pages that may stay mapped between releases (_release).
    mapped_budget: int = MAPPED_BUDGET
    _map: mmap.mmap | None = field(default=None, repr=False)
    _touched: np.ndarray | None = field(default=None, repr=False)  # per MAPPED_AROUND block, since the last release
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A batch's left and right rows, in batch order: one ``np.take`` each (which
        releases the Python lock while it copies) into a new buffer aligned as TensorFlow's
        tensors are, so the tensor made of it shares it: one copy, one Python call a batch.
        Reads in batch order jump about the file: what a store the page cache holds costs
        nothing (see :func:`reads_in_batch_order`)."""
        out = tuple(self._take(indices) for indices in (left, right))
        self._release(left, right)
        return out

    def _take(self, indices: np.ndarray) -> np.ndarray:
        out = _aligned((len(indices), *self.array.shape[1:]))
        # mode="clip": with the default ("raise") numpy writes into a temporary and copies
        # it to ``out``, a second copy; the indices are the pair table's, always in range.
        np.take(self.array, indices, axis=0, out=out, mode="clip")
        return out

    def read_sorted(self, indices: np.ndarray) -> np.ndarray:
        """The rows ``indices`` name, which come in ascending order, so a batch's reads from
        a disk store go front to back through the file: one ``np.take`` (which releases the
        Python lock while it copies, not one Python step per image) into a new buffer
        aligned as TensorFlow's tensors are, so the tensor made of it shares it: one copy.
        The caller puts the rows back in batch order (``tf.gather`` in
        :func:`dsxsd.train.data._rows`)."""
        out = self._take(indices)
        self._release(indices)
        return out

    def _release(self, *read: np.ndarray) -> None:
        # A mapped page this process touched counts in its resident memory until it is
        # unmapped, though it is the system's page cache and dropped under pressure. Counted
        # as the blocks the rows ``read`` lie in (MAPPED_AROUND: what a fault may map), and
        # unmapped once those may exceed the budget, resident memory stays bounded; a page
        # read again comes back from the page cache (a minor fault), not from disk.
        if self._map is None or self.array.nbytes <= self.mapped_budget:
            return  # in memory, or all of it within the budget: unmapping would only cost faults
        row = self.array[0].nbytes
        starts = np.concatenate(read).astype(np.int64) * row
        blocks = np.concatenate([starts // MAPPED_AROUND, (starts + row - 1) // MAPPED_AROUND])
        with self._lock:
            if self._touched is None:
                self._touched = np.zeros(-(-self.array.nbytes // MAPPED_AROUND), bool)
            self._touched[blocks] = True
            release = int(self._touched.sum()) * MAPPED_AROUND > self.mapped_budget
            if release:
                self._touched[:] = False
        if release and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """The rows in order, ``size`` at a time (what the frozen tower's features read),
        a mapped store's pages released as :meth:`read` releases them: read front to back,
        the whole store would otherwise count in resident memory."""
        for start in range(0, len(self.array), size):
            rows = np.array(self.array[start : start + size])
            self._release(np.arange(start, start + len(rows)))
            yield rows


def reads_in_batch_order(rows: Rows) -> bool:
    """Whether a batch reads its rows from the store ``rows`` in batch order
    (:meth:`Rows.read`) rather than in ascending order (:meth:`Rows.read_sorted`).

    Where the page cache can hold the whole store (it is no larger than the memory
    available now, which counts the page cache as reclaimable), a row is a copy from memory
    wherever it lies, and batch order spares the second copy that puts sorted rows back in
    order. Where it cannot, rows come from the disk, and ascending reads are fewer and
    sequential (neighbours merged by read-ahead, each page read once a batch): that is
    worth the second copy."""
    return rows.array is not None and rows.array.nbytes <= available_memory()


def available_memory() -> int:
    """Bytes of memory available without swapping (``MemAvailable``: free memory and the
    page cache that can be dropped), within this container's limit where there is one."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:  # no /proc: the machine's memory, as if all of it were free
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    limit = container_memory_limit()
    try:
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit is not None and used.isdigit():
            # The container's use counts its page cache; the inactive part of it can be
            # dropped, as MemAvailable counts it (the working set, as kubelet measures it).
            stat = Path("/sys/fs/cgroup/memory.stat").read_text().split()
            droppable = int(stat[stat.index("inactive_file") + 1]) if "inactive_file" in stat else 0
            available = min(available, limit - int(used) + droppable)
    except (OSError, ValueError, IndexError):
        pass
    return available


def in_memory(count: int, shape: tuple[int, ...]) -> Rows:
    """Room for ``count`` rows in memory, aligned as TensorFlow's tensors are, so the
    pipeline takes them as a tensor without a copy (DLPack): the decoded images are held
    once, not twice."""
    return Rows("memory", _aligned((count, *shape)))


# TensorFlow's tensor alignment (Eigen's largest): a buffer aligned to it can be shared.
ALIGN = 64


def _aligned(shape: tuple[int, ...]) -> np.ndarray:
    nbytes = int(np.prod(shape))
    buffer = np.empty(nbytes + ALIGN, np.uint8)
    start = -buffer.ctypes.data % ALIGN
    return buffer[start : start + nbytes].reshape(shape)


# ------------------------------------------------------------------------ the store's name


def digest(paths: list[str], image_size: int, resize: str) -> str:
    """A digest of what a split's store holds and how it was made: the image size, the
    resize mode and each path with its file's size and modification time, so a changed
    image makes another store, never a stale read. Paths that cannot be read are left to
    the image check that follows."""
    h = hashlib.sha256(f"{STORE_FORMAT} {STORE_VERSION}\n{image_size}\n{resize}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0-\n".encode())
    return h.hexdigest()[:16]


def store_files(folder: Path, key: str, paths: list[str], image_size: int, resize: str) -> tuple[Path, Path]:
    """The rows file and the ``.json`` of a split's store in ``folder``."""
    name = f"{key}-{digest(paths, image_size, resize)}" if key else digest(paths, image_size, resize)
    return folder / f"{name}.u8", folder / f"{name}.json"


# ----------------------------------------------------------------------- opening a store


def open_store(data: Path, meta: Path, count: int, shape: tuple[int, ...]) -> Rows | None:
    """The finished store ``data`` as :class:`Rows` (memory-mapped, read-only), or
    ``None`` when there is none: no ``.json`` means no store was finished here, and the
    rows a killed build left are removed (rows deleted by hand leave a ``.json`` to remove). A finished store that does not match its
    ``.json`` raises :class:`ImageStoreError` naming the file."""
    if not meta.is_file():
        data.unlink(missing_ok=True)
        return None
    expected = _read_meta(meta, count, shape)
    try:
        st = os.stat(data)
    except FileNotFoundError:  # the rows were deleted: built again
        meta.unlink(missing_ok=True)
        return None
    if st.st_size != expected["bytes"]:
        what = "truncated" if st.st_size < expected["bytes"] else "longer than it was written"
        raise ImageStoreError(
            f"image store is {what}: {st.st_size} bytes, {meta.name} says {expected['bytes']}. {_REBUILD}", file=data
        )
    if st.st_mtime_ns != expected["mtime_ns"]:
        # Changed since it was written, or only copied: the bytes decide, read once.
        if sha256_file(data) != expected["sha256"]:
            raise ImageStoreError(f"image store was modified after it was written. {_REBUILD}", file=data)
        write_text(meta, json.dumps({**expected, "mtime_ns": st.st_mtime_ns}, indent=2) + "\n", overwrite=True)
    return _mapped(data, count, shape)


_REBUILD = "Delete it to rebuild it, or train with --cache memory"


def _read_meta(meta: Path, count: int, shape: tuple[int, ...]) -> dict:
    try:
        found = json.loads(meta.read_text(encoding="utf-8"))
        ok = (
            found.get("format") == STORE_FORMAT and found.get("version") == STORE_VERSION
            and found["count"] == count and tuple(found["shape"]) == tuple(shape)
            and found["bytes"] == count * int(np.prod(shape)) and isinstance(found["sha256"], str)
            and isinstance(found["mtime_ns"], int)
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ImageStoreError(
            f"not the .json of a dsxsd image store of {count} images of {'x'.join(map(str, shape))}. {_REBUILD}",
            file=meta,
        )
    return found


def _mapped(data: Path, count: int, shape: tuple[int, ...]) -> Rows:
    if count == 0:
        return Rows("disk", np.zeros((0, *shape), np.uint8), data)
    with open(data, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.frombuffer(mapping, np.uint8).reshape(count, *shape)
    return Rows("disk", array, data, _map=mapping)


# ---------------------------------------------------------------------- writing a store


@contextlib.contextmanager
def _naming(store: Path) -> Iterator[None]:
    """A full disk (the likeliest failure of a store of millions of images) as one line
    naming the store, not the operating system's message alone."""
    try:
        yield
    except OSError as exc:
        raise OutputWriteError(f"cannot write the image store: {exc.strerror or exc}", file=store) from None


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


class _RowsFile:
    """The plain way a store's rows go to the disk: through the page cache, flushed every
    :data:`SYNC_EVERY` bytes by a thread of its own while the writing goes on, so that the
    last flush, before the store is named finished, has little left to wait for."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")
        self._unsynced = 0
        self._syncing: threading.Thread | None = None
        self._sync_error: BaseException | None = None

    def write(self, data: memoryview) -> None:
        self._file.write(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY and not (self._syncing and self._syncing.is_alive()):
            # Waiting for each flush here stalled the decode pass on the disk.
            self._raise_sync_error()
            self._syncing = threading.Thread(target=self._sync, name="dsxsd-store-sync", daemon=True)
            self._syncing.start()
            self._unsynced = 0

    def _sync(self) -> None:
        try:
            _datasync(self._file.fileno())
        except BaseException as exc:  # noqa: BLE001 - raised by the writer's next call
            self._sync_error = exc

    def _raise_sync_error(self) -> None:
        if self._syncing:
            self._syncing.join()
        if self._sync_error is not None:
            raise self._sync_error

    def finish(self) -> None:
        """Everything written is on the disk."""
        self._raise_sync_error()
        self._file.flush()
        _datasync(self._file.fileno())

    def close(self) -> None:
        if self._syncing:
            self._syncing.join()
        self._file.close()


class _DirectRowsFile:
    """A store's rows written around the page cache (``O_DIRECT``), in chunks from a buffer
    aligned as such writes must be. Why: on the small virtual machines many train on, a
    write through the page cache costs the kernel several seconds of CPU a gigabyte
    (``benchmarks/README.md``), taken from the decode pass that fills the store; around it,
    almost none. The rows are not left in the page cache: the first epoch reads them from
    the disk, as every epoch of a store past the limit does. Where the file system refuses
    such writes, and for the tail shorter than a chunk, the rows go the plain way."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_DIRECT)
        self._buffer = mmap.mmap(-1, DIRECT_CHUNK)
        self._filled = 0
        self._direct = True

    def write(self, data: memoryview) -> None:
        view = memoryview(self._buffer)
        while data:
            n = min(len(data), DIRECT_CHUNK - self._filled)
            view[self._filled : self._filled + n] = data[:n]
            self._filled += n
            data = data[n:]
            if self._filled == DIRECT_CHUNK:
                self._write_out(view)
                self._filled = 0

    def _write_out(self, data: memoryview) -> None:
        while data:
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                if not (self._direct and exc.errno == errno.EINVAL):
                    raise
                self._plain()  # a file system that takes the flag but not the writes
                continue
            if written < len(data) and self._direct:
                self._plain()  # the rest starts off a block boundary
            data = data[written:]

    def _plain(self) -> None:
        import fcntl  # POSIX, as O_DIRECT is

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self._direct = False

    def finish(self) -> None:
        """Everything written is on the disk."""
        if self._filled:
            self._plain()
            self._write_out(memoryview(self._buffer)[: self._filled])
        _datasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _rows_file(path: Path) -> _RowsFile | _DirectRowsFile:
    if hasattr(os, "O_DIRECT"):
        try:
            return _DirectRowsFile(path)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a file system without O_DIRECT
                raise
    return _RowsFile(path)


# What the writer's thread is given to finish the store (``None``: to stop without).
_FINISH = object()


class StoreWriter:
    """Writes a split's rows in order into a temporary file; :meth:`finish` renames it
    into place and then writes the ``.json``. Used as a context manager around the decode
    pass: an error (or a kill) before :meth:`finish` leaves no store behind.

    The rows are written, hashed and flushed to the disk by a thread of the writer's own,
    so the decode pass goes on decoding meanwhile.
    """

    def __init__(self, data: Path, meta: Path, count: int, shape: tuple[int, ...]):
        self.data, self.meta, self.count, self.shape = data, meta, count, tuple(shape)
        self.written = 0
        self._hash = hashlib.sha256()
        self._error: BaseException | None = None

    def __enter__(self) -> StoreWriter:
        meta_gone = not self.meta.exists()
        self.meta.unlink(missing_ok=True)
        if meta_gone:
            self.data.unlink(missing_ok=True)
        self._atomic = atomic_path(self.data, overwrite=True)
        self._temporary = self._atomic.__enter__()
        try:
            with _naming(self.data):
                self._file = _rows_file(self._temporary)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        # Two batches queued at most: the decode pass waits rather than holding the
        # images of a slow disk in memory.
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._write_queued, name="dsxsd-store-writer", daemon=True)
        self._thread.start()
        return self

    def write(self, first: int, rows: np.ndarray) -> None:
        """Rows ``first, first + 1, ...``: they come in order, from the first."""
        assert first == self.written, (first, self.written)
        self._raise_failure()
        self._queue.put(np.ascontiguousarray(rows, np.uint8))
        self.written += len(rows)

    def _write_queued(self) -> None:
        while (rows := self._queue.get()) is not None:
            if self._error is not None:
                continue  # failed: the rest is dropped, the error raised in the decode pass
            try:
                if rows is _FINISH:
                    self._file.finish()
                else:
                    data = memoryview(rows).cast("B")
                    self._file.write(data)
                    self._hash.update(data)
            except BaseException as exc:  # noqa: BLE001 - kept for the decode pass; a dead thread would leave it waiting
                self._error = exc

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise_failure(self) -> None:
        if isinstance(self._error, OSError):
            with _naming(self.data):
                raise self._error
        if self._error is not None:
            raise OutputWriteError(f"writing the image store failed: {self._error!r}", file=self.data) from self._error

    def finish(self) -> None:
        if self.written != self.count:
            raise RuntimeError(f"{self.written} of {self.count} images written to {self.data}")
        self._queue.put(_FINISH)
        self._stop()
        self._file.close()
        self._raise_failure()
        with _naming(self.data):
            size = os.stat(self._temporary).st_size
        if size != self.count * int(np.prod(self.shape)):  # never named finished short of its rows
            raise OutputWriteError(f"the image store holds {size} bytes, not its {self.count} rows'", file=self.data)
        self._atomic.__exit__(None, None, None)  # renamed into place
        st = os.stat(self.data)
        meta = {
            "format": STORE_FORMAT, "version": STORE_VERSION, "count": self.count, "shape": list(self.shape),
            "dtype": "uint8", "bytes": st.st_size, "sha256": self._hash.hexdigest(), "mtime_ns": st.st_mtime_ns,
        }
        write_text(self.meta, json.dumps(meta, indent=2) + "\n", overwrite=True)
        self._atomic = None

    def __exit__(self, kind, error, trace) -> None:
        if self._atomic is not None:  # not finished: the temporary goes
            self._stop()
            self._file.close()
            self._atomic.__exit__(kind or RuntimeError, error or RuntimeError("not finished"), trace)

    def rows(self) -> Rows:
        return _mapped(self.data, self.count, self.shape)


__all__ = [
    "CACHE_FOLDER", "ImageStoreError", "MAPPED_BUDGET", "Rows", "StoreWriter", "available_memory", "digest", "in_memory",
    "open_store", "reads_in_batch_order", "store_files",
]
