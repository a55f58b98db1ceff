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

Shared by dsxsd's packages (dsxsd.cli and dsxsd.train too), with what outputs record of
other files: a file's sha256 and a path relative to the output's folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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
    """Refuse to replace ``path`` unless ``overwrite``; first clear away what killed
    writes of ``path`` left beside it (putting back an output they had set aside)."""
    path = Path(path)
    remove_abandoned(path.parent, path.name)
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
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".old", dir=path.parent))
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


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def relative_path(path: str | os.PathLike[str], folder: Path) -> str:
    """``path`` as an output kept in ``folder`` records it: relative to the folder, in
    POSIX form, so the folder can move with what it names."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).resolve().as_posix()


# --------------------------------------------------------------------------- temporaries


def check_writable(folder: Path, output: Path) -> None:
    """Refuse, writing nothing, an ``output`` whose ``folder`` (made with its parents when
    written) could not be made or take new files: a check before long work."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _blocked(folder, output)
    # A file made and dropped at once: permission bits say nothing for root, a read-only
    # mount or /proc, where only trying tells.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputWriteError(f"cannot create files in {folder}: {_why(exc)}", file=output) from None


def _blocked(folder: Path, output: Path) -> OutputWriteError:
    """The error of an ``output`` whose ``folder`` cannot be made: a file stands in the way."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
    return OutputWriteError(f"cannot create files in {folder}: {blocker} is a file, not a folder", file=output)


def _create_temporary(path: Path, folder: bool) -> tuple[Path, int | None]:
    """A new, locked temporary beside ``path`` (its folder made first), and the lock's
    file descriptor."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _blocked(parent, path) from None
    except OSError as exc:
        raise OutputWriteError(f"cannot create files in {parent}: {_why(exc)}", file=path) from exc
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


def lock_holder(path: Path) -> str | None:
    """What the lock file ``path`` holds (its holder's process id) while another process
    holds its ``flock``; ``None`` when it is free, absent, or nothing is locked here."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 32).decode("ascii", "replace").strip() or "?"
    finally:
        os.close(fd)  # and with it any lock taken here


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


# A temporary's name: ``.<output name>.<pid>.<random>.tmp`` (what is being written, Keras'
# own staging file adds a suffix) or ``.old`` (a replaced output on its way out).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d{1,10})\.[a-z0-9_]{8}\.(?P<kind>tmp|old)(\.\w+)?\Z")


def remove_abandoned(folder: Path, name: str | None = None) -> None:
    """Remove the temporaries in ``folder`` (of the output ``name``, or of any output) whose
    process has ended and whose lock nobody holds. A replaced output set aside by a run
    killed before its replacement took its place is put back instead. Best effort: what
    cannot be removed stays."""
    if fcntl is None:
        return
    start = "." if name is None else f".{name}."
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.startswith(start)]
    except OSError:
        return
    for found in names:
        match = _TEMPORARY.match(found)
        if not match or (name is not None and match["name"] != name) or _running(int(match["pid"])):
            continue
        output = folder / match["name"]
        if match["kind"] == "old" and not os.path.lexists(output):
            with contextlib.suppress(OSError):
                os.replace(folder / found, output)
        else:
            _remove_unlocked(folder / found)


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


__all__ = ["check_output", "atomic_path", "write_bytes", "write_text", "atomic_directory", "check_writable", "lock_holder", "relative_path", "remove_abandoned", "sha256_file"]
