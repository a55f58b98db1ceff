"""Placeholder images for tests of formats that need them (YOLO: sizes come from headers).

A placeholder is a PNG that is only a header (signature, ``IHDR``, ``IEND``): Pillow's
``Image.open`` gives its size and mode, but decoding it fails. Making one costs nothing
whatever its size (the contract test's sizes reach 10,000 px), and a reader that decoded
images instead of reading only their headers would fail on every one.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

from dsxsd.annotations import AnnotationSet, ImageAnnotation

# The size a placeholder gets when the annotation gives none.
DEFAULT_SIZE = (64, 48)
# PNG colour types by depth: grey, RGB, RGBA.
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, depth: int = 1) -> bytes:
    """A PNG of ``width`` x ``height`` and ``depth`` channels with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[depth], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b"")


def placeholder_size(image: ImageAnnotation) -> tuple[int, int]:
    return image.width or DEFAULT_SIZE[0], image.height or DEFAULT_SIZE[1]


def make_images(annotations: AnnotationSet, folder: Path, depth: int = 1) -> Path:
    """A header-only PNG (whatever its extension says) for every image of the set, of
    the image's size or :data:`DEFAULT_SIZE`; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in annotations.images:
        target = folder / image.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png_header(*placeholder_size(image), depth))
    return folder


def with_placeholder_sizes(
    annotations: AnnotationSet, depth: int = 1, made_from: AnnotationSet | None = None
) -> AnnotationSet:
    """``annotations`` as read back with the images of :func:`make_images`: sizes and
    depth from the placeholders (made for ``made_from``, by file name, when given)."""
    made = {image.filename: image for image in (made_from or annotations).images}
    images = [
        dataclasses.replace(image, width=w, height=h, depth=depth)
        for image in annotations.images
        for w, h in [placeholder_size(made[image.filename])]
    ]
    return AnnotationSet(images, annotations.classes)


__all__ = ["DEFAULT_SIZE", "make_images", "png_header", "placeholder_size", "with_placeholder_sizes"]
