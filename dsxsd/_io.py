"""Atomic, no-clobber writes: the one way dsxsd puts anything on disk.

A file is written to a temporary sibling and renamed into place, so a crash leaves either
the old output or the new one, never half of one. An existing output is replaced only when
the caller passes ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse to replace ``path`` unless ``overwrite``."""
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", file=path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes the folder private (0700)
        if path.exists():
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
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


__all__ = ["check_output", "atomic_path", "write_bytes", "write_text", "atomic_directory"]
