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

:func:`parse_bytes` is the reference reader of one file, which the engine
(:mod:`dsxsd._engine`) runs over a folder, on worker processes too (``workers``). Its fast
path (:func:`_fast`) reads files as LabelImg writes them by one regular expression each
(see :mod:`._labelimg`) and parses other plain files a group at a time (see
:func:`_parse_together`). Neither changes what is read, the order, the skipped list or
the error raised: the first bad file in file order, with the line of the file itself.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from lxml import etree

from .. import _engine, _io
from ..errors import (
    DsxsdError,
    InvalidAnnotationError,
    InvalidValueError,
    MissingFieldError,
)
from ..annotations import (
    UNSPECIFIED_POSE,
    AnnotationSet,
    BBox,
    ImageAnnotation,
    ObjectAnnotation,
)
from . import Format, OnError, _labelimg, _xml, file_per_image
from .csv import number_text

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
    workers: int | None = 1,
) -> AnnotationSet:
    """Read a folder of VOC ``.xml`` files (or one file).

    ``images`` is the folder to look for images in when a file gives no usable ``<size>``
    (default: beside each XML file). With ``on_error="skip"`` a bad file is left out and
    listed in ``skipped`` with its reason and line. ``workers`` processes read the files
    (``None`` or ``0``: every available core, ``1``: this process only; see
    :func:`dsxsd.read` on why 1 is the default); a small folder is always read in this
    process. The result, the skipped list and the error raised do not depend on
    ``workers``.
    """
    found, skipped, _ = _engine.read_folder(FILES, Path(path), on_error, workers, images=images)
    return AnnotationSet(tuple(found), skipped=tuple(skipped))


def _open(path: Path, images: str | os.PathLike[str] | None = None) -> _engine.Folder:
    return _engine.Folder(_annotation_names(path), None if images is None else str(images))


def parse_bytes(data: bytes, file: str | os.PathLike[str], images: str | None = None) -> ImageAnnotation:
    """The reference reader: one VOC file's bytes as its image (``file`` names it in
    errors and locates its image when the sizes are missing; ``images``: the folder to
    look in instead)."""
    file = Path(file)
    return _image_from_root(_xml.parse(data, file), file, None if images is None else Path(images))


def _fast(contents: list[bytes | None], files: list[str], images: str | None) -> list[Any]:
    """The fast path: LabelImg-shaped files by one regular expression each (see
    :mod:`._labelimg`), other plain files parsed as one document (see
    :func:`_parse_together`); ``None`` for a file the reference reader must read, also
    wherever a group cannot vouch for a file's error (the reference reader names the
    line of the file itself)."""
    records = [None if data is None else _labelimg.read(data) for data in contents]
    rest = [data for data, record in zip(contents, records) if record is None]
    roots = iter(_parse_together(rest))
    folder = None if images is None else Path(images)
    outcomes: list[Any] = []
    for file, record in zip(files, records):
        if record is not None:
            outcomes.append(record)
            continue
        root = next(roots)
        try:
            outcomes.append(None if root is None else _image_from_root(root, Path(file), folder))
        except DsxsdError:
            outcomes.append(None)
    return outcomes


# Parsing files together: libxml2's set-up for a document costs as much as parsing a
# LabelImg file, so a group of files (the engine hands the fast path many at a time) is
# parsed as one document, each file's root element
# followed by a processing instruction of ours. Only files that are nothing but a root
# element (an optional UTF-8 BOM and version 1.0 UTF-8 declaration before it, white
# space after it, no "<!" and no "<?" anywhere: no DTD, comment, CDATA or instruction of
# their own) go in; the group's children must then alternate root element, separator,
# which holds only if each file's bytes form one closed element by themselves. Anything
# else (a parse error, a missing separator) sends the file(s) to the one-file parser,
# which gives the exact error and line. What goes in parses to the same tree either way.
# Files over _GROUP_MAX_BYTES are parsed alone, so a group never holds much memory.
_GROUP_MAX_BYTES = 1 << 16
_SEPARATOR = b"<?dsxsd-next-file?>"
_XML_SPACE = " \t\r\n"


def _parse_together(contents: list[bytes | None]) -> list[etree._Element | None]:
    """The root element of each file's bytes, or ``None`` for a file to parse alone."""
    bodies = [None if data is None else _body(data) for data in contents]
    parts = [body for body in bodies if body is not None]
    if len(parts) < 2:
        return [None] * len(contents)
    try:
        group = etree.fromstring(
            b"<group>" + b"".join(part + _SEPARATOR for part in parts) + b"</group>",
            _xml.parser(),
        )
    except etree.XMLSyntaxError:
        return [None] * len(contents)
    children = group[:]
    roots = children[0::2]
    if (
        group.text is not None
        or len(children) != 2 * len(parts)
        or any(root.tag != "annotation" or (root.tail or "").strip(_XML_SPACE) for root in roots)
        or any(mark.tag is not etree.PI or mark.tail is not None for mark in children[1::2])
    ):
        return [None] * len(contents)
    found = iter(roots)
    return [None if body is None else next(found) for body in bodies]


def _body(data: bytes) -> bytes | None:
    """The bytes from the root element on, for a file simple enough to parse in a group
    (see above); ``None`` otherwise."""
    if len(data) > _GROUP_MAX_BYTES:
        return None
    start = _xml.utf8_body_start(data)
    if (
        not data.startswith(b"<annotation", start)
        or data.find(b"<!", start) >= 0
        or data.find(b"<?", start) >= 0
    ):
        return None
    return data[start:]


def annotation_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files :func:`read_voc` reads, in its order: the folder's top-level ``*.xml``
    (any case) sorted by name, without macOS ``._*`` forks; or the one file ``path``."""
    return [Path(name) for name in _annotation_names(Path(path))]


def _annotation_names(path: Path) -> list[str]:
    """:func:`annotation_files` as strings: a ``Path`` per file costs a noticeable part
    of reading a LabelImg file by the fast path."""
    if path.is_dir():
        folder = str(path)
        with os.scandir(path) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.name.lower().endswith(".xml")
                and not entry.name.startswith("._")
                and entry.is_file()
            )
        prefix = os.path.join(folder, "")  # the folder and one separator, as join() puts it
        return [prefix + name for name in names]
    if path.is_file():
        return [str(path)]
    raise DsxsdError("no such file or folder", file=path)


def read_file(file: Path, *, images: Path | None = None) -> ImageAnnotation:
    """One VOC annotation file as an :class:`ImageAnnotation`."""
    return _read_image(Path(file), None if images is None else Path(images))


def _read_image(file: Path, images: Path | None) -> ImageAnnotation:
    """Parse and check one file."""
    return _image_from_root(_root_of(file), file, images)


def _root_of(file: Path) -> etree._Element:
    try:
        data = _engine.read_bytes(file)
    except OSError as exc:
        raise DsxsdError(f"cannot read: {exc.strerror or exc}", file=file) from None
    return _xml.parse(data, file)


def salvage_file(
    file: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None
) -> tuple[ImageAnnotation, list[ObjectAnnotation | list[DsxsdError]]]:
    """One file read for ``validate``, which wants every bad value in it rather than the
    first: the image without its objects, and each ``<object>`` in file order as the
    object, or as the list of every error in it. A fault of the file as a whole (not
    XML, not VOC, no file name, a bad size) is raised, as :func:`read_file` raises it."""
    file = Path(file)
    root = _root_of(file)
    head, elements = _image_head(root, file, None if images is None else Path(images))
    image = _image(head, (), file, root)
    return image, [_salvage_object(element, index, file) for index, element in enumerate(elements)]


def _image_from_root(root: etree._Element, file: Path, images: Path | None) -> ImageAnnotation:
    head, elements = _image_head(root, file, images)
    objects = tuple(_read_object(element, index, file) for index, element in enumerate(elements))
    return _image(head, objects, file, root)


def _image_head(
    root: etree._Element, file: Path, images: Path | None
) -> tuple[dict[str, Any], list[etree._Element]]:
    """The image's fields but its objects, checked, and its ``<object>`` elements."""
    if root.tag != "annotation":
        tag = etree.QName(root).localname
        raise InvalidAnnotationError(
            f"the root element is <{tag}>, not <annotation>: not a Pascal VOC file",
            file=file,
            line=root.sourceline,
        )
    # One pass over the children (``find`` per tag walks them again each time): the
    # first child of each tag, as ``find`` would return, and every <object>.
    first: dict[Any, etree._Element] = {}
    object_elements = []
    for child in root[:]:  # a slice builds the list in C, faster than iterating
        tag = child.tag
        if tag == "object":
            object_elements.append(child)
        elif tag not in first:
            first[tag] = child
    path_text = _text_of(first.get("path"))
    filename = _text_of(first.get("filename"))
    if filename is None and path_text is not None:
        filename = path_text.replace("\\", "/").rsplit("/", 1)[-1] or None
    if filename is None:
        raise MissingFieldError(
            "<filename> is missing or empty", file=file, line=root.sourceline, field="filename"
        )
    width, height, depth = _read_sizes(first.get("size"), file)
    if width is None or height is None:
        header = _image_header(images if images is not None else file.parent, filename)
        if header is not None:
            width = header[0] if width is None else width
            height = header[1] if height is None else height
            depth = header[2] if depth is None else depth
    head = {
        "filename": filename, "width": width, "height": height, "depth": depth,
        "folder": _text_of(first.get("folder")), "path": path_text,
    }
    return head, object_elements


def _image(
    head: dict[str, Any], objects: tuple[ObjectAnnotation, ...], file: Path, root: etree._Element
) -> ImageAnnotation:
    try:
        return ImageAnnotation(objects=objects, **head)
    except ValueError as exc:
        raise InvalidValueError(str(exc), file=file, line=root.sourceline) from None


def _text_of(element: etree._Element | None) -> str | None:
    """The stripped text of ``element``; ``None`` when absent or empty."""
    if element is None:
        return None
    text = element.text
    if text is None:
        return None
    return text.strip() or None


def _text(parent: etree._Element, tag: str) -> str | None:
    """The stripped text of the first direct child ``tag``; ``None`` when absent or empty."""
    return _text_of(parent.find(tag))


def _children(element: etree._Element) -> dict[Any, etree._Element]:
    """The first direct child of each tag (what ``find(tag)`` returns), in one pass."""
    first: dict[Any, etree._Element] = {}
    for child in element[:]:
        first.setdefault(child.tag, child)
    return first


def _read_sizes(
    size: etree._Element | None, file: Path
) -> tuple[int | None, int | None, int | None]:
    if size is None:
        return None, None, None
    children = _children(size)
    sizes: list[int | None] = []
    for name in _SIZES:
        element = children.get(name)
        text = None if element is None or element.text is None else element.text.strip()
        if not text:
            sizes.append(None)
            continue
        if len(text) < 16 and text.isdigit() and text.isascii():
            sizes.append(int(text) or None)  # 0: the tool did not know
            continue
        if not _NUMBER.fullmatch(text) or not float(text).is_integer() or float(text) < 0:
            raise InvalidValueError(
                f"<size><{name}> is {text!r}, not a whole number",
                file=file,
                line=element.sourceline,
                field=name,
            )
        sizes.append(int(float(text)) or None)
    return sizes[0], sizes[1], sizes[2]


def _read_object(element: etree._Element, index: int, file: Path) -> ObjectAnnotation:
    # Written out rather than through small helpers: this runs for every object of every
    # file, where the calls are a noticeable part of its time.
    children: dict[Any, etree._Element] = {}
    for child in element[:]:
        children.setdefault(child.tag, child)
    label = _text_of(children.get("name"))
    if label is None:
        raise _no_name(element, index, file)
    bndbox = children.get("bndbox")
    if bndbox is None:
        raise _no_bndbox(element, index, file)
    corners: dict[Any, etree._Element] = {}
    for child in bndbox[:]:
        corners.setdefault(child.tag, child)
    get = corners.get
    xmin = _coordinate(get("xmin"), bndbox, "xmin", index, file)
    ymin = _coordinate(get("ymin"), bndbox, "ymin", index, file)
    xmax = _coordinate(get("xmax"), bndbox, "xmax", index, file)
    ymax = _coordinate(get("ymax"), bndbox, "ymax", index, file)
    pose = children.get("pose")
    pose = None if pose is None or pose.text is None else (pose.text.strip() or None)
    difficult = children.get("difficult")
    truncated = children.get("truncated")
    occluded = children.get("occluded")
    attributes = children.get("attributes")
    try:
        return ObjectAnnotation(
            label,
            BBox(xmin, ymin, xmax, ymax),
            False if difficult is None else bool(_flag(difficult, "difficult", index, file)),
            False if truncated is None else bool(_flag(truncated, "truncated", index, file)),
            None if occluded is None else _flag(occluded, "occluded", index, file),
            None if pose == UNSPECIFIED_POSE else pose,
            {} if attributes is None else _read_attributes(attributes),
        )
    except ValueError as exc:
        raise InvalidValueError(
            f"object {index}: {exc}", file=file, line=element.sourceline
        ) from None


def _no_name(element: etree._Element, index: int, file: Path) -> DsxsdError:
    return MissingFieldError(
        f"object {index}: <name> is missing or empty",
        file=file, line=element.sourceline, field="name",
    )


def _no_bndbox(element: etree._Element, index: int, file: Path) -> DsxsdError:
    return MissingFieldError(
        f"object {index}: <bndbox> is missing", file=file, line=element.sourceline, field="bndbox"
    )


def _salvage_object(
    element: etree._Element, index: int, file: Path
) -> ObjectAnnotation | list[DsxsdError]:
    """The object, or every error in it (:func:`_read_object` stops at the first): each
    value is checked on its own, by the same functions."""
    try:
        return _read_object(element, index, file)
    except DsxsdError as exc:
        first = exc
    errors: list[DsxsdError] = []

    def check(read: Any, *args: Any) -> None:
        try:
            read(*args)
        except DsxsdError as exc:
            errors.append(exc)

    children = _children(element)
    if _text_of(children.get("name")) is None:
        errors.append(_no_name(element, index, file))
    bndbox = children.get("bndbox")
    if bndbox is None:
        errors.append(_no_bndbox(element, index, file))
    else:
        corners = _children(bndbox)
        for name in _COORDINATES:
            check(_coordinate, corners.get(name), bndbox, name, index, file)
    for name in ("difficult", "truncated", "occluded"):
        check(_flag, children.get(name), name, index, file)
    return errors or [first]  # the first may be none of these: a value the model refused


def _coordinate(
    element: etree._Element | None, bndbox: etree._Element, name: str, index: int, file: Path
) -> float:
    text = None if element is None or element.text is None else element.text.strip()
    if not text:
        raise MissingFieldError(
            f"object {index}: <bndbox><{name}> is missing or empty",
            file=file,
            line=bndbox.sourceline if element is None else element.sourceline,
            field=name,
        )
    # Plain ASCII digits (nearly every file) skip the regular expression.
    if (text.isdigit() and text.isascii()) or _NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    raise InvalidValueError(
        f"object {index}: <bndbox><{name}> is {text!r}, not a number",
        file=file,
        line=element.sourceline,
        field=name,
    )


def _flag(child: etree._Element | None, name: str, index: int, file: Path) -> bool | None:
    """``0``/``1`` (also ``true``/``false``); ``None`` when absent or empty."""
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


def _read_attributes(container: etree._Element | None) -> dict[str, str]:
    """CVAT's ``<attributes><attribute><name>k</name><value>v</value>...`` as ``{k: v}``."""
    attributes: dict[str, str] = {}
    if container is None:
        return attributes
    for attribute in container.iterchildren("attribute"):
        name = _text(attribute, "name")
        if name is not None:
            attributes[name] = _text(attribute, "value") or ""
    return attributes


def _image_header(folder: Path, filename: str) -> tuple[int, int, int | None] | None:
    """Width, height and depth from the image's header, or ``None`` when the image is not
    there or not readable. Only the header is read: nothing is decoded."""
    from .._images import read_header

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
            return read_header(candidate)
        except DsxsdError:
            return None
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
    named = file_per_image(
        annotations.images, ".xml", path,
        keeps="VOC keeps one file", unread="a name readers skip as a macOS resource fork",
    )
    documents = {name: to_bytes(image, path) for image, name in named}
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
        _add(bndbox, name, number_text(value))  # 12.0 as "12", as LabelImg writes it
    if obj.occluded is not None:
        _add(element, "occluded", "1" if obj.occluded else "0")


def _add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text  # lxml escapes &, < and >
    return element


def _sniff(path: Path) -> bool:
    """A folder is VOC unless it holds no ``.xml`` but other annotation files (labelme
    ``.json``, or YOLO ``.txt`` labels with their class list)."""
    if not path.is_dir():
        return True
    if any(path.glob("*.xml")):
        return True
    from .yolo import sniff_folder

    return not any(path.glob("*.json")) and not sniff_folder(path)


FILES = _engine.FileFormat("voc", open=_open, parse=parse_bytes, fast=_fast)

FORMAT = Format(
    name="voc",
    summary="Pascal VOC XML: a folder of <stem>.xml, one per image (LabelImg, CVAT)",
    reader=read_voc,
    writer=write_voc,
    suffixes=(".xml", "/"),
    output_is_dir=True,
    sniff=_sniff,
    files=FILES,
    # Attributes are not written; the class list is the labels in order of first
    # appearance (no room for unused classes); images come back sorted by file name.
    lossy=("attributes", "classes", "image_order"),
)

__all__ = [
    "FORMAT", "annotation_files", "parse_bytes", "read_voc", "write_voc", "read_file",
    "salvage_file", "to_bytes",
]
