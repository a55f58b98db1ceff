"""Pascal VOC XML: a folder of ``<stem>.xml``, one per image, as LabelImg writes it.

Reading takes what LabelImg, CVAT (datumaro), labelme2voc and Roboflow write. Every
element is found by its tag among the direct children of its parent, never by position
(tools disagree on the order) and never inside ``<part>`` (person-layout parts carry their
own ``<name>`` and ``<bndbox>`` and are not objects). All text (names, file names,
folders, paths, numbers) is stripped of surrounding white space, and an empty ``<folder>``
or ``<path>`` reads as ``None``. Normalisations, chosen so that ``read(write(x)) == x``:

- ``<pose>Unspecified</pose>`` (LabelImg's default) reads as ``pose=None``, and ``None`` is
  written back as ``Unspecified``; an empty ``<pose/>`` also reads as ``None``.
- A width, height or depth that is missing, empty or ``0`` (LabelImg writes ``0`` when it
  could not read the image) reads as ``None``; when width or height is ``None`` and the
  image is found, the missing sizes come from the image *header* (never decoded). ``None``
  sizes are written as absent elements.
- Empty ``<difficult/>``/``<truncated/>`` read as ``False``; ``<occluded>`` (CVAT) is kept
  as ``occluded``, ``None`` when absent, and written only when set.
- CVAT's ``<attributes><attribute><name/><value/></attribute></attributes>`` are read
  into the object's ``attributes`` (string values), so that ``voc2json`` keeps them; the
  writer does not write attributes (LabelImg-shaped files have no room for them, and their
  values would come back as strings). Other extra elements (``<actions>``, ``<owner>``,
  ``<source>`` details, ...) are not kept.

The reader lists a folder's ``*.xml`` (top level, sorted by file name, so images come back
in that order whatever order they were written in); macOS ``._*`` resource forks are
ignored. Coordinates are floats, kept exactly; the writer writes integral ones as integers.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

from lxml import etree

from .. import _io
from ..errors import (
    DsxsdError,
    InvalidAnnotationError,
    InvalidValueError,
    MissingFieldError,
)
from ..model import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation, SkippedFile
from . import Format, OnError, _xml

UNSPECIFIED_POSE = "Unspecified"
_COORDINATES = ("xmin", "ymin", "xmax", "ymax")
_SIZES = ("width", "height", "depth")
# A decimal number as VOC tools write it; Python's float() would also take "nan", "inf"
# and "1_000", none of which is a coordinate.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


# --------------------------------------------------------------------------- reading


def read_voc(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    images: str | os.PathLike[str] | None = None,
) -> AnnotationSet:
    """Read a folder of VOC ``.xml`` files (or one file).

    ``images`` is the folder to look for images in when a file gives no usable ``<size>``
    (default: beside each XML file). With ``on_error="skip"`` a bad file is left out and
    listed in ``skipped`` with its reason and line.
    """
    path = Path(path)
    image_root = None if images is None else Path(images)
    items: list[ImageAnnotation] = []
    skipped: list[SkippedFile] = []
    for file in _annotation_files(path):
        try:
            items.append(read_file(file, images=image_root))
        except DsxsdError as exc:
            if on_error == "raise":
                raise
            skipped.append(SkippedFile(str(file), exc.reason, exc.line))
    return AnnotationSet(tuple(items), skipped=tuple(skipped))


def _annotation_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            (
                entry
                for entry in path.iterdir()
                if entry.name.lower().endswith(".xml")
                and not entry.name.startswith("._")
                and entry.is_file()
            ),
            key=lambda entry: entry.name,
        )
    if path.is_file():
        return [path]
    raise DsxsdError("no such file or folder", file=path)


def read_file(file: Path, *, images: Path | None = None) -> ImageAnnotation:
    """One VOC annotation file as an :class:`ImageAnnotation`."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DsxsdError(f"cannot read: {exc.strerror or exc}", file=file) from None
    root = _xml.parse(data, file)
    if root.tag != "annotation":
        tag = etree.QName(root).localname
        raise InvalidAnnotationError(
            f"the root element is <{tag}>, not <annotation>: not a Pascal VOC file",
            file=file,
            line=root.sourceline,
        )
    path_text = _text(root, "path")
    filename = _text(root, "filename")
    if filename is None and path_text is not None:
        filename = path_text.replace("\\", "/").rsplit("/", 1)[-1] or None
    if filename is None:
        raise MissingFieldError(
            "<filename> is missing or empty", file=file, line=root.sourceline, field="filename"
        )
    sizes = _read_sizes(root, file)
    if sizes["width"] is None or sizes["height"] is None:
        header = _image_header(images if images is not None else file.parent, filename)
        if header is not None:
            for name, value in zip(_SIZES, header):
                if sizes[name] is None:
                    sizes[name] = value
    objects = tuple(
        _read_object(element, index, file)
        for index, element in enumerate(root.findall("object"))
    )
    try:
        return ImageAnnotation(
            filename=filename,
            objects=objects,
            folder=_text(root, "folder"),
            path=path_text,
            **sizes,
        )
    except ValueError as exc:
        raise InvalidValueError(str(exc), file=file, line=root.sourceline) from None


def _text(parent: etree._Element, tag: str) -> str | None:
    """The stripped text of the first direct child ``tag``; ``None`` when absent or empty."""
    element = parent.find(tag)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _read_sizes(root: etree._Element, file: Path) -> dict[str, int | None]:
    size = root.find("size")
    sizes: dict[str, int | None] = {}
    for name in _SIZES:
        element = None if size is None else size.find(name)
        text = None if element is None or element.text is None else element.text.strip()
        if not text:
            sizes[name] = None
            continue
        if not _NUMBER.fullmatch(text) or not float(text).is_integer() or float(text) < 0:
            raise InvalidValueError(
                f"<size><{name}> is {text!r}, not a whole number",
                file=file,
                line=element.sourceline,
                field=name,
            )
        sizes[name] = int(float(text)) or None  # 0: the tool did not know
    return sizes


def _read_object(element: etree._Element, index: int, file: Path) -> ObjectAnnotation:
    where = {"file": file, "line": element.sourceline}
    label = _text(element, "name")
    if label is None:
        raise MissingFieldError(
            f"object {index}: <name> is missing or empty", field="name", **where
        )
    bndbox = element.find("bndbox")
    if bndbox is None:
        raise MissingFieldError(f"object {index}: <bndbox> is missing", field="bndbox", **where)
    corners = [_coordinate(bndbox, name, index, file) for name in _COORDINATES]
    pose = _text(element, "pose")
    try:
        return ObjectAnnotation(
            label=label,
            bbox=BBox(*corners),
            difficult=bool(_flag(element, "difficult", index, file)),
            truncated=bool(_flag(element, "truncated", index, file)),
            occluded=_flag(element, "occluded", index, file),
            pose=None if pose == UNSPECIFIED_POSE else pose,
            attributes=_read_attributes(element),
        )
    except ValueError as exc:
        raise InvalidValueError(f"object {index}: {exc}", **where) from None


def _coordinate(bndbox: etree._Element, name: str, index: int, file: Path) -> float:
    element = bndbox.find(name)
    line = bndbox.sourceline if element is None else element.sourceline
    text = None if element is None or element.text is None else element.text.strip()
    if not text:
        raise MissingFieldError(
            f"object {index}: <bndbox><{name}> is missing or empty",
            file=file,
            line=line,
            field=name,
        )
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise InvalidValueError(
            f"object {index}: <bndbox><{name}> is {text!r}, not a number",
            file=file,
            line=line,
            field=name,
        )
    return value


def _flag(element: etree._Element, name: str, index: int, file: Path) -> bool | None:
    """``0``/``1`` (also ``true``/``false``); ``None`` when absent or empty."""
    child = element.find(name)
    text = None if child is None or child.text is None else child.text.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidValueError(
        f"object {index}: <{name}> is {child.text.strip()!r}, not 0 or 1",
        file=file,
        line=child.sourceline,
        field=name,
    )


def _read_attributes(element: etree._Element) -> dict[str, str]:
    """CVAT's ``<attributes><attribute><name>k</name><value>v</value>...`` as ``{k: v}``."""
    attributes: dict[str, str] = {}
    container = element.find("attributes")
    if container is None:
        return attributes
    for attribute in container.findall("attribute"):
        name = _text(attribute, "name")
        if name is not None:
            attributes[name] = _text(attribute, "value") or ""
    return attributes


def _image_header(folder: Path, filename: str) -> tuple[int, int, int | None] | None:
    """Width, height and depth from the image's header, or ``None`` when the image is not
    there or not readable. Only the header is read: nothing is decoded."""
    from PIL import Image

    name = filename.replace("\\", "/")
    # Look only inside ``folder``: a filename like ../../x must not reach elsewhere.
    relative = os.path.normpath(name)
    candidates = []
    if not os.path.isabs(relative) and not relative.startswith(".."):
        candidates.append(folder / relative)
    candidates.append(folder / name.rsplit("/", 1)[-1])
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(candidate) as image:
                    return image.width, image.height, _depth(image.mode)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None
    return None


def _depth(mode: str) -> int | None:
    # Palette images are colour images to a labeller; LabelImg writes 3 for them.
    if mode in ("P", "PA"):
        return 3 if mode == "P" else 4
    from PIL import Image

    try:
        return Image.getmodebands(mode)
    except (KeyError, ValueError):
        return None


# --------------------------------------------------------------------------- writing


def write_voc(
    annotations: AnnotationSet, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write one ``<stem>.xml`` per image into the folder ``path``, atomically.

    Two images whose names give the same ``<stem>.xml`` (``a.jpg`` and ``a.png``, or
    ``A.jpg`` and ``a.jpg`` on a case-insensitive disk) are refused rather than one
    silently replacing the other.
    """
    path = Path(path)
    _io.check_output(path, overwrite)
    documents: dict[str, bytes] = {}
    owners: dict[str, str] = {}
    for image in annotations.images:
        name = f"{image.stem}.xml"
        key = name.casefold()
        if key in owners:
            raise InvalidAnnotationError(
                f"images {owners[key]!r} and {image.filename!r} would both be written to "
                f"{name!r}; VOC keeps one file per image name without extension",
                file=path,
            )
        if name.startswith("._"):
            raise InvalidAnnotationError(
                f"image {image.filename!r} would be written to {name!r}, a name readers "
                "skip as a macOS resource fork",
                file=path,
            )
        owners[key] = image.filename
        documents[name] = to_bytes(image, path)
    with _io.atomic_directory(path, overwrite) as folder:
        for name, data in documents.items():
            (folder / name).write_bytes(data)


def to_bytes(image: ImageAnnotation, output: Path | None = None) -> bytes:
    """The VOC document of one image: LabelImg's element order, tab indentation, UTF-8."""
    try:
        root = _document(image)
    except ValueError as exc:  # text XML cannot hold, e.g. control characters
        raise InvalidValueError(f"image {image.filename!r}: {exc}", file=output) from None
    etree.indent(root, space="\t")
    body = etree.tostring(root, encoding="utf-8", pretty_print=True)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _document(image: ImageAnnotation) -> etree._Element:
    root = etree.Element("annotation")
    if image.folder is not None:
        _add(root, "folder", image.folder)
    _add(root, "filename", image.filename)
    if image.path is not None:
        _add(root, "path", image.path)
    _add(_add(root, "source"), "database", "Unknown")
    size = _add(root, "size")
    for name in _SIZES:
        value = getattr(image, name)
        if value is not None:
            _add(size, name, str(value))
    _add(root, "segmented", "0")
    for index, obj in enumerate(image.objects):
        try:
            _write_object(root, obj)
        except ValueError as exc:
            raise ValueError(f"object {index}: {exc}") from None
    return root


def _write_object(root: etree._Element, obj: ObjectAnnotation) -> None:
    element = _add(root, "object")
    _add(element, "name", obj.label)
    _add(element, "pose", UNSPECIFIED_POSE if obj.pose is None else obj.pose)
    _add(element, "truncated", "1" if obj.truncated else "0")
    _add(element, "difficult", "1" if obj.difficult else "0")
    bndbox = _add(element, "bndbox")
    for name, value in zip(_COORDINATES, obj.bbox.as_tuple()):
        _add(bndbox, name, format_number(value))
    if obj.occluded is not None:
        _add(element, "occluded", "1" if obj.occluded else "0")


def _add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text  # lxml escapes &, < and >
    return element


def format_number(value: float) -> str:
    """``12.0`` -> ``"12"`` (what LabelImg and the TF ``xml_to_csv`` script expect);
    any other float, and integral ones too large to be pixels, as its shortest exact
    repr (``1e+20``), which reads back as the same float."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _sniff(path: Path) -> bool:
    """A folder is VOC unless it holds no ``.xml`` but other annotation files (labelme)."""
    if not path.is_dir():
        return True
    return any(path.glob("*.xml")) or not any(path.glob("*.json"))


FORMAT = Format(
    name="voc",
    summary="Pascal VOC XML: a folder of <stem>.xml, one per image (LabelImg, CVAT)",
    reader=read_voc,
    writer=write_voc,
    suffixes=(".xml", "/"),
    output_is_dir=True,
    sniff=_sniff,
    # Attributes are not written; the class list is the labels in order of first
    # appearance (no room for unused classes); images come back sorted by file name.
    lossy=("attributes", "classes", "image_order"),
)

__all__ = ["FORMAT", "read_voc", "write_voc", "read_file", "to_bytes", "format_number"]
