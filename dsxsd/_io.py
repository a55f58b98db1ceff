"""Atomic, no-clobber writes: the one way dsxsd puts anything on disk.

A file is written to a temporary sibling and renamed into place, so a crash leaves either
the old output or the new one, never half of one. An existing output is replaced only when
the caller passes ``overwrite=True``.

An output that cannot be written (disk full, a read-only or special folder, a file where
a folder is needed) raises :class:`~dsxsd.errors.OutputWriteError` naming the output as
the caller gave it: the temporary name means nothing to a user.

A run that is killed (an out-of-memory killer, a scheduler's ``kill -9``) cannot remove
its temporary, which may be as large as the output. So the temporary's name holds the
writing process's id, ``.<name>.<pid>.<random>.tmp``, and the temporary is locked while
it is written; the next write of the same output removes those whose process has ended
and whose lock nobody holds (a worker process of a dead run may still be writing).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError, OutputWriteError

try:
    import fcntl
except ImportError:  # Windows: no locks, and a killed run's temporaries stay
    fcntl = None  # type: ignore[assignment]

# Errors that are about writing whatever file they name.
_WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, name)
)


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse to replace ``path`` unless ``overwrite``."""
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", file=path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    check_output(path, overwrite)
    tmp, lock = _create_temporary(path, folder=False)
    try:
        with _named_errors(path, tmp):
            yield tmp
            # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _unlock(lock)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> None:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, overwrite: bool = False) -> None:
    """Write UTF-8 text with ``\\n`` line ends on every platform."""
    write_bytes(path, text.encode("utf-8"), overwrite)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    On failure the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    check_output(path, overwrite)
    tmp, lock = _create_temporary(path, folder=True)
    try:
        with _named_errors(path, tmp):
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private (0700)
            _replace_folder(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)
        _unlock(lock)


def _replace_folder(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    # Move the old output aside first so that a failed rename can put it back.
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old.rmdir()
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- temporaries


def _create_temporary(path: Path, folder: bool) -> tuple[Path, int | None]:
    """A new, locked temporary beside ``path`` (its folder made first), and the lock's
    file descriptor. Temporaries that killed runs left there go first."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        ancestors = (parent, *parent.parents)
        blocker = next((p for p in ancestors if p.exists() and not p.is_dir()), parent)
        raise OutputWriteError(
            f"cannot create files in {parent}: {blocker} is a file, not a folder", file=path
        ) from None
    except OSError as exc:
        raise OutputWriteError(f"cannot create files in {parent}: {_why(exc)}", file=path) from exc
    _remove_abandoned(path)
    prefix = f".{path.name}.{os.getpid()}."
    try:
        if folder:
            tmp = tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent)
            fd = os.open(tmp, os.O_RDONLY) if fcntl is not None else None
        else:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
    except OSError as exc:  # the cause is kept: an enclosing temporary folder names it again
        raise OutputWriteError(f"cannot create files in {parent}: {_why(exc)}", file=path) from exc
    if fcntl is None:
        if fd is not None:
            os.close(fd)  # Windows renames no file that is open
        return Path(tmp), None
    # Worker processes forked while it is held share it, so it stays held while any of
    # them may still write into the temporary.
    fcntl.flock(fd, fcntl.LOCK_EX)
    return Path(tmp), fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last copy releases the lock


@contextlib.contextmanager
def _named_errors(path: Path, tmp: Path) -> Iterator[None]:
    """Turn an error about writing the temporary ``tmp`` into one that names ``path``.

    Errors about anything else (an input that cannot be read) pass unchanged. An output
    written inside a temporary folder (a manifest inside a crops folder) already became
    an :class:`OutputWriteError` naming a temporary path; it is named again here.
    """
    try:
        yield
    except OutputWriteError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and _inside(exc.file, tmp):
            raise OutputWriteError(f"cannot write: {_why(cause)}", file=path) from cause
        raise
    except OSError as exc:
        named = (exc.filename, exc.filename2)
        if exc.errno in _WRITE_ERRNOS or any(_inside(n, t) for n in named for t in (tmp, path)):
            raise OutputWriteError(f"cannot write: {_why(exc)}", file=path) from exc
        raise


def _inside(name: object, place: Path) -> bool:
    """Whether the path ``name`` (an error's file name, maybe ``None``) is ``place`` or
    under it."""
    if not isinstance(name, (str, os.PathLike)):
        return False
    name, place_name = os.path.abspath(name), os.path.abspath(place)
    return name == place_name or name.startswith(place_name + os.sep)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _remove_abandoned(path: Path) -> None:
    """Remove the temporaries of earlier writes of ``path`` whose process has ended and
    whose lock nobody holds. Best effort: what cannot be removed stays."""
    if fcntl is None:
        return
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d{1,10})\.[a-z0-9_]{8}\.tmp\Z")
    try:
        with os.scandir(path.parent) as entries:
            names = [e.name for e in entries if e.name.startswith(f".{path.name}.")]
    except OSError:
        return
    for name in names:
        match = pattern.match(name)
        if match and not _running(int(match[1])):
            _remove_unlocked(path.parent / name)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (this one included; another user's too)."""
    if pid <= 0 or pid == os.getpid():
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_unlocked(temporary: Path) -> None:
    try:
        fd = os.open(temporary, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _remove(temporary)
    except OSError:
        pass  # held (a live worker writes into it) or not ours to remove
    finally:
        os.close(fd)


__all__ = ["check_output", "atomic_path", "write_bytes", "write_text", "atomic_directory"]
