"""Annotation checks (``dsxsd validate``): find what is wrong before training on it.

Every check yields a :class:`Problem`; nothing here raises on bad data, because a labelling
team wants the whole list at once, not the first error. Files that cannot be read at all
(malformed XML, schema failures) are read with ``on_error="skip"`` and reported as errors
too. A VOC file or CSV rows that do not read whole are read again value by value
(``salvage_file``, ``salvage_csv``): every value that does not read (a non-numeric
coordinate, a bad flag) is reported with its object and line, and the objects that do
read are checked like any other, so one bad value hides nothing else in its file. Image sizes are checked against the image header only (Pillow
reads the header lazily), so validating a large dataset never decodes pixels.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Literal, Sequence, Tuple, Union

from .errors import DsxsdError, require_path
from .annotations import BOX_OUT_OF_ORDER, AnnotationSet, ImageAnnotation, ObjectAnnotation

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (file, image, object index) and what (check, message)."""

    file: str
    severity: Severity
    check: str
    message: str
    object_index: int | None = None
    line: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.object_index is not None:
            where += f" object {self.object_index}"
        return f"{where}: {self.severity}: {self.message} [{self.check}]"


def read_class_list(path: str | os.PathLike[str]) -> list[str]:
    """Class names, one a line, surrounding white space stripped, blank lines ignored."""
    try:
        text = require_path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DsxsdError(f"class list is not UTF-8 ({exc.reason})", file=path) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    # Image.open reads only the header; the pixels are never decoded here.
    with Image.open(path) as image:
        return image.size


def validate(
    annotations: str | os.PathLike[str] | AnnotationSet,
    *,
    format: str | None = None,
    images: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    tolerance: float = 0.0,
) -> list[Problem]:
    """Check annotations and return every problem found (an empty list when clean).

    Errors: box order, zero or negative area, unreadable files, missing images (only with
    ``images``), unknown classes (only with ``classes``), a box outside the image by more
    than ``tolerance`` pixels, an image header size that disagrees with the annotation.
    Warnings: duplicate boxes (same class and box twice in one image), unknown image size.
    """
    if isinstance(annotations, AnnotationSet):
        source = "<annotations>"
        problems: list[Problem] = []
        entries = [(image, list(image.objects)) for image in annotations.images]
    else:
        source = str(annotations)
        problems, entries = _read(annotations, format)
    known = set(classes) if classes is not None else None
    finder = None
    if images is not None:
        from ._images import ImageFinder

        finder = ImageFinder(require_path(images))
    per_image = Path(source).is_dir()
    for image, objects in entries:
        file = image.filename
        width, height = image.width, image.height
        if finder is not None:
            try:
                found = finder.find(image.filename, path=image.path, annotation_file=source,
                                    per_image_file=per_image)
            except DsxsdError as exc:
                problems.append(Problem(file, "error", "missing-image", str(exc)))
            else:
                try:
                    real_w, real_h = _header_size(found)
                except Exception as exc:  # any unreadable header means the same to the user
                    problems.append(Problem(file, "error", "unreadable-image",
                                            f"cannot read image header of {found}: {exc}"))
                else:
                    if (width, height) != (real_w, real_h) and width is not None:
                        problems.append(Problem(
                            file, "error", "size-mismatch",
                            f"annotation says {width}x{height}, image is {real_w}x{real_h}"))
                    width, height = real_w, real_h
        seen: dict[tuple, int] = {}
        for index, obj in enumerate(objects):
            if isinstance(obj, list):
                problems.extend(_unreadable(error, index) for error in obj)
                continue
            box = obj.bbox
            if known is not None and obj.label not in known:
                problems.append(Problem(file, "error", "unknown-class",
                                        f"class {obj.label!r} is not in the class list", index))
            fault = box.fault()
            if fault is not None:
                check = "box-order" if fault == BOX_OUT_OF_ORDER else "zero-area"
                problems.append(Problem(
                    file, "error", check,
                    f"{fault} ({box.xmin}, {box.ymin}, {box.xmax}, {box.ymax})", index))
            if width is not None and height is not None:
                if (min(box.xmin, box.xmax) < -tolerance or min(box.ymin, box.ymax) < -tolerance
                        or max(box.xmin, box.xmax) > width + tolerance
                        or max(box.ymin, box.ymax) > height + tolerance):
                    problems.append(Problem(
                        file, "error", "outside-image",
                        f"box ({box.xmin}, {box.ymin}, {box.xmax}, {box.ymax}) is outside "
                        f"the {width}x{height} image", index))
            key = (obj.label, box.xmin, box.ymin, box.xmax, box.ymax)
            if key in seen:
                problems.append(Problem(file, "warning", "duplicate",
                                        f"same class and box as object {seen[key]}", index))
            else:
                seen[key] = index
        if (width is None or height is None) and objects:
            problems.append(Problem(file, "warning", "no-size",
                                    "image size unknown: boxes not checked against it"))
    return problems


# An image to check, and each of its objects in order: the object, or the errors it gave.
_Entry = Tuple[ImageAnnotation, List[Union[ObjectAnnotation, List[DsxsdError]]]]


def _read(
    path: str | os.PathLike[str], format: str | None
) -> tuple[list[Problem], list[_Entry]]:
    """The images of ``path`` to check, and the problems of what could not be read.

    VOC files and CSV files that do not read whole are read again by the format's
    ``salvage`` reader, so that each bad value is reported, not the first of its file
    (VOC) or image (CSV); a skipped item of any other format is one problem."""
    from .formats import csv, get_format, guess_format, read, voc

    name = get_format(format or guess_format(require_path(path))).name
    dataset = read(path, name, on_error="skip")
    entries: list[_Entry] = [(image, list(image.objects)) for image in dataset.images]
    if not dataset.skipped:
        return [], entries
    if name == "csv":
        salvaged, unplaced = csv.salvage_csv(path)
        return [_unreadable(error) for error in unplaced], list(salvaged)
    problems = []
    for skip in dataset.skipped:
        if name == "voc":
            try:
                entries.append(voc.salvage_file(skip.file))
                continue
            except DsxsdError:
                pass  # the file as a whole is bad: the reason it was skipped says why
        problems.append(Problem(skip.file, "error", "unreadable", skip.reason, line=skip.line))
    return problems, entries


def _unreadable(error: DsxsdError, index: int | None = None) -> Problem:
    reason = error.reason
    if index is not None:  # the Problem names the object; its message need not again
        reason = reason.removeprefix(f"object {index}: ")
    return Problem(error.file or "", "error", "unreadable", reason, index, error.line)


__all__ = ["Problem", "validate", "read_class_list"]
