"""``convert``: annotations from one registered format to another, with what was lost.

What ``dsxsd convert`` runs: read the input, write the output, name what the target
format cannot hold (only what the input really uses), and write the skip report beside
the output. Every pair of formats goes the same way. A folder of per-image files is read
by the engine (:mod:`dsxsd._engine`), chunk by chunk, on worker processes where the
folder is large; each chunk's images are summarised (counts, classes, the fields in use)
where they were read, and encoded there too where the target format writes in parts
(:class:`~dsxsd.formats.Parts`, a CSV's rows), so that this process only joins the parts:
rebuilding every image here from what the workers sent would be a serial part as long as
the reading. Any other target is written from the images, as :func:`dsxsd.write` writes.
An input that is one file is read whole, as one chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from .errors import ErrorPolicy, require_path
from .formats import OnError, get_format, guess_format, read, write
from .annotations import AnnotationSet, ImageAnnotation, SkippedFile, classes_in_order
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
    policy = ErrorPolicy(on_error)  # a bad value is refused before anything is looked at
    if source is None:
        require_path(input)  # before guessing from it: a typo is not an unknown format
    source_format = get_format(source or guess_format(input))
    target_format = get_format(target or guess_format(output, for_writing=True))
    source, target = source_format.name, target_format.name
    read_options, write_options = dict(read_options or {}), dict(write_options or {})
    lossy = set(_lossy(target, write_options))
    parts = target_format.parts
    if parts is not None:
        parts.check(**write_options)  # before the long work, as the writer would
    encode = None if parts is None else (parts.encode, write_options)
    summary = _Summary()
    if source_format.files is not None:
        from ._engine import map_folder, resolve_workers

        workers = resolve_workers(workers)
        path = require_path(input)
        folder = source_format.files.open(path, **read_options)
        chunks = map_folder(
            source_format.files, folder, policy, workers, where=path,
            keep=parts is None, finish=_summarise, finish_args=(lossy, encode),
        )
        for chunk in chunks:
            summary.add(chunk.value, chunk.images)
        classes, skipped, annotations = folder.classes, policy.skipped, None
    else:
        annotations = read(input, source, on_error=policy, workers=workers, **read_options)
        summary.add(_summarise(annotations.images, lossy, encode), None)
        classes, skipped = annotations.classes, list(annotations.skipped)
    if skipped and not summary.read:
        raise nothing_produced(output, skipped, "annotations", input)
    classes = tuple(summary.labels) if classes is None else tuple(classes)
    if parts is not None:
        parts.join(summary.parts, output, classes, overwrite=overwrite, **write_options)
    else:
        if annotations is None:
            annotations = AnnotationSet(summary.images, classes)
        write(annotations, output, target, overwrite=overwrite, **write_options)
    done = _Converted(summary.written, summary.objects, classes, skipped, summary.lost(classes, lossy))
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


# ------------------------------------------------------------ chunks


class _Part(NamedTuple):
    """What one chunk of images gave: the target's part (where it writes in parts) and
    what the summary needs."""

    data: Any
    read: int
    written: int
    objects: int
    labels: tuple[str, ...]
    fields: list[str]  # see _fields_used


def _summarise(
    images: Sequence[ImageAnnotation], lossy: set[str], encode: tuple[Any, dict[str, Any]] | None
) -> _Part:
    """Runs where the chunk was read (a worker, or this process)."""
    data = None if encode is None else encode[0](images, **encode[1])
    return _Part(
        data, len(images), _images_written(images, lossy),
        sum(len(image.objects) for image in images), classes_in_order(images),
        _fields_used(images, lossy),
    )


class _Summary:
    """The chunks' parts and counts, joined in chunk order."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.images: list[ImageAnnotation] = []
        self.read = self.written = self.objects = 0
        self.labels: dict[str, None] = {}
        self.fields: set[str] = set()

    def add(self, part: _Part, images: Sequence[ImageAnnotation] | None) -> None:
        self.parts.append(part.data)
        if images is not None:
            self.images.extend(images)
        self.read += part.read
        self.written += part.written
        self.objects += part.objects
        self.labels.update(dict.fromkeys(part.labels))
        self.fields.update(part.fields)

    def lost(self, classes: Sequence[str], lossy: set[str]) -> tuple[str, ...]:
        """:func:`lost_fields` of everything read, from the chunks' summaries."""
        lost = [name for name in _FIELD_ORDER if name in self.fields]
        unused = set(classes) - set(self.labels)
        if "classes" in lossy and unused:
            lost.append(f"classes without objects ({', '.join(sorted(unused))})")
        return tuple(lost)


__all__ = ["ConvertReport", "convert", "lost_fields"]
