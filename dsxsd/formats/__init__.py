"""The format registry, and :func:`read`/:func:`write` over it.

Each format is one module in this package exposing ``FORMAT``, a :class:`Format` with a
reader and a writer that are each other's inverse. Modules are imported on first use so
that ``import dsxsd`` stays fast. Adding a format means adding a module and its name to
``_MODULES``; the CLI's ``convert`` pairs and the contract tests pick it up from here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Literal, Optional, Union

from ..errors import ErrorPolicy, InvalidAnnotationError, UnknownFormatError, require_path
from ..annotations import AnnotationSet, ImageAnnotation

# ``on_error`` of every reader and stage: a name, or a policy (see ErrorPolicy).
OnError = Union[Literal["raise", "skip"], ErrorPolicy]
Reader = Callable[..., AnnotationSet]
Writer = Callable[..., None]

# Registry order is the order formats are listed in help texts.
_MODULES = ("voc", "csv", "json", "lines", "coco", "labelme", "yolo")


@dataclass(frozen=True)
class Format:
    """A registered format.

    ``reader(path, *, on_error="raise", **options) -> AnnotationSet`` and
    ``writer(annotations, path, *, overwrite=False, **options) -> None``; a writer writes
    atomically (see :mod:`dsxsd._io`). ``suffixes`` are what a path ends with for the format
    to be guessed from it (``"/"`` for a folder); ``sniff``, where several formats share a
    suffix, tells whether a given path is this format. ``lossy`` names what the format
    cannot hold (sizes, flags...), for warnings and for the contract tests.

    A folder-of-files format (one file per image) gives ``files``, how the engine reads
    it (:class:`dsxsd._engine.FileFormat`); its reader takes ``workers``. A format whose
    output can be made of parts written side by side (a CSV's rows) gives ``parts``
    (:class:`Parts`), which ``convert`` runs in the workers that read the input.
    """

    name: str
    summary: str
    reader: Optional[Reader]
    writer: Optional[Writer]
    suffixes: tuple[str, ...]
    output_is_dir: bool = False
    sniff: Optional[Callable[[Path], bool]] = None
    lossy: tuple[str, ...] = ()
    files: Optional[Any] = None  # a dsxsd._engine.FileFormat
    parts: Optional["Parts"] = None


@dataclass(frozen=True)
class Parts:
    """A writer in parts: ``check(**options)`` refuses options the writer refuses;
    ``encode(images, **options)`` is the part of ``images`` (run in a worker: a plain,
    picklable value); ``join(parts, path, classes, *, overwrite, **options)`` writes the
    whole output atomically, as the writer would have written it."""

    check: Callable[..., None]
    encode: Callable[..., Any]
    join: Callable[..., None]


_registry: dict[str, Format] = {}


def _load() -> dict[str, Format]:
    if not _registry:
        for module_name in _MODULES:
            module = importlib.import_module(f"{__name__}.{module_name}")
            fmt: Format = module.FORMAT
            _registry[fmt.name] = fmt
    return _registry


def format_names(readable: bool = False, writable: bool = False) -> list[str]:
    """Registered format names, in registry order."""
    return [
        name
        for name, fmt in _load().items()
        if (not readable or fmt.reader) and (not writable or fmt.writer)
    ]


def get_format(name: str) -> Format:
    formats = _load()
    key = name.strip().lower()
    if key not in formats:
        raise UnknownFormatError(
            f"unknown format {name!r}; known formats: {', '.join(formats)}"
        )
    return formats[key]


def guess_format(path: str | os.PathLike[str], for_writing: bool = False) -> str:
    """The format a path is in, from its suffix (and content, where suffixes are shared).

    A folder is ``voc`` unless it holds no ``.xml`` but labelme ``.json`` files or YOLO
    ``.txt`` labels with a class list. For writing only the suffix counts and the first
    registered format with it wins (a folder: ``voc``).
    """
    path = Path(path)
    suffix = "/" if path.is_dir() else path.suffix.lower()
    candidates = [
        fmt
        for fmt in _load().values()
        if suffix in fmt.suffixes and (fmt.writer if for_writing else fmt.reader)
    ]
    if not for_writing and len(candidates) > 1 and path.exists():
        sniffed = [fmt for fmt in candidates if fmt.sniff is None or fmt.sniff(path)]
        candidates = sniffed or candidates
    if not candidates:
        raise UnknownFormatError(
            f"cannot tell the annotation format from {suffix or 'no suffix'!r}; "
            f"name it with --format/--from/--to (one of {', '.join(_load())})",
            file=path,
        )
    return candidates[0].name


def read(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    on_error: OnError = "raise",
    workers: int | None = 1,
    **options: Any,
) -> AnnotationSet:
    """Read annotations from ``path``; ``format`` is guessed from the path when not given.

    With ``on_error="skip"`` bad files are left out and listed in the result's
    ``skipped``; with ``"raise"`` the first bad file raises an error naming it.
    ``workers``: processes reading a folder of per-image files (``None``/``0``: every
    core, ``1``: this process only; small folders always stay in this process; formats
    that are one file ignore it). The result does not depend on it. It is 1 by default
    here (``dsxsd convert`` uses every core): where workers cannot be forked (macOS,
    Windows, a process already running threads, such as a notebook that imported numpy)
    they import the calling script afresh, which a script without an
    ``if __name__ == "__main__":`` guard does not survive, as with :mod:`multiprocessing`.
    """
    ErrorPolicy(on_error)  # a bad value is refused before the path is looked at
    path = require_path(path)  # before guessing: a typo is not an unknown format
    fmt = get_format(format or guess_format(path))
    if fmt.reader is None:
        raise UnknownFormatError(f"format {fmt.name!r} cannot be read")
    if fmt.files is not None:
        options["workers"] = workers
    else:
        from .._engine import resolve_workers

        resolve_workers(workers)  # a bad value is refused for every format alike
    return fmt.reader(path, on_error=on_error, **options)


def write(
    annotations: AnnotationSet,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    overwrite: bool = False,
    **options: Any,
) -> None:
    """Write ``annotations`` to ``path`` atomically; an existing output is replaced only
    with ``overwrite=True``."""
    path = Path(path)
    fmt = get_format(format or guess_format(path, for_writing=True))
    if fmt.writer is None:
        raise UnknownFormatError(f"format {fmt.name!r} cannot be written")
    fmt.writer(annotations, path, overwrite=overwrite, **options)


def file_per_image(
    images: Iterable[ImageAnnotation],
    suffix: str,
    output: Path,
    *,
    keeps: str,
    unread: str,
    reserved: Collection[str] = (),
) -> Iterator[tuple[ImageAnnotation, str]]:
    """Each image with its file name ``<stem><suffix>``, for a format that writes one file
    per image into the folder ``output`` (VOC, YOLO). Lazily: a caller that works on each
    image as it comes meets the errors in image order.

    Two images whose names would give one file (``a.jpg`` and ``a.png``, or ``A.jpg`` and
    ``a.jpg`` on a case-insensitive disk) are refused rather than one silently replacing
    the other (``keeps`` says why: "VOC keeps one file"); so is a name its readers pass
    over (a macOS ``._*`` fork, or one of ``reserved``, lower case; ``unread`` says why).
    """
    owners: dict[str, str] = {}
    for image in images:
        name = f"{image.stem}{suffix}"
        key = name.casefold()
        if key in owners:
            raise InvalidAnnotationError(
                f"images {owners[key]!r} and {image.filename!r} would both be written to "
                f"{name!r}; {keeps} per image name without extension",
                file=output,
            )
        if key in reserved or name.startswith("._"):
            raise InvalidAnnotationError(
                f"image {image.filename!r} would be written to {name!r}, {unread}", file=output
            )
        owners[key] = image.filename
        yield image, name


__all__ = [
    "Format",
    "OnError",
    "Parts",
    "file_per_image",
    "format_names",
    "get_format",
    "guess_format",
    "read",
    "write",
]
