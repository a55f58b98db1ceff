"""A fast path for the VOC reader: files exactly as LabelImg writes them, read by one
regular expression instead of a tree.

Most VOC folders users bring were saved by LabelImg, whose files all have one shape::

    <annotation>  <folder/> <filename/> <path/> <source><database/></source>
                  <size><width/><height/><depth/></size> <segmented/> <object>* </annotation>
    <object>      <name/> <pose/> <truncated/> <difficult/>
                  <bndbox><xmin/><ymin/><xmax/><ymax/></bndbox>

:func:`read` matches a file against that shape (``path``, ``source`` and ``segmented``
optional; ``verified="yes"`` allowed on the root) with text that cannot hold markup
(no ``<``, ``>``, ``&``, carriage returns or characters XML forbids), numbers of plain
digits, flags ``0``/``1`` and a width and height above 0. A file that matches is
well-formed XML whose tree the full reader would turn into exactly the values returned
here, so they need no further checks; any other file (a CVAT export, a comment, an
entity, an empty size, other element orders) gets ``None`` and goes to the full reader,
which also gives every error. It is never more lenient than the full reader: the tests
compare both on generated and mutated files.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..annotations import UNSPECIFIED_POSE
from . import _xml

_S = r"[ \t\r\n]*"  # XML white space only: str's \s would also take Unicode spaces
# Character data that is the same text in a tree: no markup, no entity, no \r (which XML
# turns into \n), no character XML 1.0 forbids. Of those above U+00FF, surrogates cannot
# come out of strict UTF-8 decoding and U+FFFE/U+FFFF are looked for in the whole text
# once (_NONCHARACTERS): a class of code points under 256 alone matches faster.
_TEXT = r"[^<>&\r\x00-\x08\x0b\x0c\x0e-\x1f]*"
_NONCHARACTERS = ("\ufffe", "\uffff")
_DIGITS = _S + r"([0-9]{1,15})" + _S
_NUMBER = _S + r"([+-]?[0-9]{1,15}(?:\.[0-9]{0,15})?)" + _S
# The flag's digit is optional; written so that white space has one way to match (two
# optional runs around an optional digit would backtrack quadratically on a long run).
_FLAG = r"(?:[ \t\r\n]*([01]))?" + _S


def _leaf(tag: str, value: str = _TEXT) -> str:
    group = f"({value})" if value is _TEXT else value  # the others hold their group
    return f"<{tag}>{group}</{tag}>{_S}"


_OBJECT_PATTERN = (
    "<object>" + _S
    + _leaf("name") + _leaf("pose") + _leaf("truncated", _FLAG) + _leaf("difficult", _FLAG)
    + "<bndbox>" + _S
    + _leaf("xmin", _NUMBER) + _leaf("ymin", _NUMBER) + _leaf("xmax", _NUMBER) + _leaf("ymax", _NUMBER)
    + "</bndbox>" + _S + "</object>" + _S
)
_OBJECT = re.compile(_OBJECT_PATTERN)
_HEAD = re.compile(
    _S + '<annotation(?: verified="(?:yes|no)")?>' + _S
    + _leaf("folder") + _leaf("filename")
    + f"(?:{_leaf('path')})?"
    + f"(?:<source>{_S}{_leaf('database')}</source>{_S})?"
    + "<size>" + _S + _leaf("width", _DIGITS) + _leaf("height", _DIGITS) + _leaf("depth", _DIGITS)
    + "</size>" + _S
    + f"(?:{_leaf('segmented')})?"
)
_END = re.compile("</annotation>" + _S)

# LabelImg files are a few kilobytes; larger ones go to the full reader.
MAX_BYTES = 1 << 20

# (label, xmin, ymin, xmax, ymax, difficult, truncated, occluded, pose, attributes)
ObjectRecord = tuple
# (filename, width, height, depth, folder, path, attributes, [ObjectRecord, ...])
ImageRecord = tuple


def read(data: bytes) -> Optional[ImageRecord]:
    """The image record of a LabelImg-shaped file, or ``None`` for the full reader."""
    if len(data) > MAX_BYTES:
        return None
    try:
        text = data[_xml.utf8_body_start(data):].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _NONCHARACTERS[0] in text or _NONCHARACTERS[1] in text:
        return None
    # The head, then one object after another from where the last ended, then the end:
    # together a match of the whole text, read in one pass.
    head = _HEAD.match(text)
    if head is None:
        return None
    folder, filename, path, _, width, height, depth, _ = head.groups()
    filename = filename.strip()
    width, height = int(width), int(height)
    if not filename or not width or not height:
        return None  # the full reader falls back on the path or the image header
    records = []
    position = head.end()
    while (found := _OBJECT.match(text, position)) is not None:
        record = _object(found.groups())
        if record is None:
            return None
        records.append(record)
        position = found.end()
    if _END.fullmatch(text, position) is None:
        return None
    return (
        filename,
        width,
        height,
        int(depth) or None,
        folder.strip() or None,
        None if path is None else path.strip() or None,
        {},
        records,
    )


def _object(groups: tuple[Any, ...]) -> Optional[ObjectRecord]:
    name, pose, truncated, difficult, xmin, ymin, xmax, ymax = groups
    label = name.strip()
    if not label:
        return None  # the full reader's error names the line
    pose = pose.strip()
    return (
        label,
        float(xmin),
        float(ymin),
        float(xmax),
        float(ymax),
        difficult == "1",
        truncated == "1",
        None,
        None if not pose or pose == UNSPECIFIED_POSE else pose,
        {},
    )
