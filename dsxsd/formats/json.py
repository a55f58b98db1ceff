"""The ``json`` format: dsxsd's own lossless file, described by a JSON Schema.

``{"format": "dsxsd.annotations", "version": 1, "classes": [...], "images": [...]}`` holds
every field of the model, so it is the format to keep a dataset in between tools. Its
contract is ``schemas/annotations.schema.json``: the writer's output validates against it
and the reader checks input against it before building anything, so an error names the
JSON path of the bad value (``images[3].objects[0].bbox.xmin``).

``occluded`` and ``attributes`` are written only when set, which keeps files of plain
detection datasets short. Output bytes are deterministic: two-space indents, UTF-8 text
(no ``\\u`` escapes), integral numbers as integers and a final newline.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from .. import _io
from ..errors import (
    ErrorPolicy,
    HostileInputError,
    InvalidValueError,
    MalformedFileError,
)
from ..annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from . import Format, OnError
from .csv import decode_text

FORMAT_TAG = "dsxsd.annotations"
VERSION = 1


# ----------------------------------------------------------------------------- writing


def plain_number(value: float) -> int | float:
    """An integral float as an int (``12`` rather than ``12.0`` in the JSON), as long as
    it is exactly one."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def to_document(annotations: AnnotationSet) -> dict[str, Any]:
    """The JSON document for ``annotations`` (plain dicts and lists)."""
    return {
        "format": FORMAT_TAG,
        "version": VERSION,
        "classes": list(annotations.classes),
        "images": [_image_document(image) for image in annotations.images],
    }


def _image_document(image: ImageAnnotation) -> dict[str, Any]:
    item: dict[str, Any] = {
        "filename": image.filename,
        "width": image.width,
        "height": image.height,
        "depth": image.depth,
        "folder": image.folder,
        "path": image.path,
        "objects": [_object_document(obj) for obj in image.objects],
    }
    if image.attributes:
        item["attributes"] = dict(image.attributes)
    return item


def _object_document(obj: ObjectAnnotation) -> dict[str, Any]:
    box = obj.bbox
    item: dict[str, Any] = {
        "class": obj.label,
        "bbox": {
            "xmin": plain_number(box.xmin),
            "ymin": plain_number(box.ymin),
            "xmax": plain_number(box.xmax),
            "ymax": plain_number(box.ymax),
        },
        "difficult": obj.difficult,
        "truncated": obj.truncated,
        "pose": obj.pose,
    }
    if obj.occluded is not None:
        item["occluded"] = obj.occluded
    if obj.attributes:
        item["attributes"] = dict(obj.attributes)
    return item


def dumps(annotations: AnnotationSet, *, file: Path | None = None) -> str:
    """The file's text. Attributes that JSON cannot hold are an error, not a ``str()``."""
    document = to_document(annotations)
    try:
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        for index, image in enumerate(annotations.images):
            try:
                json.dumps(_image_document(image), allow_nan=False)
            except (TypeError, ValueError):
                raise InvalidValueError(
                    f"image {image.filename!r} has attributes JSON cannot hold: {exc}",
                    file=file,
                    field=f"images[{index}]",
                ) from None
        raise InvalidValueError(f"cannot write as JSON: {exc}", file=file) from None


def write_json(
    annotations: AnnotationSet, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    path = Path(path)
    _io.write_text(path, dumps(annotations, file=path), overwrite=overwrite)


# ----------------------------------------------------------------------------- reading


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_path(parts: Iterable[Any]) -> str:
    """``["images", 3, "objects", 0]`` -> ``images[3].objects[0]``; ``$`` for the root."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "$"


def _first_error(errors: list[Any]) -> Any:
    """The error earliest in the document (so a user fixes the file top to bottom)."""
    from jsonschema.exceptions import relevance

    def position(error: Any) -> tuple[Any, ...]:
        # Array indexes and keys never compare with each other: tag them.
        return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in error.absolute_path)

    earliest = min(position(error) for error in errors)
    tied = [error for error in errors if position(error) == earliest]
    return max(tied, key=relevance)


def _message(error: Any) -> str:
    """jsonschema quotes the whole offending value; a whole image list is no message."""
    if error.validator == "pattern" and error.validator_value == "\\S":
        text = f"{error.instance!r} is empty or only white space"
    else:
        text = error.message
    return text if len(text) <= 200 else text[:197] + "..."


_TOP_KEYS = frozenset(("$schema", "format", "version", "classes", "images"))
_IMAGE_KEYS = frozenset(
    ("filename", "width", "height", "depth", "folder", "path", "objects", "attributes")
)
_OBJECT_KEYS = frozenset(
    ("class", "bbox", "difficult", "truncated", "occluded", "pose", "attributes")
)
_BOX_KEYS = frozenset(("xmin", "ymin", "xmax", "ymax"))
_NOT_BLANK = re.compile(r"\S")


def _name(value: Any) -> bool:
    return type(value) is str and _NOT_BLANK.search(value) is not None


def _size_ok(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


def conforms(document: Any) -> bool:
    """A quick check, never laxer than the schema, that a document is valid.

    jsonschema walks a 17,000-image file for many seconds; this takes a fraction of one.
    When it says no (or is stricter than the schema, as with ``640.0`` for a width),
    jsonschema decides and names the error. A test checks on mutated documents that
    nothing passing here fails the schema.
    """
    if type(document) is not dict or not _TOP_KEYS.issuperset(document):
        return False
    if document.get("format") != FORMAT_TAG or type(document.get("version")) is not int:
        return False
    if document["version"] != VERSION or type(document.get("$schema", "")) is not str:
        return False
    classes = document.get("classes", [])
    if type(classes) is not list or not all(_name(c) for c in classes):
        return False
    if len(set(classes)) != len(classes):
        return False
    images = document.get("images")
    if type(images) is not list:
        return False
    for image in images:
        if type(image) is not dict or not _IMAGE_KEYS.issuperset(image):
            return False
        if "filename" not in image or not _name(image["filename"]):
            return False
        get = image.get
        if not (_size_ok(get("width")) and _size_ok(get("height")) and _size_ok(get("depth"))):
            return False
        if type(get("folder", "")) not in (str, type(None)):
            return False
        if type(get("path", "")) not in (str, type(None)):
            return False
        if type(get("attributes", {})) is not dict:
            return False
        objects = get("objects", [])
        if type(objects) is not list:
            return False
        for obj in objects:
            if type(obj) is not dict or not _OBJECT_KEYS.issuperset(obj):
                return False
            if "class" not in obj or not _name(obj["class"]):
                return False
            box = obj.get("bbox")
            if type(box) is not dict or box.keys() != _BOX_KEYS:
                return False
            if not all(type(v) in (int, float) for v in box.values()):
                return False
            if type(obj.get("difficult", False)) is not bool:
                return False
            if type(obj.get("truncated", False)) is not bool:
                return False
            if type(obj.get("occluded")) not in (bool, type(None)):
                return False
            if type(obj.get("pose")) not in (str, type(None)):
                return False
            if type(obj.get("attributes", {})) is not dict:
                return False
    return True


def _validator():
    # jsonschema is imported here, not at the top: it is slow to import and only the
    # reader needs it.
    from jsonschema import Draft202012Validator

    from .._schemas import load_schema

    return Draft202012Validator(load_schema("annotations"))


def parse_document(path: Path, data: bytes | None = None) -> Any:
    """Parse the file's JSON (``data``: its bytes, read already); syntax errors name the
    line and column."""
    text = decode_text(path.read_bytes() if data is None else data, path)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise MalformedFileError(
            f"not valid JSON: {exc.msg} (column {exc.colno})", file=path, line=exc.lineno
        ) from None
    except ValueError as exc:
        raise MalformedFileError(f"not valid JSON: {exc}", file=path) from None
    except RecursionError:
        raise HostileInputError("JSON nested too deeply to read", file=path) from None


def read_json(
    path: str | os.PathLike[str], *, on_error: OnError = "raise"
) -> AnnotationSet:
    """Read a dsxsd JSON file, checking it against the schema first.

    With ``on_error="skip"`` an image with a bad value is left out (and listed in
    ``skipped`` with its JSON path); a problem outside ``images`` is always an error.
    """
    path = Path(path)
    document = parse_document(path)
    errors = []
    if not conforms(document):
        try:
            errors = list(_validator().iter_errors(document))
        except RecursionError:
            raise HostileInputError("JSON nested too deeply to check", file=path) from None

    bad_images: dict[int, Any] = {}
    for error in errors:
        where = list(error.absolute_path)
        if len(where) >= 2 and where[0] == "images" and isinstance(where[1], int):
            bad_images.setdefault(where[1], []).append(error)
        else:
            bad_images = {}
            break
    policy = ErrorPolicy(on_error)
    if errors and (policy.stops or not bad_images):
        error = _first_error(errors)
        where = json_path(error.absolute_path)
        raise InvalidValueError(_message(error), file=path, field=where)

    for index in sorted(bad_images):
        error = _first_error(bad_images[index])
        where = json_path(error.absolute_path)
        policy.failed(InvalidValueError(_message(error), file=path, field=where),
                      reason=f"{where}: {_message(error)}")

    images = []
    for index, item in enumerate(document["images"]):
        if index in bad_images:
            continue
        try:
            images.append(_image(item, index))
        except _ValueAt as exc:
            error = InvalidValueError(exc.message, file=path, field=exc.where)
            policy.failed(error, reason=f"{exc.where}: {exc.message}")

    classes = document.get("classes")
    try:
        annotations = AnnotationSet(images, classes, skipped=policy.skipped)
    except ValueError as exc:
        raise InvalidValueError(str(exc), file=path, field="classes") from None
    return annotations


class _ValueAt(Exception):
    """A value the schema admits but the model refuses (a label of spaces, say)."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def _size(value: Any) -> Any:
    # The schema's "integer" admits 640.0; the model wants an int.
    return int(value) if isinstance(value, float) else value


def _image(item: dict[str, Any], index: int) -> ImageAnnotation:
    objects = []
    for number, obj in enumerate(item.get("objects", ())):
        box = obj["bbox"]
        try:
            objects.append(
                ObjectAnnotation(
                    obj["class"],
                    BBox(box["xmin"], box["ymin"], box["xmax"], box["ymax"]),
                    difficult=obj.get("difficult", False),
                    truncated=obj.get("truncated", False),
                    occluded=obj.get("occluded"),
                    pose=obj.get("pose"),
                    attributes=obj.get("attributes", {}),
                )
            )
        except ValueError as exc:
            raise _ValueAt(str(exc), f"images[{index}].objects[{number}]") from None
    try:
        return ImageAnnotation(
            item["filename"],
            width=_size(item.get("width")),
            height=_size(item.get("height")),
            depth=_size(item.get("depth")),
            objects=objects,
            folder=item.get("folder"),
            path=item.get("path"),
            attributes=item.get("attributes", {}),
        )
    except ValueError as exc:
        raise _ValueAt(str(exc), f"images[{index}]") from None


def _sniff(path: Path) -> bool:
    """A dsxsd file names its format in its first bytes (other ``.json`` formats do not)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4096)
    except OSError:
        return False
    return FORMAT_TAG.encode() in head


FORMAT = Format(
    name="json",
    summary="dsxsd JSON, lossless for every field (schemas/annotations.schema.json)",
    reader=read_json,
    writer=write_json,
    suffixes=(".json",),
    sniff=_sniff,
    lossy=(),
)

__all__ = ["FORMAT", "read_json", "write_json", "to_document", "dumps", "json_path", "plain_number"]
