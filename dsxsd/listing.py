"""``dsxsd ls``: image files under a folder as a sorted line list (``> files.txt``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .errors import DsxsdError, require_path

DEFAULT_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"
)


def _normalise(extensions: Sequence[str]) -> frozenset[str]:
    return frozenset(
        ("." + e.strip().lstrip(".")).lower() for e in extensions if e.strip().lstrip(".")
    )


def list_images(
    root: str | os.PathLike[str],
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    absolute: bool = False,
) -> list[str]:
    """Image files under ``root``, recursively, sorted, with ``/`` separators.

    Paths are relative to ``root`` unless ``absolute``. Extensions match case-insensitively
    (cameras write ``.JPG``), with or without their leading dot.
    """
    root = require_path(root)
    if not root.is_dir():
        raise DsxsdError("not a folder", file=root)
    wanted = _normalise(extensions)
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if os.path.splitext(name)[1].lower() in wanted:
                path = Path(folder, name)
                found.append(
                    path.resolve().as_posix() if absolute else path.relative_to(root).as_posix()
                )
    return sorted(found)


__all__ = ["list_images", "DEFAULT_EXTENSIONS"]
