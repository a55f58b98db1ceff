"""Parsing XML from files nobody vetted.

Annotation folders come from the internet, from colleagues and from labelling services, so
an XML file is treated as hostile: entities are never expanded, no DTD is loaded, nothing
is fetched from the network, and libxml2's size limits stay on (``huge_tree=False``). A
document that declares entities at all is refused before parsing: no annotation tool
writes one, and the only reasons to are entity expansion bombs ("billion laughs") and
external entities that read local files.
"""

from __future__ import annotations

import os
import re

from lxml import etree

from ..errors import HostileInputError, MalformedFileError

# "<!ENTITY" as it appears in the bytes of every encoding an XML file can start in without
# a declaration being readable as ASCII; the ASCII form covers UTF-8, GBK, Latin-1, ...
_ENTITY_DECLARATIONS = tuple(
    "<!ENTITY".encode(codec)
    for codec in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)


# What may stand before the root element of a plain UTF-8 file: a byte-order mark, an XML
# declaration of version 1.0 saying UTF-8 or no encoding, and white space.
_UTF8_PROLOG = re.compile(
    rb"(?:\xef\xbb\xbf)?"
    rb"(?:<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"1\.0\"|'1\.0')"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"(?:utf|UTF)-8\"|'(?:utf|UTF)-8'))?"
    rb"[ \t\r\n]*\?>)?"
    rb"[ \t\r\n]*"
)


def utf8_body_start(data: bytes) -> int:
    """Where the document proper (the root element, if the file is plain UTF-8 XML)
    starts in ``data``: after a BOM, a version 1.0 UTF-8 declaration and white space.
    Anything else before the root (another encoding, a DOCTYPE, a comment) is left in
    place, for the caller to decline."""
    return _UTF8_PROLOG.match(data).end()


def parser() -> etree.XMLParser:
    """A parser for untrusted XML (see the module docs)."""
    # A fresh parser per document: lxml parsers keep state and are not thread-safe.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        recover=False,
    )


def parse(data: bytes, file: str | os.PathLike[str]) -> etree._Element:
    """The root element of the document in ``data`` (raw bytes, so that a BOM or an
    ``encoding="GBK"`` declaration is honoured by the parser itself).

    Raises :class:`HostileInputError` for a document that declares entities and
    :class:`MalformedFileError` (with the line libxml2 reports) for one that is not
    well-formed.
    """
    if any(pattern in data for pattern in _ENTITY_DECLARATIONS):
        raise _hostile(file)
    try:
        root = etree.fromstring(data, parser())
    except etree.XMLSyntaxError as exc:
        reason = exc.msg or str(exc)
        raise MalformedFileError(
            f"not well-formed XML: {reason}", file=file, line=exc.lineno or None
        ) from None
    # A second look after parsing, for encodings the byte scan above cannot read.
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and next(iter(dtd.iterentities()), None) is not None:
        raise _hostile(file)
    return root


def _hostile(file: str | os.PathLike[str]) -> HostileInputError:
    return HostileInputError(
        "refused: the document declares XML entities (entity expansion or external "
        "entities); annotation files never need them",
        file=file,
    )


__all__ = ["parse", "parser", "utf8_body_start"]
