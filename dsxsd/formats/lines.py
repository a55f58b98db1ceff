"""The ``lines`` format: the keras-yolo line list, plus its ``classes.txt``.

One line per image::

    <image path> <xmin>,<ymin>,<xmax>,<ymax>,<class id> <xmin>,...

and ``classes.txt`` beside the list, one class name per line, the id of a class being its
0-based line number. This is what ``voc_annotation.py`` of qqwweee/keras-yolo3 writes and
what its ``train.py`` reads (``line.split()``), so fields are separated by any white space
and an image path holding white space cannot be written: the writer refuses it, naming
the image, rather than produce a list that trains on wrong files.

What the writer puts first on a line is the image's ``path`` when it has one, else its
``filename``. The reader keeps that text as ``path`` and takes ``filename`` from its last
component (``/data/VOC/JPEGImages/000001.jpg`` -> ``000001.jpg``), as LabelImg fills the
two. Image sizes, flags and poses have no place in a line: they read back as ``None`` and
``False``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from .. import _io
from ..errors import (
    ErrorPolicy,
    DsxsdError,
    InvalidAnnotationError,
    InvalidValueError,
)
from ..annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from . import Format, OnError
from .csv import decode_text, number_text, parse_number

CLASSES_NAME = "classes.txt"
_CLASS_ID = re.compile(r"\d+")

ImagePath = Literal["path", "filename"]


def classes_path(path: Path, classes: str | os.PathLike[str] | None = None) -> Path:
    """Where the class list of the line list at ``path`` is: ``classes.txt`` beside it,
    unless ``classes`` names another file."""
    return Path(classes) if classes is not None else path.parent / CLASSES_NAME


def image_name(image_path: str) -> str:
    """The last component of a path written on either kind of system."""
    return image_path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# ----------------------------------------------------------------------------- writing


def _line_path(image: ImageAnnotation, image_path: ImagePath, output: Path) -> str:
    text = image.path if image_path == "path" and image.path else image.filename
    if any(char.isspace() for char in text):
        raise InvalidValueError(
            f"image {image.filename!r}: its path {text!r} holds white space, which the "
            "lines format uses to separate fields; rename the file"
            + (" or write filenames instead (image_path='filename')" if image.path else ""),
            file=output,
        )
    return text


def dumps(
    annotations: AnnotationSet, output: Path, image_path: ImagePath = "path"
) -> tuple[str, str]:
    """The texts of the line list and of its class list."""
    classes = annotations.classes or ()
    for name in classes:
        if "\n" in name or "\r" in name:
            raise InvalidValueError(
                f"class {name!r} holds a line break, which classes.txt cannot hold",
                file=output,
            )
    ids = {name: index for index, name in enumerate(classes)}
    lines = []
    for image in annotations.images:
        parts = [_line_path(image, image_path, output)]
        for obj in image.objects:
            box = obj.bbox
            parts.append(
                f"{number_text(box.xmin)},{number_text(box.ymin)},"
                f"{number_text(box.xmax)},{number_text(box.ymax)},{ids[obj.label]}"
            )
        lines.append(" ".join(parts) + "\n")
    return "".join(lines), "".join(name + "\n" for name in classes)


def write_lines(
    annotations: AnnotationSet,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    classes: str | os.PathLike[str] | None = None,
    image_path: ImagePath = "path",
) -> None:
    """Write the line list and ``classes.txt`` beside it (or to ``classes``).

    Everything is checked before anything is written, and each file is written
    atomically. A ``classes.txt`` that already holds exactly this class list is left as
    it is without ``overwrite``, so ``train.txt`` and ``val.txt`` can share one.
    """
    if image_path not in ("path", "filename"):
        raise ValueError(f"image_path must be 'path' or 'filename', got {image_path!r}")
    path = Path(path)
    names_path = classes_path(path, classes)
    if names_path.resolve() == path.resolve():
        raise InvalidValueError(
            f"the line list cannot be its own class list; name it other than {CLASSES_NAME}",
            file=path,
        )
    text, names = dumps(annotations, path, image_path)
    names_bytes = names.encode("utf-8")
    same_names = names_path.is_file() and names_path.read_bytes() == names_bytes
    _io.check_output(path, overwrite)
    if not same_names:
        _io.check_output(names_path, overwrite)
        _io.write_bytes(names_path, names_bytes, overwrite=overwrite)
    _io.write_text(path, text, overwrite=overwrite)


# ----------------------------------------------------------------------------- reading


def read_classes(path: Path) -> tuple[str, ...]:
    """One name per line; blank lines at the end are ignored, elsewhere they are an
    error (they would shift every id after them)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidAnnotationError(
            "no class list: the lines format needs classes.txt beside the list "
            "(one class name per line); pass classes= to name another file",
            file=path,
        ) from None
    lines = decode_text(data, path).split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    names: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise InvalidValueError("empty class name", file=path, line=number)
        if name in names:
            raise InvalidValueError(
                f"class {name!r} is already on line {names[name]}", file=path, line=number
            )
        names[name] = number
    return tuple(names)


def _parse_line(line: str, classes: tuple[str, ...], path: Path, number: int) -> ImageAnnotation:
    # str.split() with no argument: the same white space keras-yolo's train.py splits on.
    fields = line.split()
    image_path, boxes = fields[0], fields[1:]
    objects = []
    for position, field in enumerate(boxes, start=1):
        values = field.split(",")
        if len(values) != 5:
            raise InvalidValueError(
                f"box {position} {field!r} must be xmin,ymin,xmax,ymax,class_id "
                f"(5 numbers, got {len(values)})",
                file=path,
                line=number,
            )
        try:
            box = BBox(*(parse_number(value) for value in values[:4]))
        except ValueError as exc:
            raise InvalidValueError(f"box {position}: {exc}", file=path, line=number) from None
        class_id = values[4].strip()
        if not _CLASS_ID.fullmatch(class_id):
            raise InvalidValueError(
                f"box {position}: class id must be a whole number, got {values[4]!r}",
                file=path,
                line=number,
            )
        if int(class_id) >= len(classes):
            raise InvalidValueError(
                f"box {position}: class id {int(class_id)} is not in the class list "
                f"({len(classes)} classes, ids 0 to {len(classes) - 1})",
                file=path,
                line=number,
            )
        objects.append(ObjectAnnotation(classes[int(class_id)], box))
    filename = image_name(image_path)
    if not filename:
        raise InvalidValueError(f"{image_path!r} is not an image path", file=path, line=number)
    return ImageAnnotation(filename, objects=objects, path=image_path)


def read_lines(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    classes: str | os.PathLike[str] | None = None,
) -> AnnotationSet:
    """Read a line list and its class list (``classes.txt`` beside it, or ``classes``).

    Blank lines are skipped; a line with only a path is an image without objects. With
    ``on_error="skip"`` a bad line is left out and listed in ``skipped``.
    """
    path = Path(path)
    class_names = read_classes(classes_path(path, classes))
    text = decode_text(path.read_bytes(), path)
    images = []
    policy = ErrorPolicy(on_error)
    # Split on "\n" only: str.splitlines() would also break inside a line at characters
    # such as U+2028 that keras-yolo reads as part of the line.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            images.append(_parse_line(line, class_names, path, number))
        except DsxsdError as exc:
            policy.failed(exc, path, line=number)
    return AnnotationSet(images, class_names, skipped=policy.skipped)


def _sniff(path: Path) -> bool:
    """A line list has a class list beside it, and is not that class list."""
    return path.name != CLASSES_NAME and (path.parent / CLASSES_NAME).is_file()


FORMAT = Format(
    name="lines",
    summary="keras-yolo line list: '<image path> xmin,ymin,xmax,ymax,class_id ...' + classes.txt",
    reader=read_lines,
    writer=write_lines,
    suffixes=(".txt",),
    sniff=_sniff,
    lossy=(
        "width",
        "height",
        "depth",
        "folder",
        "filename",
        "difficult",
        "truncated",
        "occluded",
        "pose",
        "attributes",
    ),
)

__all__ = ["FORMAT", "read_lines", "write_lines", "read_classes", "classes_path", "image_name"]
