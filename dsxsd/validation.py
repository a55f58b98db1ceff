"""Annotation checks (``dsxsd validate``): find what is wrong before training on it.

Every check yields a :class:`Problem`; nothing here raises on bad data, because a labelling
team wants the whole list at once, not the first error. Files that cannot be read at all
(malformed XML, non-numeric coordinates, schema failures) are read with ``on_error="skip"``
and reported as errors too. Image sizes are checked against the image header only (Pillow
reads the header lazily), so validating a large dataset never decodes pixels.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

from .errors import DsxsdError, require_path
from .model import AnnotationSet

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
        dataset, source = annotations, "<annotations>"
    else:
        from .formats import read

        dataset = read(annotations, format, on_error="skip")
        source = str(annotations)
    problems = [
        Problem(skip.file, "error", "unreadable", skip.reason, line=skip.line)
        for skip in dataset.skipped
    ]
    known = set(classes) if classes is not None else None
    finder = None
    if images is not None:
        from ._images import ImageFinder

        finder = ImageFinder(require_path(images))
    per_image = Path(source).is_dir()
    for image in dataset.images:
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
        for index, obj in enumerate(image.objects):
            box = obj.bbox
            if known is not None and obj.label not in known:
                problems.append(Problem(file, "error", "unknown-class",
                                        f"class {obj.label!r} is not in the class list", index))
            if box.xmin > box.xmax or box.ymin > box.ymax:
                problems.append(Problem(
                    file, "error", "box-order",
                    f"corners out of order ({box.xmin}, {box.ymin}, {box.xmax}, {box.ymax})",
                    index))
            elif box.xmin == box.xmax or box.ymin == box.ymax:
                problems.append(Problem(file, "error", "zero-area",
                                        f"box has zero area ({box.xmin}, {box.ymin}, "
                                        f"{box.xmax}, {box.ymax})", index))
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
        if (width is None or height is None) and image.objects:
            problems.append(Problem(file, "warning", "no-size",
                                    "image size unknown: boxes not checked against it"))
    return problems


__all__ = ["Problem", "validate", "read_class_list"]
