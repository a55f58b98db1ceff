"""``convert``: annotations from one registered format to another, with what was lost.

What ``dsxsd convert`` runs: read the input, write the output, name what the target
format cannot hold (only what the input really uses), and write the skip report beside
the output. Any pair of the registry goes through :func:`dsxsd.read` and
:func:`dsxsd.write`.

A large VOC folder to CSV (the TF Object Detection API's ``xml_to_csv`` job) is the one
pair with a path of its own: each worker process turns its chunk of files into CSV rows
itself (the VOC reader's and the CSV writer's own code, run on the chunk) and sends back
text, which this process joins behind the header. Read, then written, the whole dataset
would have to be rebuilt in this process from what the workers sent, object by object
(a third of a file's read cost), and written from here: a serial part that left two
cores 1.1-1.3x faster than one. The file, the counts, the lost fields, the skipped list
and the error raised are what reading and writing give (the tests compare both).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from .errors import ErrorPolicy, require_path
from .formats import OnError, get_format, guess_format, read, write
from .model import AnnotationSet, ImageAnnotation, SkippedFile, classes_in_order
from .report import nothing_produced, write_skip_report


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert` did: the formats and paths, how many images, objects and
    classes were written, what was skipped (and the report listing it), and the fields
    the target format could not hold (``lost``)."""

    source: str
    target: str
    input: str
    output: str
    images: int
    objects: int
    classes: int
    skipped: tuple[SkippedFile, ...] = ()
    report: str | None = None
    lost: tuple[str, ...] = ()


def convert(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    source: str | None = None,
    target: str | None = None,
    *,
    on_error: OnError = "raise",
    workers: int | None = 1,
    overwrite: bool = False,
    read_options: Mapping[str, Any] | None = None,
    write_options: Mapping[str, Any] | None = None,
) -> ConvertReport:
    """Convert ``input`` (format ``source``, guessed from the path when not given) into
    ``output`` (format ``target``, likewise).

    ``read_options`` and ``write_options`` go to the format's reader and writer
    (``{"images": ...}`` for VOC input, ``{"columns": "basic"}`` for CSV output...).
    ``on_error``, ``workers`` and ``overwrite`` are those of :func:`dsxsd.read` and
    :func:`dsxsd.write`; with ``on_error="skip"`` what was skipped is listed in
    ``<output>.skipped.csv`` (an older report is removed when nothing was skipped).
    """
    ErrorPolicy(on_error)  # a bad value is refused before anything is looked at
    if source is None:
        require_path(input)  # before guessing from it: a typo is not an unknown format
    source = get_format(source or guess_format(input)).name
    target = get_format(target or guess_format(output, for_writing=True)).name
    read_options, write_options = dict(read_options or {}), dict(write_options or {})
    lossy = _lossy(target, write_options)
    done = None
    if source == "voc" and target == "csv":
        done = _voc_to_csv_in_pool(
            Path(input), Path(output), on_error, workers, overwrite, read_options, write_options, lossy
        )
    if done is None:
        annotations = read(input, source, on_error=on_error, workers=workers, **read_options)
        if annotations.skipped and not annotations.images:
            raise nothing_produced(output, annotations.skipped, "annotations", input)
        write(annotations, output, target, overwrite=overwrite, **write_options)
        done = _Converted(
            _images_written(annotations.images, lossy), annotations.num_objects,
            annotations.classes, annotations.skipped, tuple(lost_fields(annotations, lossy)),
        )
    report = write_skip_report(output, done.skipped)
    return ConvertReport(
        source, target, str(input), str(output), done.images, done.objects, len(done.classes),
        tuple(done.skipped), None if report is None else str(report), done.lost,
    )


def _lossy(target: str, write_options: Mapping[str, Any]) -> tuple[str, ...]:
    """What ``target`` written with ``write_options`` cannot hold."""
    if target == "csv":
        from .formats import csv

        return csv.lossy_for(write_options.get("columns", "full"))
    return get_format(target).lossy


def _images_written(images: Sequence[ImageAnnotation], lossy: Iterable[str]) -> int:
    if "empty_images" in lossy:
        return sum(1 for image in images if image.objects)
    return len(images)


class _Converted(NamedTuple):
    images: int
    objects: int
    classes: Sequence[str]
    skipped: Sequence[SkippedFile]
    lost: tuple[str, ...]


# --------------------------------------------------------------------- lost fields

# What a format's ``lossy`` names, as a test of whether an annotation set uses it.
# ``folder`` and ``depth`` are not among them, and ``path`` only where it names another
# file than ``filename``: see lost_fields.
_IMAGE_FIELDS = ("width", "height")
_OBJECT_FLAGS = ("difficult", "truncated")
_OBJECT_OPTIONAL = ("occluded", "pose")
_EMPTY_IMAGES = "images without objects"
# The order a warning lists them in.
_FIELD_ORDER = (
    *_IMAGE_FIELDS, "path", "image attributes", *(f"{name} flags" for name in _OBJECT_FLAGS),
    *_OBJECT_OPTIONAL, "object attributes", _EMPTY_IMAGES,
)


def lost_fields(annotations: AnnotationSet, lossy: Iterable[str]) -> list[str]:
    """The fields in ``lossy`` (a format's :attr:`~dsxsd.formats.Format.lossy`) that
    ``annotations`` actually uses, so a warning lists only data that was there and is not
    in the output, not everything the target format lacks, nor defaults (a ``difficult``
    flag that is 0, a pose that is ``Unspecified``, which the model reads as ``None``).

    Facts about the image file rather than about what was labelled in it are not named:
    ``folder`` and ``path`` (where the labelling tool found the image, on the labeller's
    machine) and ``depth`` (its channels, which the image itself says). LabelImg writes
    all three into every file, a format without them locates the image by its
    ``filename``, and the TF Object Detection API's CSV drops them the same way: a warning
    on every LabelImg folder would teach users to ignore warnings. The exception is a
    ``path`` whose file name differs from ``filename``: that path says which file the
    annotation is for, and losing it is losing data.
    ``"empty_images"`` (the basic CSV columns) names images without objects, which get
    no row."""
    lossy = set(lossy)
    used = _fields_used(annotations.images, lossy)
    if "classes" in lossy:
        # Such a format lists only the classes its boxes use.
        unused = set(annotations.classes) - {o.label for i in annotations.images for o in i.objects}
        if unused:
            used.append(f"classes without objects ({', '.join(sorted(unused))})")
    return used


def _fields_used(images: Sequence[ImageAnnotation], lossy: set[str]) -> list[str]:
    """The image and object fields of ``lossy`` that ``images`` use, in _FIELD_ORDER."""
    objects = [obj for image in images for obj in image.objects]

    def lost(level: str, name: str) -> bool:
        return name in lossy or f"{level}.{name}" in lossy

    used = []
    for name in _IMAGE_FIELDS:
        if lost("image", name) and any(getattr(i, name) is not None for i in images):
            used.append(name)
    if lost("image", "path") and any(_names_another_file(i) for i in images):
        used.append("path")
    if lost("image", "attributes") and any(i.attributes for i in images):
        used.append("image attributes")
    for name in _OBJECT_FLAGS:
        if lost("object", name) and any(getattr(o, name) for o in objects):
            used.append(f"{name} flags")
    for name in _OBJECT_OPTIONAL:
        if lost("object", name) and any(getattr(o, name) is not None for o in objects):
            used.append(name)
    if lost("object", "attributes") and any(o.attributes for o in objects):
        used.append("object attributes")
    if "empty_images" in lossy and any(not i.objects for i in images):
        used.append(_EMPTY_IMAGES)
    return used


def _names_another_file(image: ImageAnnotation) -> bool:
    """Whether the image's ``path`` ends in another name than its ``filename``."""
    if image.path is None:
        return False

    def name(text: str) -> str:
        return text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]

    return name(image.path) != name(image.filename)


# ------------------------------------------------------------ VOC to CSV in a pool

class _CsvChunk(NamedTuple):
    """What one chunk of VOC files gave, as CSV rows and what the summary needs."""

    text: str
    images: int
    objects: int
    classes: tuple[str, ...]
    fields: list[str]  # see _fields_used
    failures: list[tuple[str, Any]]  # (file, Failure), in file order


def _voc_to_csv_in_pool(
    input: Path,
    output: Path,
    on_error: OnError,
    workers: int | None,
    overwrite: bool,
    read_options: dict[str, Any],
    write_options: dict[str, Any],
    lossy: Sequence[str],
) -> _Converted | None:
    """The conversion, where the folder is large enough for workers; else ``None`` (the
    caller reads and writes). Options either side does not know go to the caller too,
    whose reader or writer refuses them as it always does."""
    from . import _io
    from ._parallel import resolve_workers
    from .formats import _voc_pool, csv, voc

    workers = resolve_workers(workers)
    columns = write_options.get("columns", "full")
    if (workers < 2 or not input.is_dir() or set(read_options) - {"images"}
            or set(write_options) - {"columns"} or columns not in ("full", "basic")):
        return None
    files = voc._annotation_names(input)
    if len(files) < _voc_pool.min_files():
        return None
    images = read_options.get("images")
    image_root = None if images is None else str(images)
    policy = ErrorPolicy(on_error)
    stop = policy.stops
    full = columns == "full"
    lossy = set(lossy)
    parts = [csv.csv_text((), full)]
    n_images = n_objects = 0
    classes: dict[str, None] = {}
    fields: set[str] = set()
    chunks = _voc_pool.run_in_pool(
        _voc_pool.chunks_of(files, workers), _csv_chunk, (image_root, stop, full, lossy),
        workers, where=input,
    )
    with voc._gc_paused(), contextlib.closing(chunks):  # an error raised stops the pool
        for chunk in chunks:
            for file, failure in chunk.failures:
                policy.failed(failure.error(), file)
            parts.append(chunk.text)
            n_images += chunk.images
            n_objects += chunk.objects
            classes.update(dict.fromkeys(chunk.classes))
            fields.update(chunk.fields)
    skipped = policy.skipped
    if len(skipped) == len(files):
        raise nothing_produced(output, skipped, "annotations", input)
    _io.write_text(output, "".join(parts), overwrite=overwrite)
    # Classes come from the labels read, so none is without objects.
    lost = tuple(name for name in _FIELD_ORDER if name in fields)
    return _Converted(n_images, n_objects, tuple(classes), skipped, lost)


def _csv_chunk(
    files: list[str], images: str | None, stop: bool, full: bool, lossy: set[str]
) -> _CsvChunk:
    """Runs in a worker (and in this process for its own chunks): the files read as
    ``read_voc`` reads them, written as ``write_csv`` writes them, less the header."""
    from ._parallel import Failure
    from .formats import _voc_pool, csv, voc

    parsed: list[ImageAnnotation] = []
    failures: list[tuple[str, Any]] = []
    with voc._gc_paused():
        for file, outcome in zip(files, _voc_pool._read_chunk(files, images, stop)):
            if isinstance(outcome, Failure):
                failures.append((file, outcome))
            else:
                parsed.append(voc._image_of(outcome))
        return _CsvChunk(
            csv.csv_text(parsed, full, header=False),
            _images_written(parsed, lossy),
            sum(len(image.objects) for image in parsed),
            classes_in_order(parsed),
            _fields_used(parsed, lossy),
            failures,
        )


__all__ = ["ConvertReport", "convert", "lost_fields"]
