"""The ``csv`` format: one row per object, in the TensorFlow Object Detection API layout.

The header starts ``filename,width,height,class,xmin,ymin,xmax,ymax``, the columns (and
the number style) that the classic ``xml_to_csv.py`` script writes with pandas, so that
``generate_tfrecord.py`` and every tutorial built on it read our files unchanged. The full
layout adds ``depth,difficult,truncated,pose`` after them; ``columns="basic"`` writes only
the first eight and nothing else: like ``xml_to_csv.py``, it writes no row for an image
without objects. The full layout writes such an image as one row with an empty class
and box, so it survives the round trip. The ``pose`` column holds VOC's pose as VOC
writes it: ``Unspecified`` for an object without one, which reads back as no pose.

The standard library's :mod:`csv` module is used on both sides: it quotes exactly as
pandas does (pandas writes through it), it keeps every value as the text it was, and it
lets errors name the line they are on.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from .. import _io
from ..errors import (
    ErrorPolicy,
    DsxsdError,
    InvalidValueError,
    MalformedFileError,
    MissingFieldError,
)
from ..annotations import (
    UNSPECIFIED_POSE,
    AnnotationSet,
    BBox,
    ImageAnnotation,
    ObjectAnnotation,
)
from . import Format, OnError, Parts

BASIC_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
FULL_COLUMNS = BASIC_COLUMNS + ("depth", "difficult", "truncated", "pose")
REQUIRED_COLUMNS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")

Columns = Literal["full", "basic"]

# What the basic columns leave out on top of what the format never holds (see
# lossy_for): the full columns' fields, and images without objects, which get no row.
_BASIC_LOSSY = ("depth", "difficult", "truncated", "pose", "empty_images")

# A plain decimal number, as people and pandas write them. float() alone would also take
# "nan", "inf" and "1_000", which are not coordinates anyone meant to write.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no", ""}


def number_text(value: float) -> str:
    """A coordinate as text: integral values without ``.0`` (as LabelImg and
    ``xml_to_csv.py`` write integer pixels), others (also integral ones too large to be
    pixels) in the shortest form that reads back as the same float (``1e+20``)."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def parse_number(text: str) -> float:
    """Parse a coordinate; raises :class:`ValueError` with the text in the message."""
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise ValueError(f"not a number: {text!r}")
    return float(stripped)


def decode_text(data: bytes, path: Path) -> str:
    """UTF-8 text (a byte-order mark is dropped); a decoding error names its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MalformedFileError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            file=path,
            line=line,
        ) from None


# ----------------------------------------------------------------------------- writing


def write_csv(
    annotations: AnnotationSet,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    columns: Columns = "full",
) -> None:
    """Write one row per object; with the full columns, one row with an empty class for
    each image without objects (the basic columns write none, as ``xml_to_csv.py``)."""
    _check(columns)
    _io.write_text(path, csv_text(annotations.images, columns == "full"), overwrite=overwrite)


def _check(columns: Columns = "full") -> None:
    if columns not in ("full", "basic"):
        raise ValueError(f"columns must be 'full' or 'basic', got {columns!r}")


def _part(images: Iterable[ImageAnnotation], columns: Columns = "full") -> str:
    """The rows of ``images`` without the header: a part of the file (see ``Parts``)."""
    return csv_text(images, columns == "full", header=False)


def _join(
    parts: Iterable[str], path: str | os.PathLike[str], classes: Any, *,
    overwrite: bool = False, columns: Columns = "full",
) -> None:
    """The file :func:`write_csv` writes, from the rows of its images in parts."""
    _io.write_text(path, csv_text((), columns == "full") + "".join(parts), overwrite=overwrite)


def csv_text(images: Iterable[ImageAnnotation], full: bool, header: bool = True) -> str:
    """The CSV :func:`write_csv` writes for ``images`` (``full``: every column, else the
    basic eight); without ``header``, the rows alone, which follow a header written
    once when a large file is made of parts (see :mod:`dsxsd.conversion`)."""
    buffer = io.StringIO()
    # QUOTE_MINIMAL and "\n": what pandas' DataFrame.to_csv writes on Linux.
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(FULL_COLUMNS if full else BASIC_COLUMNS)
    for row in _rows(images, full):
        if isinstance(row, str):
            buffer.write(row)
        else:
            writer.writerow(row)
    return buffer.getvalue()


def _size_text(value: int | None) -> str:
    return "" if value is None else str(value)


class _NumberTexts(dict):
    """``number_text`` with a memory: pixel coordinates repeat a lot across a dataset, and
    formatting them was most of the time of writing a large file."""

    def __missing__(self, value: float) -> str:
        text = self[value] = number_text(value)
        return text


# Characters that make csv.writer quote a field (QUOTE_MINIMAL, "," and '"', "\n" ends
# lines; "\r" too). A row whose text fields hold none of them is the plain join of its
# fields, which is much faster to build than going through the writer.
_QUOTED = re.compile('[,"\r\n]')


class _PlainTexts(dict):
    """Whether a text needs no quoting, remembered: labels and poses repeat."""

    def __missing__(self, text: str) -> bool:
        plain = self[text] = _QUOTED.search(text) is None
        return plain


_FLAGS = ("0", "1")  # indexed by a bool


def _rows(images: Iterable[ImageAnnotation], full: bool) -> Iterator[str | list[str]]:
    """Each row as its finished line, or as fields for csv.writer where one needs quotes."""
    text = _NumberTexts().__getitem__
    plain = _PlainTexts().__getitem__
    for image in images:
        head = [image.filename, _size_text(image.width), _size_text(image.height)]
        depth = _size_text(image.depth)
        plain_head = ",".join(head) if plain(image.filename) else None
        if not image.objects:
            if full:
                row = head + [""] * 5 + [depth, "", "", ""]
                yield row if plain_head is None else ",".join(row) + "\n"
            continue
        for obj in image.objects:
            box = obj.bbox
            label = obj.label
            pose = UNSPECIFIED_POSE if obj.pose is None else obj.pose
            if plain_head is not None and plain(label) and plain(pose):
                if full:
                    yield (
                        f"{plain_head},{label},{text(box.xmin)},{text(box.ymin)},"
                        f"{text(box.xmax)},{text(box.ymax)},{depth},"
                        f"{_FLAGS[obj.difficult]},{_FLAGS[obj.truncated]},{pose}\n"
                    )
                else:
                    yield (
                        f"{plain_head},{label},{text(box.xmin)},{text(box.ymin)},"
                        f"{text(box.xmax)},{text(box.ymax)}\n"
                    )
                continue
            row = head + [label, text(box.xmin), text(box.ymin), text(box.xmax), text(box.ymax)]
            if full:
                row += [depth, _FLAGS[obj.difficult], _FLAGS[obj.truncated], pose]
            yield row


# ----------------------------------------------------------------------------- reading


class _Image:
    """An image being assembled from its rows."""

    __slots__ = ("filename", "line", "width", "height", "depth", "sizes_text", "objects", "error")

    def __init__(self, filename: str, line: int) -> None:
        self.filename = filename
        self.line = line
        self.width: int | None = None
        self.height: int | None = None
        self.depth: int | None = None
        self.sizes_text: tuple[str, str, str] | None = None
        self.objects: list[ObjectAnnotation] = []
        self.error: DsxsdError | None = None


def read_csv(
    path: str | os.PathLike[str], *, on_error: OnError = "raise"
) -> AnnotationSet:
    """Read a basic or full file (unknown extra columns are ignored).

    Rows are grouped into images by ``filename`` in order of first appearance. With
    ``on_error="skip"`` an image with a bad row is left out whole (a box missing from an
    image is worse than a missing image) and listed in ``skipped`` with the row's line.
    """
    path = Path(path)
    width, index, rows = _open(path)
    positions = [index.get(name, -1) for name in FULL_COLUMNS]
    images: dict[str, _Image] = {}
    policy = ErrorPolicy(on_error)
    for start, row in rows:
        try:
            _add_row(images, row, positions, width, path, start)
        except DsxsdError as exc:
            filename = _filename_of(row, index)
            if not filename.strip():
                policy.failed(exc, path, line=start)
                continue
            if policy.stops:
                raise
            image = images.setdefault(filename, _Image(filename, start))
            if image.error is None:
                image.error = exc

    result = []
    for image in images.values():
        if image.error is not None:
            policy.failed(image.error, path)
            continue
        result.append(
            ImageAnnotation(
                image.filename, image.width, image.height, image.depth, image.objects
            )
        )
    skipped = sorted(policy.skipped, key=lambda item: item.line or 0)
    return AnnotationSet(result, skipped=skipped)


def salvage_csv(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[ImageAnnotation, list[ObjectAnnotation | list[DsxsdError]]]], list[DsxsdError]]:
    """The file read for ``validate``, which wants every bad row rather than the first of
    each image: each image without its objects, with its object rows in order as the
    object or as ``[error]``; and the errors of rows that name no image. A file that is
    no CSV at all (no header, broken quoting) raises, as :func:`read_csv` does."""
    path = Path(path)
    width, index, rows = _open(path)
    positions = [index.get(name, -1) for name in FULL_COLUMNS]
    images: dict[str, _Image] = {}
    outcomes: dict[str, list[ObjectAnnotation | list[DsxsdError]]] = {}
    unplaced: list[DsxsdError] = []
    for start, row in rows:
        filename = _filename_of(row, index)
        known = images.get(filename)
        before = 0 if known is None else len(known.objects)
        try:
            _add_row(images, row, positions, width, path, start)
        except DsxsdError as exc:
            if not filename.strip():
                unplaced.append(exc)
                continue
            images.setdefault(filename, _Image(filename, start))
            outcomes.setdefault(filename, []).append([exc])
            continue
        outcomes.setdefault(filename, []).extend(images[filename].objects[before:])
    salvaged = [
        (ImageAnnotation(image.filename, image.width, image.height, image.depth), outcomes[name])
        for name, image in images.items()
    ]
    return salvaged, unplaced


def _open(path: Path) -> tuple[int, dict[str, int], Iterator[tuple[int, list[str]]]]:
    """The header's width and column index, and the rows after it with the line each
    starts on (blank lines left out). A broken header raises here, a broken row when
    it is reached."""
    text = decode_text(path.read_bytes(), path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise MalformedFileError(f"cannot parse CSV: {exc}", file=path, line=1) from None
    if header is None or not any(cell.strip() for cell in header):
        raise MalformedFileError(
            f"no header row; expected {','.join(FULL_COLUMNS)}", file=path, line=1
        )
    return len(header), _column_index(header, path), _data_rows(reader, path)


def _data_rows(reader: Any, path: Path) -> Iterator[tuple[int, list[str]]]:
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise MalformedFileError(
                f"cannot parse CSV: {exc}", file=path, line=reader.line_num
            ) from None
        line = reader.line_num
        if row is None:
            return
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        yield start, row


def _filename_of(row: list[str], index: dict[str, int]) -> str:
    return row[index["filename"]] if index["filename"] < len(row) else ""


def _column_index(header: list[str], path: Path) -> dict[str, int]:
    names = [name.strip() for name in header]
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        if name in FULL_COLUMNS:
            if name in index:
                raise MalformedFileError(
                    f"column {name!r} appears twice in the header", file=path, line=1
                )
            index[name] = position
    for name in REQUIRED_COLUMNS:
        if name not in index:
            raise MissingFieldError(
                f"no {name!r} column; the header must hold {','.join(BASIC_COLUMNS)}",
                file=path,
                line=1,
                field=name,
            )
    return index


def _add_row(
    images: dict[str, _Image],
    row: list[str],
    positions: list[int],
    width: int,
    path: Path,
    line: int,
) -> None:
    if len(row) != width:
        raise MalformedFileError(
            f"row has {len(row)} fields but the header has {width} "
            "(a value with a comma must be quoted)",
            file=path,
            line=line,
        )
    # One cell per FULL_COLUMNS name, "" for a column the file does not have.
    cells = [row[position] if position >= 0 else "" for position in positions]
    filename = cells[0]
    if not filename.strip():
        raise MissingFieldError("empty filename", file=path, line=line, field="filename")
    image = images.get(filename)
    if image is None:
        image = images[filename] = _Image(filename, line)
    sizes = (cells[1], cells[2], cells[8])
    if sizes != image.sizes_text:  # rows of one image repeat them: parse each text once
        _set_sizes(image, sizes, path, line)

    label = cells[3]
    box_text = cells[4:8]
    if not label.strip():
        if any(text.strip() for text in box_text):
            raise MissingFieldError("a box without a class", file=path, line=line, field="class")
        return  # the row of an image without objects
    numbers = []
    for name, text in zip(BOX_COLUMNS, box_text):
        try:
            numbers.append(parse_number(text))
        except ValueError as exc:
            if not text.strip():
                raise MissingFieldError(
                    f"class {label.strip()!r} has no {name}", file=path, line=line, field=name
                ) from None
            raise InvalidValueError(f"{name} is {exc}", file=path, line=line, field=name) from None
    flags = [_flag(cells[9], "difficult", path, line), _flag(cells[10], "truncated", path, line)]
    try:
        pose = cells[11]
        obj = ObjectAnnotation(
            label, BBox(*numbers), *flags, pose=None if pose in ("", UNSPECIFIED_POSE) else pose
        )
    except ValueError as exc:
        raise InvalidValueError(str(exc), file=path, line=line) from None
    image.objects.append(obj)


def _set_sizes(image: _Image, texts: tuple[str, str, str], path: Path, line: int) -> None:
    for name, raw in zip(("width", "height", "depth"), texts):
        text = raw.strip()
        if not text:
            continue
        value = float(text) if _NUMBER.fullmatch(text) else None
        if value is None or not value.is_integer() or value < 0:
            raise InvalidValueError(
                f"{name} must be a whole number >= 0, got {text!r}",
                file=path,
                line=line,
                field=name,
            )
        known = getattr(image, name)
        if known is not None and known != int(value):
            raise InvalidValueError(
                f"{name} {int(value)} differs from {known} given on line {image.line} "
                f"for {image.filename!r}",
                file=path,
                line=line,
                field=name,
            )
        setattr(image, name, int(value))
    if image.sizes_text is None:
        image.sizes_text = texts


def _flag(text: str, name: str, path: Path, line: int) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidValueError(
        f"{name} must be 0 or 1, got {text!r}", file=path, line=line, field=name
    )


def _sniff(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as stream:
            first = stream.readline()
    except OSError:
        return False
    return "filename" in first and "xmin" in first


def lossy_for(columns: Columns) -> tuple[str, ...]:
    """What a file written with ``columns`` cannot hold (:attr:`Format.lossy` of the full
    columns, which is ``FORMAT.lossy``), for the warning ``convert`` gives."""
    return FORMAT.lossy + (_BASIC_LOSSY if columns == "basic" else ())


FORMAT = Format(
    name="csv",
    summary="one CSV row per object (TF Object Detection API columns first)",
    reader=read_csv,
    writer=write_csv,
    suffixes=(".csv",),
    sniff=_sniff,
    lossy=("folder", "path", "occluded", "attributes", "classes"),
    parts=Parts(check=_check, encode=_part, join=_join),
)

__all__ = [
    "FORMAT", "csv_text", "read_csv", "salvage_csv", "write_csv", "number_text", "parse_number",
    "lossy_for",
]
