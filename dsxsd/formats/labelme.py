"""labelme JSON (read only): one ``<stem>.json`` per image, as labelme saves it.

Rectangle shapes become boxes, their two points in whatever order they were drawn
(corners are normalised to min/max). Other shapes (polygon, circle, line, point, ...) are
not boxes: they are left out and listed in ``skipped`` with the file and shape index, or,
with ``shapes_as_boxes=True``, converted to the bounding box of their points (a point or a
straight line, which has no area, is still left out and listed). ``imageData``
is never needed; ``imagePath`` gives the file name and ``imageWidth``/``imageHeight`` the
size. Input is a folder of labelme files or one file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .. import _engine
from ..errors import InvalidValueError, MalformedFileError, MissingFieldError
from ..annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation, SkippedFile
from . import Format, OnError
from .json import parse_document


def _points(shape: dict[str, Any], where: str, path: Path) -> list[tuple[float, float]]:
    points = shape.get("points")
    if not isinstance(points, list) or not points:
        raise MissingFieldError(f"{where}: 'points' is missing or empty", file=path, field=f"{where}.points")
    result = []
    for point in points:
        if not (isinstance(point, list) and len(point) == 2) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point
        ):
            raise InvalidValueError(
                f"{where}: point {point!r} is not [x, y]", file=path, field=f"{where}.points"
            )
        result.append((float(point[0]), float(point[1])))
    return result


def _size(document: dict[str, Any], key: str, path: Path) -> int | None:
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValueError(f"{key!r} is {value!r}, not a size", file=path, field=key)
    return value


def read_file(
    path: str | os.PathLike[str], *, shapes_as_boxes: bool = False
) -> tuple[ImageAnnotation, list[SkippedFile]]:
    """One labelme file: its image, and the shapes left out (as skipped entries)."""
    return tuple(parse_bytes(Path(path).read_bytes(), path, shapes_as_boxes))  # type: ignore[return-value]


def parse_bytes(data: bytes, file: str | os.PathLike[str], shapes_as_boxes: bool = False) -> _engine.Parsed:
    """The reference reader: one labelme file's bytes as its image, and the shapes left
    out (as skipped entries)."""
    path = Path(file)
    document = parse_document(path, data)
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise MalformedFileError("not a labelme file: no 'shapes' list", file=path)
    image_path = document.get("imagePath")
    if not isinstance(image_path, str) or not image_path.strip():
        raise MissingFieldError("'imagePath' is missing or empty", file=path, field="imagePath")
    objects, left_out = [], []
    for index, shape in enumerate(document["shapes"]):
        where = f"shapes[{index}]"
        if not isinstance(shape, dict):
            raise MalformedFileError(f"{where} is not an object", file=path, field=where)
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise MissingFieldError(f"{where}: 'label' is {label!r}", file=path, field=f"{where}.label")
        kind = shape.get("shape_type") or "polygon"  # labelme's default when absent
        points = _points(shape, where, path)
        if kind == "rectangle" and len(points) != 2:
            raise InvalidValueError(
                f"{where}: a rectangle has 2 points, not {len(points)}", file=path, field=f"{where}.points"
            )
        if kind != "rectangle" and not shapes_as_boxes:
            left_out.append(SkippedFile(str(path), f"{where}: {kind} shape {label!r} is not a box"))
            continue
        if kind == "circle" and len(points) == 2:
            (cx, cy), (px, py) = points
            r = math.hypot(px - cx, py - cy)
            points = [(cx - r, cy - r), (cx + r, cy + r)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = BBox(min(xs), min(ys), max(xs), max(ys))
        if kind != "rectangle" and (box.xmin == box.xmax or box.ymin == box.ymax):
            # A point or a straight line has no box worth cropping.
            left_out.append(SkippedFile(str(path), f"{where}: {kind} shape {label!r} has no area"))
            continue
        objects.append(ObjectAnnotation(label.strip(), box))
    name = image_path.strip().replace("\\", "/")
    image = ImageAnnotation(
        name.rsplit("/", 1)[-1],
        width=_size(document, "imageWidth", path),
        height=_size(document, "imageHeight", path),
        objects=objects,
        path=name if "/" in name else None,
    )
    return _engine.Parsed(image, left_out)


def read_labelme(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    shapes_as_boxes: bool = False,
    workers: int | None = 1,
) -> AnnotationSet:
    """Read a labelme file or a folder of them (sorted by name). ``workers`` is that of
    :func:`dsxsd.read`."""
    found, skipped, _ = _engine.read_folder(
        FILES, Path(path), on_error, workers, shapes_as_boxes=shapes_as_boxes
    )
    return AnnotationSet(found, skipped=skipped)


def _open(path: Path, shapes_as_boxes: bool = False) -> _engine.Folder:
    files = sorted(p for p in path.glob("*.json") if not p.name.startswith("._")) if path.is_dir() else [path]
    return _engine.Folder([str(file) for file in files], bool(shapes_as_boxes))


def _sniff(path: Path) -> bool:
    """labelme files carry ``"shapes"`` and ``"imagePath"``; a folder holds such files."""
    if path.is_dir():
        return any(_sniff(p) for p in sorted(path.glob("*.json"))[:3])
    try:
        with open(path, "rb") as stream:
            head = stream.read(1 << 16)
    except OSError:
        return False
    return b'"shapes"' in head and b'"imagePath"' in head


FILES = _engine.FileFormat("labelme", open=_open, parse=parse_bytes)

FORMAT = Format(
    name="labelme",
    summary="labelme JSON, one per image (read only; rectangles are boxes)",
    reader=read_labelme,
    writer=None,
    suffixes=(".json", "/"),
    sniff=_sniff,
    files=FILES,
)

__all__ = ["FORMAT", "parse_bytes", "read_labelme", "read_file"]
