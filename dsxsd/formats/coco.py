"""COCO detection JSON: one instances file with ``images``, ``annotations``, ``categories``.

Coordinate convention: a COCO ``bbox`` is ``[x, y, w, h]`` with ``x = xmin``, ``y = ymin``,
``w = xmax - xmin`` and ``h = ymax - ymin``, in the same pixel units as VOC (no shift), so
integer VOC boxes convert exactly; reading gives ``xmax = x + w``. For float corners that
subtraction can round in the last bit, which the contract tests project (``bbox_xywh``).

``one_based=True`` (``--one-based``) is for VOC data whose corners are 1-based inclusive
pixel indices (the VOC devkit's convention, which the py-faster-rcnn/Detectron converters
shift): writing gives ``x = xmin - 1``, ``w = xmax - xmin + 1`` (so a box covering pixels
1..10 becomes ``[0, 10]`` wide 10) and reading does the inverse, so the same option on both
sides round-trips exactly.

Reading keeps category names (ids may be non-contiguous: they are only keys), ``file_name``
with sub-folders, images without annotations and ``iscrowd`` (as the object attribute
``iscrowd``, present only when true). Segmentation (polygons or RLE), ``area``, ``info``
and ``licenses`` are not needed for boxes and are ignored, whatever their shape. Writing
numbers images ``1..n`` in order, categories ``1..k`` in class order and annotations in
order, so the same input gives the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .. import _io
from ..errors import ErrorPolicy, InvalidValueError, MalformedFileError, MissingFieldError
from ..annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from . import Format, OnError
from .json import parse_document, plain_number


# ----------------------------------------------------------------------------- writing


def to_document(annotations: AnnotationSet, one_based: bool = False) -> dict[str, Any]:
    """The COCO document for ``annotations``: stable ids, boxes as ``[x, y, w, h]``
    (shifted from 1-based inclusive corners with ``one_based``, module docstring)."""
    shift = 1 if one_based else 0
    category_ids = {name: number for number, name in enumerate(annotations.classes, 1)}
    images, boxes = [], []
    for image_id, image in enumerate(annotations.images, 1):
        images.append(
            {"id": image_id, "file_name": image.filename, "width": image.width, "height": image.height}
        )
        for obj in image.objects:
            box = obj.bbox
            x, y = box.xmin - shift, box.ymin - shift
            w, h = box.xmax - x, box.ymax - y
            boxes.append(
                {
                    "id": len(boxes) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[obj.label],
                    "bbox": [plain_number(x), plain_number(y), plain_number(w), plain_number(h)],
                    "area": plain_number(abs(w * h)),
                    "iscrowd": 1 if obj.attributes.get("iscrowd") in (1, True, "1") else 0,
                    "segmentation": [],
                }
            )
    categories = [{"id": n, "name": name, "supercategory": ""} for name, n in category_ids.items()]
    return {"images": images, "annotations": boxes, "categories": categories}


def write_coco(
    annotations: AnnotationSet,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    one_based: bool = False,
) -> None:
    path = Path(path)
    try:
        text = json.dumps(to_document(annotations, one_based), indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise InvalidValueError(f"cannot write as COCO JSON: {exc}", file=path) from None
    _io.write_text(path, text + "\n", overwrite=overwrite)


# ----------------------------------------------------------------------------- reading


class _Bad(Exception):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _list(document: dict[str, Any], key: str, required: bool = True) -> list[Any]:
    value = document.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{key!r} must be a list", key)
    return value


def _int(item: Any, key: str, where: str, optional: bool = False) -> int | None:
    value = item.get(key)
    if value is None and optional:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if value is None:
            raise _Bad(f"{key!r} is missing", f"{where}.{key}")
        raise _Bad(f"{key!r} is {value!r}, not an integer", f"{where}.{key}")
    return value


def _box(item: dict[str, Any], where: str, shift: int) -> BBox:
    value = item.get("bbox")
    if not (isinstance(value, list) and len(value) == 4):
        raise _Bad(f"'bbox' is {value!r}, not [x, y, w, h]", f"{where}.bbox")
    for number in value:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise _Bad(f"'bbox' holds {number!r}, not a number", f"{where}.bbox")
    x, y, w, h = (float(v) for v in value)
    return BBox(x + shift, y + shift, x + w, y + h)


def read_coco(
    path: str | os.PathLike[str], *, on_error: OnError = "raise", one_based: bool = False
) -> AnnotationSet:
    """Read a COCO instances file. With ``on_error="skip"`` a bad annotation or image is
    left out and listed in ``skipped`` with its JSON path; a bad category is always an
    error (every box depends on it). ``one_based`` gives 1-based inclusive corners (module
    docstring)."""
    shift = 1 if one_based else 0
    path = Path(path)
    document = parse_document(path)
    if not isinstance(document, dict):
        raise MalformedFileError("a COCO file is a JSON object", file=path)
    try:
        categories: dict[int, str] = {}
        for index, item in enumerate(_list(document, "categories")):
            where = f"categories[{index}]"
            if not isinstance(item, dict):
                raise _Bad("not an object", where)
            number = _int(item, "id", where)
            name = item.get("name")
            if not isinstance(name, str) or not name.strip():
                raise _Bad(f"'name' is {name!r}, not a class name", f"{where}.name")
            if number in categories:
                raise _Bad(f"category id {number} appears twice", f"{where}.id")
            categories[number] = name.strip()
        image_items = _list(document, "images")
        annotation_items = _list(document, "annotations", required=False)
    except _Bad as exc:
        raise MissingFieldError(exc.message, file=path, field=exc.field) from None

    policy = ErrorPolicy(on_error)

    def bad(exc: _Bad) -> None:
        error = InvalidValueError(exc.message, file=path, field=exc.field)
        policy.failed(error, reason=f"{exc.field}: {exc.message}")

    objects: dict[int, list[ObjectAnnotation]] = {}
    for index, item in enumerate(annotation_items):
        where = f"annotations[{index}]"
        try:
            if not isinstance(item, dict):
                raise _Bad("not an object", where)
            image_id = _int(item, "image_id", where)
            category = _int(item, "category_id", where)
            if category not in categories:
                raise _Bad(f"category_id {category} is not in 'categories'", f"{where}.category_id")
            crowd = item.get("iscrowd", 0) in (1, True)
            objects.setdefault(image_id, []).append(
                ObjectAnnotation(
                    categories[category],
                    _box(item, where, shift),
                    attributes={"iscrowd": 1} if crowd else {},
                )
            )
        except _Bad as exc:
            bad(exc)

    images = []
    seen: set[int] = set()
    for index, item in enumerate(image_items):
        where = f"images[{index}]"
        try:
            if not isinstance(item, dict):
                raise _Bad("not an object", where)
            image_id = _int(item, "id", where)
            if image_id in seen:
                raise _Bad(f"image id {image_id} appears twice", f"{where}.id")
            seen.add(image_id)
            name = item.get("file_name")
            if not isinstance(name, str) or not name.strip():
                raise _Bad(f"'file_name' is {name!r}", f"{where}.file_name")
            try:
                images.append(
                    ImageAnnotation(
                        name.strip(),
                        width=_int(item, "width", where, optional=True),
                        height=_int(item, "height", where, optional=True),
                        objects=objects.pop(image_id, []),
                    )
                )
            except ValueError as exc:
                raise _Bad(str(exc), where) from None
        except _Bad as exc:
            bad(exc)
    for image_id in objects:
        bad(_Bad(f"annotations refer to image_id {image_id}, which is not in 'images'", "annotations"))
    return AnnotationSet(images, tuple(categories.values()), skipped=policy.skipped)


def _sniff(path: Path) -> bool:
    """An instances file has ``"categories"`` and ``"images"`` near the top (or anywhere,
    for a small file); labelme and dsxsd files have neither pair."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(1 << 20)
    except OSError:
        return False
    return b'"categories"' in head and b'"images"' in head and b"dsxsd.annotations" not in head


FORMAT = Format(
    name="coco",
    summary="COCO detection JSON: images, annotations (bbox [x, y, w, h]), categories",
    reader=read_coco,
    writer=write_coco,
    suffixes=(".json",),
    sniff=_sniff,
    lossy=(
        "bbox_xywh",
        "depth",
        "folder",
        "path",
        "image.attributes",
        "difficult",
        "truncated",
        "occluded",
        "pose",
        "object.attributes",
    ),
)

__all__ = ["FORMAT", "read_coco", "write_coco", "to_document"]
