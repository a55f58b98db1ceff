"""What an image file's first bytes say of its size, read before the file is decoded.

The decode pass (:func:`dsxsd.train.data.decode_checked`) refuses decompression bombs
without decoding them: each file's header is read here first, a few small reads and no
decoding, for the formats TensorFlow decodes. A size the header states is the size the
decoder reads from the same bytes; where the first bytes do not bound what the decoder
will make (a GIF's frame may be larger than its screen; a WebP of another layout; a JPEG
whose markers are not the plain sequence libjpeg reads), :func:`pixels` says ``None`` and
Pillow opens the file to decide.

>>> import io
>>> from PIL import Image
>>> stream = io.BytesIO(); Image.new("RGB", (30, 20)).save(stream, "PNG")
>>> _fixed_header(stream.getvalue()[:32])
600
>>> _fixed_header(b"not an image")
0
"""

from __future__ import annotations

import os

# What is read of a file first: every header below, and a JPEG's markers up to its frame
# header unless an Exif or colour profile segment lies between them (read on from there).
FIRST_READ = 4096
# The JPEG markers that start a frame header (SOF0-SOF15 less DHT, JPG and DAC): its
# height and width.
_FRAME_HEADERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: RST0-RST7 and TEM.
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


def pixels(path: str | os.PathLike[str]) -> int | None:
    """Width x height as the file's header states it; 0 for bytes of no format TensorFlow
    decodes (its decoder refuses them); ``None`` where the first bytes do not bound the
    size the decoder will read (see the module docstring)."""
    # os-level reads, no file object: a look is mostly the calls' cost, and a file object
    # doubled it.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        head = os.read(fd, FIRST_READ)
        while len(head) < FIRST_READ and (more := os.read(fd, FIRST_READ - len(head))):
            head += more  # a read may return less than asked before the end of the file
        if head.startswith(b"\xff\xd8\xff"):
            return _jpeg(head, fd)
    finally:
        os.close(fd)
    return _fixed_header(head)


def _jpeg(head: bytes, fd: int) -> int | None:
    """The frame header's height x width, found by walking the markers from the start of the
    image as libjpeg does; ``None`` at anything else before it (bytes between markers, the
    start of the scan, the end of the file)."""
    data, at = head, 2  # data[at] is the file's byte at offset ``base + at``
    base = 0
    while True:
        if at + 9 > len(data):  # a marker, and a frame header's sizes after it: 9 bytes
            base += at
            data, at = _read_at(fd, 2**16 + 9, base), 0  # a segment is at most 64 KiB
            if len(data) < 9:
                return None
        if data[at] != 0xFF:
            return None
        code = data[at + 1]
        if code == 0xFF:  # a fill byte before the marker
            at += 1
        elif code in _STANDALONE:
            at += 2
        elif code in _FRAME_HEADERS:
            return int.from_bytes(data[at + 5 : at + 7], "big") * int.from_bytes(data[at + 7 : at + 9], "big")
        elif code in (0xD8, 0xD9, 0xDA):  # SOI, EOI or the scan before a frame header
            return None
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")


def _read_at(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows
    return os.read(fd, size)


def _fixed_header(head: bytes) -> int | None:
    """PNG, BMP and WebP state their size at fixed places in their first 30 bytes; GIF
    (its screen, not its frame) and other WebP layouts do not bound it."""
    def number(start: int, length: int, order: str = "little", signed: bool = False) -> int:
        return int.from_bytes(head[start : start + length], order, signed=signed)

    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return number(16, 4, "big") * number(20, 4, "big")
    if head.startswith(b"BM") and len(head) >= 26:
        if number(14, 4) == 12:  # an OS/2 core header: 16-bit sizes
            return number(18, 2) * number(20, 2)
        return abs(number(18, 4, signed=True)) * abs(number(22, 4, signed=True))  # a negative height: top-down
    if head.startswith(b"GIF8"):
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        layout = head[12:16]
        if layout == b"VP8 ":  # lossy: 14-bit sizes in the frame header
            return (number(26, 2) & 0x3FFF) * (number(28, 2) & 0x3FFF)
        if layout == b"VP8L":  # lossless: 14-bit sizes less one, packed
            packed = number(21, 4)
            return ((packed & 0x3FFF) + 1) * (((packed >> 14) & 0x3FFF) + 1)
        if layout == b"VP8X":  # extended: the canvas, 24-bit sizes less one
            return (number(24, 3) + 1) * (number(27, 3) + 1)
        return None
    return 0
