"""YOLO labels: a folder of ``<stem>.txt``, one per image, plus the class list.

Each line of ``<stem>.txt`` is ``<class id> <cx> <cy> <w> <h>``: the box centre and size
divided by the image's width and height (Ultralytics, darknet, LabelImg's YOLO mode). An
empty file is an image without objects. Because the numbers are relative, pixel boxes need
the image size, which YOLO files do not hold: it comes from the annotation set on writing
and from the image *headers* on reading (Pillow's ``Image.open``, never decoded).

Class names (ids are 0-based positions) come from the nearest of, looking in the label
folder, then its parent, then its grandparent: ``classes.txt`` (one name per line, as
LabelImg and darknet write it), else ``data.yaml``/``dataset.yaml`` ``names`` (Ultralytics,
Roboflow), read by :func:`read_yaml_names` with PyYAML. ``classes=`` names the
file instead.

Reading:

- Only the top level of the folder is read (one Ultralytics split, ``labels/train``, is
  one annotation set); a folder whose ``.txt`` files are all in sub-folders is an error
  naming them, not an empty set. ``classes.txt`` and macOS ``._*`` files are not labels.
  Images come back sorted by label file name; an image without a label file is not listed.
- The image of ``x.txt`` is ``x.<ext>`` (any usual image extension, in any case) in, in
  order: ``images`` when given (and ``images/<label folder name>``); else the Ultralytics
  twin folder (the last ``labels`` component of the folder replaced by ``images``:
  ``ds/labels/train`` -> ``ds/images/train``, ``ds/train/labels`` -> ``ds/train/images``),
  then the label folder itself (darknet). Its file name becomes the image's ``filename``;
  width, height and depth come from its header.
- A line with more than 5 numbers after the class id is a segmentation polygon
  ``x1 y1 x2 y2 ...`` and is read as the polygon's bounding box, as Ultralytics does when
  it trains a detector on segment labels; exactly 5 is a box plus a confidence (``yolo
  predict save_conf``), kept as the ``confidence`` attribute. With ``kpt_shape`` in the
  data.yaml (pose data), the first four numbers are the box and the keypoints are ignored.
- Pixel corners are ``(cx -/+ w / 2) * width`` rounded to 6 decimals, so that the noise of
  decimal normalised values (``262.99999999999994``) does not reach the corners: an
  integral box written by :func:`write_yolo` reads back as the same integers.

Writing puts one ``<stem>.txt`` per image (an empty one for an image without objects) and
``classes.txt`` with every class of the set, in order. Normalised numbers have up to 12
decimals (trailing zeros dropped), so that the 6-decimal rounding of reading recovers
corners exactly for images up to hundreds of thousands of pixels across. Boxes are written
as they are: one reaching outside the image gives values below 0 or above 1, and inverted
corners give a negative width, so that no box is lost or moved (``dsxsd validate`` reports
both; Ultralytics refuses such label files). Flags, poses, folders, paths, depth and
attributes have no place in a YOLO file (see ``FORMAT.lossy``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .. import _engine, _io
from ..errors import (
    DsxsdError,
    ImageDecodeError,
    InvalidAnnotationError,
    InvalidValueError,
    MalformedFileError,
    MissingImageError,
)
from ..annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from . import Format, OnError, file_per_image
from .csv import decode_text, parse_number
from .lines import CLASSES_NAME, read_classes

if TYPE_CHECKING:
    from .._images import ImageFinder

YAML_NAMES = ("data.yaml", "dataset.yaml")
# A label file holds a few hundred boxes at most; anything this large is not one, and
# reading it whole would only cost memory.
MAX_FILE_BYTES = 32 * 1024 * 1024
DECIMALS = 12
ROUND_DECIMALS = 6


# ----------------------------------------------------------------------------- class lists


def find_class_file(folder: Path) -> Path | None:
    """The class list of the labels in ``folder`` (module docstring), or ``None``."""
    for level in (folder, folder.parent, folder.parent.parent):
        for name in (CLASSES_NAME, *YAML_NAMES):
            if (level / name).is_file():
                return level / name
    return None


def _read_limited(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidAnnotationError(
                f"{size} bytes is too large for a YOLO label or class file "
                f"(limit {MAX_FILE_BYTES})",
                file=path,
            )
        return path.read_bytes()
    except OSError as exc:
        raise DsxsdError(f"cannot read: {exc.strerror or exc}", file=path) from None


def read_yaml_names(path: Path) -> tuple[tuple[str, ...], bool]:
    """The ``names`` of an Ultralytics ``data.yaml`` and whether it has ``kpt_shape``.

    Read with PyYAML's safe loader, as Ultralytics reads it. ``names`` is a list, or a
    mapping of ids ``0..n-1`` to names (Ultralytics' own files); a name must be text or a
    number (an unquoted ``yes`` is YAML's boolean: quote it). ``nc``, when present, must
    equal the number of names. Errors give the line of ``names:``.
    """
    import yaml

    text = decode_text(_read_limited(path), path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        raise MalformedFileError(
            f"not valid YAML: {problem}", file=path, line=None if mark is None else mark.line + 1
        ) from None
    if not isinstance(document, dict) or document.get("names") is None:
        raise InvalidAnnotationError("no 'names' list of class names", file=path)
    line = next(
        (n for n, text_line in enumerate(text.split("\n"), 1) if text_line.startswith("names")), None
    )
    names = document["names"]
    if isinstance(names, dict):
        ids = sorted(_class_id(key, path, line) for key in names)
        if ids != list(range(len(names))):
            raise MalformedFileError(
                f"names ids must be 0 to {len(names) - 1}, each once; got {ids}", file=path, line=line
            )
        names = [value for _, value in sorted((_class_id(k, path, line), v) for k, v in names.items())]
    elif not isinstance(names, list):
        raise MalformedFileError(
            f"names is {names!r}, not a list or a mapping of class names", file=path, line=line
        )
    result: list[str] = []
    for name in names:
        if isinstance(name, bool) or not isinstance(name, (str, int, float)):
            raise InvalidValueError(
                f"class name {name!r} is not text (quote it in the YAML)", file=path, line=line
            )
        name = str(name).strip()
        if not name:
            raise InvalidValueError("empty class name in names", file=path, line=line)
        if name in result:
            raise InvalidValueError(f"class {name!r} appears twice in names", file=path, line=line)
        result.append(name)
    count = document.get("nc")
    if count is not None and count != len(result):
        raise InvalidAnnotationError(
            f"nc is {count!r} but names lists {len(result)} classes", file=path, line=line
        )
    return tuple(result), "kpt_shape" in document


def _class_id(key: object, path: Path, line: int | None) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.strip().isdigit() and key.strip().isascii():
        return int(key)
    raise MalformedFileError(f"names key {key!r} is not a class id", file=path, line=line)


def read_class_file(path: Path) -> tuple[tuple[str, ...], bool]:
    """Class names (and whether labels carry keypoints) from a classes.txt or data.yaml."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_yaml_names(path)
    _read_limited(path)  # the size check; read_classes reads it again, it is small
    return read_classes(path), False


# ----------------------------------------------------------------------------- images


def image_header(image: Path, annotation: Path | str) -> tuple[int, int, int | None]:
    """Width, height and depth from the header of ``image``; it is never decoded."""
    from .._images import read_header

    return read_header(image, annotation_file=annotation)


class _StemFinder:
    """Image files by stem in a few folders, each folder listed once."""

    def __init__(self) -> None:
        self._listings: dict[Path, dict[str, list[str]]] = {}

    def _listing(self, folder: Path) -> dict[str, list[str]]:
        listing = self._listings.get(folder)
        if listing is None:
            listing = {}
            try:
                with os.scandir(folder) as entries:
                    found = [entry.name for entry in entries if entry.is_file()]
            except OSError:
                found = []
            from .._images import IMAGE_SUFFIXES

            rank = {suffix: position for position, suffix in enumerate(IMAGE_SUFFIXES)}
            for name in sorted(found):
                stem, dot, extension = name.rpartition(".")
                suffix = "." + extension.lower()
                if dot and stem and suffix in rank and not name.startswith("._"):
                    listing.setdefault(stem, []).append(name)
            for names in listing.values():
                names.sort(key=lambda n: rank["." + n.rpartition(".")[2].lower()])
            self._listings[folder] = listing
        return listing

    def find(self, folders: list[Path], stem: str) -> Path | None:
        for folder in folders:
            names = self._listing(folder).get(stem)
            if names:
                return folder / names[0]
        return None


def image_folders(folder: Path, images: Path | None) -> list[Path]:
    """Where the images of the labels in ``folder`` are looked for (module docstring)."""
    if images is not None:
        return [images, images / folder.name]
    candidates = []
    parts = Path(os.path.abspath(folder)).parts
    if "labels" in parts:
        last = len(parts) - 1 - parts[::-1].index("labels")
        candidates.append(Path(*parts[:last], "images", *parts[last + 1 :]))
    candidates.append(folder)
    return candidates


# ----------------------------------------------------------------------------- reading


def _numbers(fields: list[str], file: Path, number: int) -> list[float]:
    values = []
    for position, text in enumerate(fields, start=2):
        try:
            values.append(parse_number(text))
        except ValueError:
            raise InvalidValueError(
                f"column {position} is {text!r}, not a number", file=file, line=number
            ) from None
    return values


def _parse_line(
    line: str,
    classes: tuple[str, ...],
    size: tuple[int, int],
    keypoints: bool,
    file: Path,
    number: int,
) -> ObjectAnnotation:
    fields = line.split()
    if len(fields) < 5:
        raise InvalidValueError(
            f"expected '<class id> <cx> <cy> <w> <h>', got {len(fields)} columns",
            file=file,
            line=number,
        )
    try:
        class_id = parse_number(fields[0])
    except ValueError:
        class_id = math.nan
    if not (math.isfinite(class_id) and class_id.is_integer() and class_id >= 0):
        raise InvalidValueError(
            f"class id {fields[0]!r} is not a whole number", file=file, line=number
        )
    if class_id >= len(classes):
        raise InvalidValueError(
            f"class id {int(class_id)} is not in the class list "
            f"({len(classes)} classes, ids 0 to {len(classes) - 1})",
            file=file,
            line=number,
        )
    values = _numbers(fields[1:], file, number)
    width, height = size
    attributes = {}
    if len(values) > 5 and not keypoints:
        if len(values) % 2:
            raise InvalidValueError(
                f"a polygon needs x y pairs; got {len(values)} numbers", file=file, line=number
            )
        xs, ys = values[0::2], values[1::2]
        corners = (min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height)
    else:
        cx, cy, w, h = values[:4]
        if len(values) == 5:
            attributes["confidence"] = values[4]
        corners = (
            (cx - w / 2) * width,
            (cy - h / 2) * height,
            (cx + w / 2) * width,
            (cy + h / 2) * height,
        )
    try:
        box = BBox(*(round(value, ROUND_DECIMALS) + 0.0 for value in corners))
    except ValueError as exc:
        raise InvalidValueError(str(exc), file=file, line=number) from None
    return ObjectAnnotation(classes[int(class_id)], box, attributes=attributes)


def _label_files(path: Path) -> tuple[Path, list[Path]]:
    """The folder of the labels and the label files in it."""
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise DsxsdError("no such file or folder", file=path)
    files = sorted(
        (
            entry
            for entry in path.iterdir()
            if entry.name.lower().endswith(".txt")
            and entry.name != CLASSES_NAME
            and not entry.name.startswith("._")
            and entry.is_file()
        ),
        key=lambda entry: entry.name,
    )
    if not files:
        splits = sorted(
            entry.name for entry in path.iterdir() if entry.is_dir() and any(entry.glob("*.txt"))
        )
        if splits:
            raise InvalidAnnotationError(
                "no label files here, but the sub-folders "
                + ", ".join(splits)
                + " hold some: read one split at a time (e.g. labels/train)",
                file=path,
            )
    return path, files


def read_yolo(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    images: str | os.PathLike[str] | None = None,
    classes: str | os.PathLike[str] | None = None,
    workers: int | None = 1,
) -> AnnotationSet:
    """Read a folder of YOLO ``.txt`` labels (or one label file) and their class list.

    ``images`` is the folder of the images, whose headers give the sizes (default: the
    Ultralytics ``images`` twin of the folder, then the folder itself). ``classes`` names
    the class list (default: module docstring). With ``on_error="skip"`` a bad label file
    is left out and listed in ``skipped``; a bad class list always raises. ``workers``
    is that of :func:`dsxsd.read`.
    """
    found, skipped, names = _engine.read_folder(
        FILES, Path(path), on_error, workers, images=images, classes=classes
    )
    return AnnotationSet(tuple(found), names, skipped=tuple(skipped))


def _open(
    path: Path,
    images: str | os.PathLike[str] | None = None,
    classes: str | os.PathLike[str] | None = None,
) -> _engine.Folder:
    """The label files, and the class list and image folders they are read with."""
    folder, files = _label_files(path)
    class_file = Path(classes) if classes is not None else find_class_file(folder)
    if class_file is None:
        raise InvalidAnnotationError(
            f"no class list: looked for {', '.join((CLASSES_NAME, *YAML_NAMES))} in this "
            "folder, its parent and its grandparent",
            file=folder,
        )
    if not class_file.is_file():
        raise DsxsdError("class list not found", file=class_file)
    class_names, keypoints = read_class_file(class_file)
    folders = image_folders(folder, None if images is None else Path(images))
    # The finder lists each image folder once per read (the token), in each process.
    context = _Context(class_names, keypoints, tuple(folders), os.urandom(8).hex())
    return _engine.Folder([str(file) for file in files], context, class_names)


class _Context(NamedTuple):
    classes: tuple[str, ...]
    keypoints: bool
    folders: tuple[Path, ...]
    token: str


_FINDER: dict[str, _StemFinder] = {}


def _finder(token: str) -> _StemFinder:
    if token not in _FINDER:
        _FINDER.clear()
        _FINDER[token] = _StemFinder()
    return _FINDER[token]


def parse_bytes(data: bytes, file: str | os.PathLike[str], context: _Context) -> ImageAnnotation:
    """The reference reader: one label file's bytes as its image, whose name and size
    come from the image found for it (see the module docs)."""
    file = Path(file)
    classes, keypoints, folders, token = context
    text = decode_text(data, file)
    stem = file.name[: -len(".txt")]
    folders = list(folders)
    image = _finder(token).find(folders, stem)
    if image is None:
        tried = ", ".join(f"{folder}/{stem}.*" for folder in dict.fromkeys(folders))
        raise MissingImageError(
            f"no image for this label file (its size is needed); tried {tried}; "
            "pass --images (images=) to name the images folder",
            file=file,
        )
    width, height, depth = image_header(image, file)
    if not width or not height:
        raise ImageDecodeError(f"image {image} has no size", file=file)
    objects = [
        _parse_line(line, classes, (width, height), keypoints, file, number)
        for number, line in enumerate(text.split("\n"), start=1)
        if line.strip()
    ]
    return ImageAnnotation(image.name, width, height, depth, objects)


# ----------------------------------------------------------------------------- writing


def number_text(value: float) -> str:
    """A normalised value with up to :data:`DECIMALS` decimals, trailing zeros dropped."""
    text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _size(
    image: ImageAnnotation, finder: ImageFinder | None, output: Path
) -> tuple[int, int]:
    width, height = image.width or None, image.height or None
    if (width is None or height is None) and finder is not None:
        found = finder.find(image.filename, path=image.path)
        header_width, header_height, _ = image_header(found, found)
        width, height = width or header_width, height or header_height
    if not width or not height:
        raise InvalidValueError(
            f"image {image.filename!r} has no width and height, which YOLO's normalised "
            "boxes need; pass --images (images=) to read them from the image files",
            file=output,
        )
    return width, height


def to_text(image: ImageAnnotation, ids: dict[str, int], size: tuple[int, int], output: Path) -> str:
    """The label file of one image: one ``<id> <cx> <cy> <w> <h>`` line per object."""
    width, height = size
    lines = []
    for index, obj in enumerate(image.objects):
        box = obj.bbox
        values = (
            (box.xmin + box.xmax) / 2 / width,
            (box.ymin + box.ymax) / 2 / height,
            (box.xmax - box.xmin) / width,
            (box.ymax - box.ymin) / height,
        )
        if not all(math.isfinite(value) for value in values):
            raise InvalidValueError(
                f"image {image.filename!r}, object {index}: box {box.as_tuple()} is too "
                "large to normalise",
                file=output,
            )
        lines.append(f"{ids[obj.label]} " + " ".join(number_text(v) for v in values) + "\n")
    return "".join(lines)


def write_yolo(
    annotations: AnnotationSet,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    images: str | os.PathLike[str] | None = None,
) -> None:
    """Write one ``<stem>.txt`` per image and ``classes.txt`` into the folder ``path``.

    An image without a width and height in the set takes them from its image header under
    ``images``; without either it is refused, naming it. Two images whose names give the
    same ``<stem>.txt`` are refused rather than one replacing the other. Everything is
    checked before anything is written; the folder is written atomically.
    """
    path = Path(path)
    _io.check_output(path, overwrite)
    for name in annotations.classes:
        if "\n" in name or "\r" in name:
            raise InvalidValueError(
                f"class {name!r} holds a line break, which classes.txt cannot hold", file=path
            )
    ids = {name: index for index, name in enumerate(annotations.classes)}
    from .._images import ImageFinder  # Pillow and numpy: only when images are given

    finder = None if images is None else ImageFinder(images)
    named = file_per_image(
        annotations.images, ".txt", path, reserved=(CLASSES_NAME,),
        keeps="YOLO keeps one label file", unread="a name readers do not take as a label file",
    )
    documents = {name: to_text(image, ids, _size(image, finder, path), path) for image, name in named}
    class_text = "".join(name + "\n" for name in annotations.classes)
    with _io.atomic_directory(path, overwrite) as folder:
        for name, text in documents.items():
            (folder / name).write_bytes(text.encode("utf-8"))
        (folder / CLASSES_NAME).write_bytes(class_text.encode("utf-8"))


# ----------------------------------------------------------------------------- guessing


def sniff_folder(path: Path) -> bool:
    """A folder without ``.xml`` holding ``.txt`` labels (or just ``classes.txt``) with a
    class list to go with them."""
    if not path.is_dir() or any(path.glob("*.xml")):
        return False
    return any(path.glob("*.txt")) and find_class_file(path) is not None


def _load(file: str) -> bytes:
    return _read_limited(Path(file))


FILES = _engine.FileFormat("yolo", open=_open, parse=parse_bytes, load=_load)

FORMAT = Format(
    name="yolo",
    summary="YOLO labels: a folder of <stem>.txt ('class cx cy w h', normalised) + classes.txt",
    reader=read_yolo,
    writer=write_yolo,
    suffixes=("/",),
    output_is_dir=True,
    sniff=sniff_folder,
    files=FILES,
    # Sizes and depth come back from the image headers; "bbox_normalised": corners come
    # back within a millionth of a pixel (exactly, for integral ones).
    lossy=(
        "bbox_normalised",
        "depth",
        "folder",
        "path",
        "image.attributes",
        "difficult",
        "truncated",
        "occluded",
        "pose",
        "object.attributes",
        "image_order",
    ),
)

__all__ = [
    "FORMAT",
    "read_yolo",
    "write_yolo",
    "read_yaml_names",
    "find_class_file",
    "image_folders",
    "number_text",
    "sniff_folder",
]
