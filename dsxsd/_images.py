"""Finding, opening and converting the images that annotations point at.

Shared by every part that reads the images behind annotations (crop, validate, training),
so that all of them find the same file for the same annotation and refuse the same hostile
input.

Finding (:class:`ImageFinder`): annotations name images in many ways - a bare file name, a
path relative to some root, a name without its extension, a ``<path>`` from the machine
the labelling was done on. The finder looks only under one images folder, in this order:

1. the annotation's filename, relative to the images folder;
2. its stem with each usual extension (``.jpg .jpeg .png .bmp .gif .tif .tiff .webp``,
   the extension matched case-insensitively) in the same sub-folder;
3. when the filename has folders, its name and then its stem directly under the images
   folder (a CSV written with ``JPEGImages/x.jpg`` while ``--images`` points at
   ``JPEGImages``);
4. the base name (then stem) of the annotation's ``path``, which is only a hint: it is
   usually an absolute path on another machine (``C:\\Users\\...``, ``/Users/...``);
5. the stem of the annotation file itself, when that file describes one image (a VOC
   ``.xml`` file).

A filename that would leave the images folder (``..``, or an absolute path outside it) is
refused with :class:`HostileInputError`; a symlink placed inside the folder by the user is
followed. Folder listings are read once and cached, so finding N images costs N look-ups
in memory rather than N times eight ``stat`` calls.

Opening (:func:`open_image`): Pillow's decompression-bomb guard stays on and a bomb
becomes :class:`HostileInputError`; only the formats of the extensions above are decoded
(so a file named ``.jpg`` that is really PostScript never starts Ghostscript).

Converting (:func:`to_rgb`, :func:`for_output`): JPEG holds only 8-bit RGB here; 16-bit
images are scaled (``value >> 8``) rather than clipped, which is what Pillow's own
``convert("RGB")`` does to them.

Model input (:func:`model_input`, :func:`model_inputs`): the pixels a trained model sees,
made without TensorFlow (for serving exported models) the way training's
``dsxsd.train.data.decode_and_resize`` makes them with TensorFlow.
"""

from __future__ import annotations

import os
import posixpath
import re
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageOps

from .errors import HostileInputError, ImageDecodeError, MissingImageError

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Pillow decoders for the suffixes above (the JPEG decoder also opens phone MPO files).
DECODERS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP")

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:|//|\\\\)")
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# Modes PNG stores without loss, kept as they are in PNG output.
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})


def _posix(name: str) -> str:
    # Annotations written on Windows separate folders with backslashes.
    return name.replace("\\", "/")


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base[1:] else base


def _is_absolute(name: str) -> bool:
    return name.startswith("/") or bool(_WINDOWS_ABSOLUTE.match(name))


class ImageFinder:
    """Finds the image an annotation names, under one images folder (module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._root_abs = os.path.abspath(self.root)
        self._listings: dict[str, dict[str, list[str]]] = {}

    def find(
        self,
        filename: str,
        *,
        path: str | None = None,
        annotation_file: str | os.PathLike[str] | None = None,
        per_image_file: bool = False,
    ) -> Path:
        """The image for ``filename``, or :class:`MissingImageError` naming what was tried.

        ``annotation_file`` is named in errors; with ``per_image_file`` (it describes this
        image only, as a VOC ``.xml`` does) its stem is tried last.
        """
        where = annotation_file if annotation_file is not None else filename
        relative = self._relative(filename, where)
        folder, _, base = relative.rpartition("/")
        stem = _stem(base)
        tried: list[str] = []

        def attempt(sub: str, name: str | None, stem_: str | None) -> Path | None:
            if name:
                tried.append(posixpath.join(sub, name))
                found = self._lookup(sub, name)
                if found is not None:
                    return found
            if stem_:
                tried.append(posixpath.join(sub, stem_) + ".{" + ",".join(s[1:] for s in IMAGE_SUFFIXES) + "}")
                for suffix in IMAGE_SUFFIXES:
                    found = self._lookup(sub, stem_ + suffix, suffix_only_case=len(stem_))
                    if found is not None:
                        return found
            return None

        steps: list[tuple[str, str | None, str | None]] = [(folder, base, stem)]
        if folder:
            steps.append(("", base, stem))
        if path:
            hint = _posix(path).rstrip("/").rsplit("/", 1)[-1]
            if hint and hint not in (".", ".."):
                steps.append(("", hint, _stem(hint)))
        if per_image_file and annotation_file is not None:
            steps.append(("", None, Path(annotation_file).stem))
        for sub, name, stem_ in steps:
            found = attempt(sub, name, stem_)
            if found is not None:
                return found
        unique = list(dict.fromkeys(tried))
        raise MissingImageError(
            f"image {filename!r} not found under {self.root}; tried "
            + ", ".join(unique)
            + " (extensions in any case)",
            file=where,
        )

    def _relative(self, filename: str, where: str | os.PathLike[str]) -> str:
        """``filename`` as a clean path relative to the root, or refused."""
        if "\x00" in filename:
            raise HostileInputError(f"image filename {filename!r} contains a NUL character", file=where)
        name = _posix(filename.strip())
        if _is_absolute(name):
            inside = None
            if name.startswith("/") and not name.startswith("//"):
                try:
                    common = os.path.commonpath([self._root_abs, os.path.normpath(name)])
                except ValueError:
                    common = None
                if common == self._root_abs:
                    inside = os.path.relpath(os.path.normpath(name), self._root_abs)
            if inside is None or inside == ".":
                raise HostileInputError(
                    f"image filename {filename!r} is an absolute path outside the images "
                    f"folder {self.root}; images are read only from under that folder",
                    file=where,
                )
            name = _posix(inside)
        normal = posixpath.normpath(name)
        if normal == ".." or normal.startswith("../"):
            raise HostileInputError(
                f"image filename {filename!r} leads outside the images folder {self.root}",
                file=where,
            )
        return "" if normal == "." else normal

    def _listing(self, sub: str) -> dict[str, list[str]]:
        """Names in a sub-folder keyed by their lower-cased form, read once."""
        listing = self._listings.get(sub)
        if listing is None:
            listing = {}
            try:
                with os.scandir(self.root / sub if sub else self.root) as entries:
                    names = sorted(entry.name for entry in entries)
            except (FileNotFoundError, NotADirectoryError):
                names = []
            for name in names:
                listing.setdefault(name.lower(), []).append(name)
            self._listings[sub] = listing
        return listing

    def _lookup(self, sub: str, name: str, suffix_only_case: int | None = None) -> Path | None:
        """The file ``sub/name``; with ``suffix_only_case=n`` the first ``n`` characters
        must match exactly and the rest (the extension) in any case."""
        if not name or name in (".", ".."):
            return None
        candidates = self._listing(sub).get(name.lower(), [])
        if suffix_only_case is None:
            matches = [c for c in candidates if c == name]
        else:
            exact = [c for c in candidates if c == name]
            matches = exact + [c for c in candidates if c[:suffix_only_case] == name[:suffix_only_case] and c not in exact]
        for match in matches:
            candidate = self.root / sub / match if sub else self.root / match
            if candidate.is_file():
                return candidate
        return None


def open_image(
    path: str | os.PathLike[str],
    *,
    exif_transpose: bool = False,
    formats: Sequence[str] | None = DECODERS,
    load: bool = True,
) -> Image.Image:
    """Decode the first frame of an image fully, or raise an error naming the file; with
    ``load=False`` read its header only (format, size, mode, info), the pixels not decoded.

    Pillow's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays in force: an image
    over twice the limit is :class:`HostileInputError`. With ``exif_transpose`` the EXIF
    orientation tag is applied, as phone cameras store portrait photos as landscape pixels
    plus a tag; whether the annotations assume it depends on the labelling tool.
    """
    try:
        with Image.open(path, formats=formats) as image:
            if load:
                image.load()
    except Image.DecompressionBombError as exc:
        raise HostileInputError(
            f"refused as a possible decompression bomb ({exc})", file=path
        ) from None
    except FileNotFoundError:
        raise MissingImageError("image file not found", file=path) from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            f"not an image Pillow can read as {'/'.join(formats or ('any format',))}", file=path
        ) from None
    except Exception as exc:  # Pillow raises many types on corrupt data; all mean the same here
        raise ImageDecodeError(f"cannot decode image: {exc}", file=path) from None
    if exif_transpose:
        try:
            image = ImageOps.exif_transpose(image)
        except Exception as exc:
            raise ImageDecodeError(f"cannot apply EXIF orientation: {exc}", file=path) from None
    return image


def read_header(
    path: str | os.PathLike[str], *, annotation_file: str | os.PathLike[str] | None = None
) -> tuple[int, int, int | None]:
    """Width, height and depth (bands) from the header of an image; it is never decoded.

    Decompression-bomb warnings are not raised (nothing is decoded, so a large image is no
    danger), but sizes past Pillow's hard limit are :class:`HostileInputError`, as
    everywhere in dsxsd. Errors name ``annotation_file`` when given (the file that led
    here), else the image.
    """
    where = path if annotation_file is None else annotation_file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=DECODERS) as opened:
                return opened.width, opened.height, mode_depth(opened.mode)
    except Image.DecompressionBombError as exc:
        raise HostileInputError(
            f"image {path}: refused as a possible decompression bomb ({exc})", file=where
        ) from None
    except FileNotFoundError:
        raise MissingImageError(f"image {path} not found", file=where) from None
    except Exception as exc:  # Pillow raises many types for a bad header
        raise ImageDecodeError(f"cannot read the size of image {path}: {exc}", file=where) from None


def mode_depth(mode: str) -> int | None:
    """The depth a VOC ``<size>`` gives for a Pillow mode: its bands, and 3 (4 with alpha)
    for a palette image, which is a colour image to a labeller (LabelImg writes 3)."""
    if mode in ("P", "PA"):
        return 3 if mode == "P" else 4
    try:
        return Image.getmodebands(mode)
    except (KeyError, ValueError):
        return None


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    # "I" is how some 16-bit files open; its values are taken as 16-bit data.
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    return Image.fromarray((values >> 8).astype(np.uint8), mode="L")


def _to_uint16(image: Image.Image) -> Image.Image:
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535).astype(np.uint16)
    return Image.fromarray(values)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, whatever the mode: alpha is dropped (the colour values are kept as they
    are, not blended onto a background), palettes are expanded, 16-bit values scaled by
    ``>> 8``, float (``F``) values clipped to 0..255."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT:
        return _sixteen_to_eight(image).convert("RGB")
    if mode == "F":
        values = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
        return Image.fromarray(values, mode="L").convert("RGB")
    if mode == "La":
        image = image.convert("LA")
    return image.convert("RGB")


def for_output(image: Image.Image, fmt: Literal["JPEG", "PNG"]) -> Image.Image:
    """The image in a mode ``fmt`` stores.

    JPEG: always 8-bit RGB (:func:`to_rgb`). PNG keeps the modes it stores without loss
    (``1 L LA P RGB RGBA I;16``); other 16-bit modes become ``I;16`` (values clipped to
    0..65535), other modes with alpha ``RGBA`` and the rest ``RGB``.
    """
    if fmt == "JPEG":
        return to_rgb(image)
    if fmt != "PNG":
        raise ValueError(f"fmt must be 'JPEG' or 'PNG', got {fmt!r}")
    mode = image.mode
    if mode in PNG_MODES:
        return image
    if mode in _SIXTEEN_BIT:
        return _to_uint16(image)
    if mode in _ALPHA_MODES:
        return (image.convert("LA") if mode == "La" else image).convert("RGBA")
    return to_rgb(image)


# ------------------------------------------------------------------------- model input

# The formats training's decoder (TensorFlow's decode_image) reads. Pillow's JPEG plugin
# also opens phone MPO files; TensorFlow decodes their first picture as a JPEG too.
TRAINING_DECODERS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF")
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox")


def model_input(path: str | os.PathLike[str], image_size: int, resize: str = "stretch") -> np.ndarray:
    """One image file -> uint8 [S, S, 3] RGB, as dsxsd.train.data.decode_and_resize makes it.

    Decoding follows TensorFlow's ``decode_image(channels=3)``: the EXIF orientation is
    ignored, grey is repeated to three channels, alpha is dropped (not blended), 16-bit
    PNG values become ``value >> 8``, a GIF's first frame has its transparent pixels black,
    an 8-bit BMP's palette indices are read as grey (TensorFlow ignores BMP palettes) and
    other BMP depths than 8, 24 and 32 bits are refused, as training refuses them. A CMYK
    JPEG becomes RGB by TensorFlow's integer formula. JPEGs are decoded as TensorFlow
    decodes them, with libjpeg-turbo's fast integer DCT and smooth chroma upsampling
    (:func:`_jpeg_as_training_decodes`); PNG, BMP and GIF pixels are Pillow's, which are
    the same. The resize then differs only where a value rounds from exactly .5.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; expected one of {RESIZE_MODES}")
    # The header first (format, mode, the bomb check): a JPEG that simplejpeg decodes is
    # then decoded once, not by Pillow too.
    header = _open_as_training(path, load=False)
    # MPO: a phone's JPEG with more pictures after the first, which is what is decoded.
    pixels = _jpeg_as_training_decodes(path, header) if header.format in ("JPEG", "MPO") else None
    if pixels is None:
        pixels = _training_rgb(_open_as_training(path), path)
    height, width = pixels.shape[:2]
    if resize == "stretch":
        return _resize(pixels, image_size, image_size)
    # tf.image.resize_with_pad's geometry, computed in float32 as it does: scale to fit,
    # floor the scaled size, and pad by floor of half the float leftover at top and left.
    f = np.float32
    ratio = max(f(width) / f(image_size), f(height) / f(image_size))
    new_h, new_w = f(height) / ratio, f(width) / ratio
    if int(new_h) == 0 or int(new_w) == 0:
        raise ImageDecodeError(
            f"{width}x{height} is too thin to letterbox into {image_size}x{image_size}", file=path
        )
    top = max(0, int(np.floor((f(image_size) - new_h) / f(2))))
    left = max(0, int(np.floor((f(image_size) - new_w) / f(2))))
    out = np.zeros((image_size, image_size, 3), np.uint8)
    out[top : top + int(new_h), left : left + int(new_w)] = _resize(pixels, int(new_h), int(new_w))
    return out


def model_inputs(
    paths: Sequence[str | os.PathLike[str]], image_size: int, resize: str = "stretch"
) -> np.ndarray:
    """Images as float32 [N, S, S, 3] raw 0-255 RGB (:func:`model_input` each), as
    ``dsxsd.train.load_images`` gives them."""
    if not paths:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    return np.stack([model_input(p, image_size, resize) for p in paths]).astype(np.float32)


def _open_as_training(path: str | os.PathLike[str], load: bool = True) -> Image.Image:
    """:func:`open_image` of the formats training decodes; an image of another format
    Pillow knows is named as such."""
    try:
        return open_image(path, formats=TRAINING_DECODERS, load=load)
    except ImageDecodeError:
        other = _other_format(path)
        if other is None:
            raise
        raise ImageDecodeError(f"not a JPEG, PNG, BMP or GIF image ({other})", file=path) from None


def _other_format(path: str | os.PathLike[str]) -> str | None:
    """The format of an image Pillow can identify but training cannot decode (TIFF, WebP)."""
    try:
        with Image.open(path, formats=DECODERS) as image:
            return None if image.format in TRAINING_DECODERS else image.format
    except Exception:  # unidentified or broken: the decode error already says so
        return None


def _jpeg_as_training_decodes(path: str | os.PathLike[str], image: Image.Image) -> np.ndarray | None:
    """uint8 [H, W, 3] exactly as TensorFlow's ``decode_image`` decodes this JPEG
    (``image``: its header, read by Pillow), or ``None`` where that takes Pillow
    (:func:`_training_rgb`).

    TensorFlow decodes with libjpeg-turbo's fast integer DCT and smooth ("fancy") chroma
    upsampling. Pillow offers the fast DCT only together with plain upsampling (its draft
    mode), and its accurate DCT leaves pixels about a level brighter than training's,
    which a steep model turns into scores 1e-3 apart. simplejpeg (the serve extra's JPEG
    decoder, libjpeg-turbo) takes the two settings apart. Without it Pillow decodes.
    """
    try:
        import simplejpeg
    except ImportError:
        return None
    with open(path, "rb") as file:
        data = file.read()
    cmyk = image.mode == "CMYK"
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="CMYK" if cmyk else "RGB", fastdct=True, fastupsample=False)
    except ValueError:  # a file Pillow opened but libjpeg-turbo will not: Pillow's word on it
        return None
    return _cmyk_rgb(pixels.astype(np.int32), adobe="adobe" in image.info) if cmyk else pixels


def _cmyk_rgb(stored: np.ndarray, adobe: bool) -> np.ndarray:
    """RGB of a CMYK JPEG's stored values as TensorFlow makes it: a file with an Adobe
    marker stores the inks inverted; then R = (255 - C)(255 - K) / 255, truncated."""
    ink = 255 - stored if adobe else stored
    return ((255 - ink[..., :3]) * (255 - ink[..., 3:]) // 255).astype(np.uint8)


def _training_rgb(image: Image.Image, path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 [H, W, 3] with TensorFlow's decoder's choices where they differ from Pillow's."""
    if image.format == "BMP":
        with open(path, "rb") as file:
            bits = int.from_bytes(file.read(30)[28:30], "little")
        if bits not in (8, 24, 32):
            raise ImageDecodeError(
                f"cannot be decoded (a {bits}-bit BMP; training reads 8, 24 and 32 bits)", file=path
            )
        if bits == 8:  # the indices of a "P" image, 0/1 of a two-colour "1" one
            return np.repeat(np.asarray(image).astype(np.uint8)[..., None], 3, axis=2)
    if image.mode == "CMYK":  # Pillow inverts every CMYK JPEG's stored values on reading
        return _cmyk_rgb(255 - np.asarray(image).astype(np.int32), adobe="adobe" in image.info)
    rgb = np.array(to_rgb(image))
    transparent = image.info.get("transparency")
    if image.format == "GIF" and isinstance(transparent, int) and image.mode in ("P", "L"):
        # TensorFlow leaves a first frame's transparent pixels black.
        rgb[np.asarray(image) == transparent] = 0
    return rgb


def _resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """TensorFlow's antialiased bilinear resize, rounded half to even as tf.round does.

    Pillow's BILINEAR is the same scaled triangle filter with the same half-pixel centres,
    but in 8-bit mode it rounds between its two passes; a float ("F") resize per channel
    keeps full precision, so only values at exactly .5 can round differently.
    """
    if pixels.shape[:2] == (height, width):  # both filters are the identity there
        return pixels
    channels = [
        Image.fromarray(pixels[..., c].astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
        for c in range(3)
    ]
    return np.clip(np.rint(np.stack([np.asarray(c) for c in channels], axis=2)), 0, 255).astype(np.uint8)


__all__ = [
    "DECODERS",
    "IMAGE_SUFFIXES",
    "PNG_MODES",
    "RESIZE_MODES",
    "TRAINING_DECODERS",
    "ImageFinder",
    "for_output",
    "model_input",
    "model_inputs",
    "open_image",
    "to_rgb",
]
