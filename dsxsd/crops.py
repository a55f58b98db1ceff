"""Cut every annotated object into per-class folders, with a crops manifest.

Turns a detection dataset into a classification/similarity one::

    OUT/<class folder>/<image stem>_<object index>.<ext>
    OUT/crops.csv   path,class,source,object_index,xmin,ymin,xmax,ymax

``path`` is relative to OUT with ``/`` separators, ``source`` the absolute path of the
image the crop was cut from, ``object_index`` the object's 0-based position in its image's
annotation, ``xmin..ymax`` the integer box actually cut (after rounding, padding, squaring
and clipping), in the same corner convention as below.

Box convention: ``xmin, ymin, xmax, ymax`` are read as Pillow's crop box (left, upper,
right, lower): pixel *corners*, right/lower exclusive, which is what LabelImg writes.
Fractional values are widened to whole pixels (``floor`` for the minimum, ``ceil`` for the
maximum), so a crop never loses part of the object. (The original PASCAL VOC release
counts pixels from 1, inclusively: its box covers 0-based pixels ``xmin-1 .. xmax-1``, so
cut as corners it misses the object's first column and row - one pixel, within labelling
noise. No file says which convention it follows, so none is guessed.)

How a box becomes a crop, in this order:

1. A box with ``xmax < xmin`` or ``ymax < ymin`` is skipped ("corners out of order"),
   one with zero width or height too ("empty box"): the words ``validate`` uses.
2. It is rounded outwards and clipped to the image; nothing left -> "outside image".
3. The visible box narrower or shorter than ``min_size`` pixels -> "below min size".
4. Padding is added on every side (a fraction of the visible box's width/height, rounded
   to whole pixels, or a number of pixels), then clipped to the image.
5. ``square`` grows the shorter side to the longer one around the centre; a square that
   crosses the border is shifted back inside, so it stays square (and still holds the
   whole object) where the image is big enough; where it is not, the crop takes the
   image's whole width or height.

Each source image is found once (:mod:`dsxsd._images`), decoded once however many objects
it holds (also when several annotations name the same file), and the work is spread over
worker processes (:mod:`dsxsd._engine`; every core by default, one process for a few
images); serial and parallel runs write the same bytes. Output
goes to a temporary folder renamed into place at the end, so a failed run leaves no
manifest that lists missing files.

Image modes: JPEG output is always 8-bit RGB (alpha dropped, palettes expanded, 16-bit
scaled by ``>> 8``); PNG output keeps the modes PNG stores without loss (``1 L LA P RGB
RGBA I;16``), so PNG crops hold exactly the source's values. See :mod:`dsxsd._images`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

from PIL import Image

from . import _io
from ._engine import Failure as _Failure
from ._engine import chunks_of, resolve_workers, run_chunks
from ._images import ImageFinder, for_output, open_image
from .errors import CropOptionError, DsxsdError, ErrorPolicy, InvalidValueError, UsageError, require_path
from .annotations import (
    BOX_OUT_OF_ORDER,  # noqa: F401 - re-exported: the reasons a box is not cut, with those below
    EMPTY_BOX,  # noqa: F401
    AnnotationSet,
    BBox,
    ImageAnnotation,
    SkippedFile,
    classes_by_count,
)
from .report import nothing_produced, report_path, write_skip_report

MANIFEST_NAME = "crops.csv"
MANIFEST_COLUMNS = ("path", "class", "source", "object_index", "xmin", "ymin", "xmax", "ymax")

# Reasons an object is not cut, as they appear in CropReport and the CLI summary
# (BOX_OUT_OF_ORDER and EMPTY_BOX come from the model: BBox.fault).
OUTSIDE_IMAGE = "outside image"
BELOW_MIN_SIZE = "below min size"
DIFFICULT = "difficult"
TRUNCATED = "truncated"
FAILED_IMAGE = "image skipped"

_FORMATS = {"jpg": "JPEG", "png": "PNG"}
_UNSAFE_CHARS = frozenset('/\\<>:"|?*')
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in "123456789¹²³"]
)
_MAX_NAME_BYTES = 120

ProgressCallback = Callable[[int, int], None]

# Fewer source images than this are cut in this process: a first pool's workers import
# Pillow and numpy before they cut anything, which a few images do not repay (the
# figures are in benchmarks/README.md).
PARALLEL_MIN_IMAGES = 128
# Source images per chunk handed to a worker.
_CHUNK_IMAGES = (1, 16)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Pad:
    """Padding on each side: ``value`` times the box's width/height, or ``value`` pixels."""

    value: float = 0.0
    unit: Literal["fraction", "px"] = "fraction"

    def pixels(self, length: int) -> int:
        if self.unit == "px":
            return int(self.value)
        return int(math.floor(self.value * length + 0.5))


def parse_pad(value: Pad | float | int | str | None) -> Pad:
    """``0.1`` or ``"10%"`` (a fraction of the box per side) or ``"8px"`` (pixels per side).

    A bare number above 1 is refused: ``--pad 8`` is almost always meant as pixels.
    """
    if value is None:
        return Pad()
    if isinstance(value, Pad):
        return value
    text = str(value).strip().lower()
    try:
        if text.endswith("px"):
            number = float(text[:-2])
            if not number.is_integer() or number < 0:
                raise UsageError(f"pad {value!r}: pixels must be a whole number >= 0")
            return Pad(number, "px")
        if text.endswith("%"):
            number = float(text[:-1]) / 100
        else:
            number = float(text)
            if number > 1:
                raise UsageError(
                    f"pad {value!r} would be {number:g} times the box on each side; "
                    f"write {text}px for pixels or {number * 100:g}% if you mean it"
                )
    except ValueError as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(
            f"pad {value!r} is not a fraction (0.1), a percentage (10%) or pixels (8px)"
        ) from None
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"pad {value!r} must be >= 0")
    return Pad(number, "fraction")


def _parse_ext(ext: str) -> str:
    key = ext.strip().lower().lstrip(".")
    key = "jpg" if key == "jpeg" else key
    if key not in _FORMATS:
        raise UsageError(f"ext {ext!r}: choose jpg or png")
    return key


# --------------------------------------------------------------------------- geometry


def _grow(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    """Widen ``[lo, hi)`` to ``side`` around its centre, kept inside ``[0, limit)``."""
    if side >= limit:
        return 0, limit  # as square as the image allows
    extra = side - (hi - lo)
    lo, hi = lo - extra // 2, hi + (extra - extra // 2)
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return lo, hi


def crop_box(
    bbox: BBox,
    width: int,
    height: int,
    *,
    pad: Pad | float | str | None = None,
    square: bool = False,
    min_size: int = 0,
) -> tuple[int, int, int, int] | str:
    """The integer box to cut from a ``width`` x ``height`` image, or the reason to skip.

    The steps are in the module docstring. The result is never empty.
    """
    pad = parse_pad(pad)
    if not (bbox.xmax > bbox.xmin and bbox.ymax > bbox.ymin):
        return bbox.fault()  # type: ignore[return-value]  # not None for such a box
    left = max(math.floor(bbox.xmin), 0)
    top = max(math.floor(bbox.ymin), 0)
    right = min(math.ceil(bbox.xmax), width)
    bottom = min(math.ceil(bbox.ymax), height)
    if right <= left or bottom <= top:
        return OUTSIDE_IMAGE
    box_w, box_h = right - left, bottom - top
    if min(box_w, box_h) < min_size:
        return BELOW_MIN_SIZE
    pad_x, pad_y = pad.pixels(box_w), pad.pixels(box_h)
    left, right = max(left - pad_x, 0), min(right + pad_x, width)
    top, bottom = max(top - pad_y, 0), min(bottom + pad_y, height)
    if square:
        side = max(right - left, bottom - top)
        left, right = _grow(left, right, side, width)
        top, bottom = _grow(top, bottom, side, height)
    return left, top, right, bottom


# --------------------------------------------------------------------------- naming


def safe_name(name: str) -> str:
    """A file or folder name that is safe on Linux, macOS and Windows.

    Separators, ``<>:"|?*`` and control/format characters become ``_``; surrounding
    white space and trailing dots go (Windows drops them); a leading dot becomes ``_``
    (no hidden files, no ``.``/``..``); reserved Windows device names (``CON``, ``NUL``,
    ``COM1``...) get a ``_`` prefix; the result is NFC and at most 120 UTF-8 bytes. Two
    names may come out alike: :func:`class_folders` tells them apart.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        "_" if ch in _UNSAFE_CHARS or unicodedata.category(ch)[0] == "C" else ch for ch in text
    )
    text = text.strip().rstrip(". ")
    if text.startswith("."):
        text = "_" + text[1:]
    if not text:
        text = "_"
    if text.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        text = "_" + text
    while len(text.encode("utf-8")) > _MAX_NAME_BYTES:
        text = text[:-1]
    return text


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def _disambiguate(
    keys: Sequence[str], plain: Mapping[str, str], reserved: Iterable[str] = ()
) -> dict[str, str]:
    """A distinct name per key: its plain name where no other key (nor a reserved name)
    shares it case-insensitively, else the plain name plus a hash of the key.

    Case-insensitive because macOS and Windows file systems are. Deterministic: depends on
    the keys, not on their order.
    """
    reserved = {r.casefold() for r in reserved}
    groups: dict[str, int] = Counter(plain[k].casefold() for k in keys)
    suffixed = {k for k in keys if groups[plain[k].casefold()] > 1 or plain[k].casefold() in reserved}
    length = 8
    while True:
        names = {k: f"{plain[k]}-{_digest(k, length)}" if k in suffixed else plain[k] for k in keys}
        owners: dict[str, list[str]] = defaultdict(list)
        for key, name in names.items():
            owners[name.casefold()].append(key)
        clashes = [ks for ks in owners.values() if len(ks) > 1]
        if not clashes:
            return names
        grown = suffixed | {k for ks in clashes for k in ks}
        if grown == suffixed:
            length = min(length * 2, 64)  # hashes of different keys met; longer ones will not
        suffixed = grown


def class_folders(classes: Iterable[str]) -> dict[str, str]:
    """Class name -> folder name, distinct for distinct classes (see :func:`safe_name`).

    A class whose safe name is shared (``tv/monitor`` and ``tv_monitor``, ``Cat`` and
    ``cat``) gets a short hash of its name appended; so does one named like the manifest.
    """
    keys = list(dict.fromkeys(classes))
    return _disambiguate(keys, {k: safe_name(k) for k in keys}, reserved=[MANIFEST_NAME])


def _image_keys(images: Sequence[ImageAnnotation]) -> list[str]:
    """A key per image, distinct even when the same filename is annotated twice."""
    seen: Counter[str] = Counter()
    keys = []
    for image in images:
        name = image.filename.replace("\\", "/")
        seen[name] += 1
        keys.append(name if seen[name] == 1 else f"{name}\x00{seen[name]}")
    return keys


def crop_stems(images: Sequence[ImageAnnotation]) -> list[str]:
    """The file-name stem for each image's crops; images with the same stem (``a/img.jpg``
    and ``b/img.png``) get a hash of their filename appended so no crop overwrites another."""
    keys = _image_keys(images)
    names = _disambiguate(keys, {k: safe_name(img.stem) for k, img in zip(keys, images)})
    return [names[k] for k in keys]


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class SkippedObject:
    """An object that was not cut, and why (one of the reason constants of this module)."""

    filename: str
    object_index: int
    label: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class CropReport:
    """What a :func:`crop` run wrote and what it left out.

    ``per_class`` counts crops written for every class (most crops first, ties by name,
    zero included); ``folders`` maps each class to its folder under ``out``;
    ``skipped_objects`` lists objects not cut, ``skipped_files`` images (and annotation
    files) left out under ``on_error="skip"``, listed in ``report``; ``excluded`` counts
    objects of classes not asked for; ``warnings`` are notes such as image sizes that
    differ from the annotation's.
    """

    out: Path
    manifest: Path
    images: int
    crops: int
    per_class: Mapping[str, int]
    folders: Mapping[str, str]
    skipped_objects: tuple[SkippedObject, ...] = ()
    skipped_files: tuple[SkippedFile, ...] = ()
    excluded: int = 0
    report: Path | None = None
    warnings: tuple[str, ...] = ()

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped_objects).items()))

    def skipped_per_class(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.skipped_objects)
        return {name: counts.get(name, 0) for name in self.per_class}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``dsxsd crop --json`` prints)."""
        skipped = self.skipped_per_class()
        return {
            "out": str(self.out),
            "manifest": str(self.manifest),
            "images": self.images,
            "crops": self.crops,
            "classes": [
                {"class": name, "folder": self.folders[name], "crops": count, "skipped": skipped[name]}
                for name, count in self.per_class.items()
            ],
            "skipped_objects": len(self.skipped_objects),
            "skipped_by_reason": self.skipped_by_reason(),
            "skipped_files": len(self.skipped_files),
            "excluded": self.excluded,
            "report": None if self.report is None else str(self.report),
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- work units


@dataclass(frozen=True)
class _Cut:
    image_index: int
    object_index: int
    label: str
    bbox: BBox
    relative_path: str  # "<folder>/<stem>_<index>.<ext>"


@dataclass(frozen=True)
class _Settings:
    out: str
    pad: Pad
    square: bool
    min_size: int
    fmt: str
    quality: int
    exif_transpose: bool
    max_pixels: int | None


@dataclass(frozen=True)
class _Task:
    """One source file and every object to cut from it."""

    source: str
    cuts: tuple[_Cut, ...]
    sizes: tuple[tuple[int, int | None, int | None, str], ...]  # (image index, w, h, where)


@dataclass
class _Result:
    rows: list[tuple[int, int, tuple[Any, ...]]] = field(default_factory=list)
    skipped: list[tuple[_Cut, str, str]] = field(default_factory=list)
    size: tuple[int, int] | None = None
    failure: _Failure | None = None


_COLOUR = frozenset({"RGB", "RGBA", "RGBX", "P", "PA"})
_GREY = frozenset({"1", "L", "LA"})


def _encode(region: Image.Image, settings: _Settings) -> bytes:
    """The crop as file bytes. Conversion is per pixel, so converting the crop rather than
    the whole image gives the same pixels for less work."""
    image = for_output(region, settings.fmt)  # type: ignore[arg-type]
    options: dict[str, Any] = {}
    if settings.fmt == "JPEG":
        options["quality"] = settings.quality
    icc = region.info.get("icc_profile")
    same_space = {region.mode, image.mode} <= _COLOUR or {region.mode, image.mode} <= _GREY
    if icc and same_space:
        # Colour-managed photos keep their colours. EXIF is never copied: its orientation
        # tag would make viewers rotate crops that are already cut as wanted.
        options["icc_profile"] = icc
    buffer = io.BytesIO()
    image.save(buffer, settings.fmt, **options)
    return buffer.getvalue()


def _cut_task(task: _Task, settings: _Settings) -> _Result:
    """Decode one source once and write each of its crops. Runs in a worker process when
    ``workers > 1``; data errors come back as a :class:`_Failure`, never raised across."""
    Image.MAX_IMAGE_PIXELS = settings.max_pixels  # the caller's guard, also in a fresh worker
    result = _Result()
    try:
        image = open_image(task.source, exif_transpose=settings.exif_transpose)
    except DsxsdError as exc:
        result.failure = _Failure.of(exc)
        return result
    result.size = image.size
    out = Path(settings.out)
    source = _posix_abs(task.source)
    folders: set[Path] = set()
    for cut in task.cuts:
        box = crop_box(
            cut.bbox, image.width, image.height,
            pad=settings.pad, square=settings.square, min_size=settings.min_size,
        )
        if isinstance(box, str):
            result.skipped.append((cut, box, f"box {cut.bbox.as_tuple()} in {image.width}x{image.height}"))
            continue
        target = out / cut.relative_path
        if target.parent not in folders:
            target.parent.mkdir(exist_ok=True)
            folders.add(target.parent)
        _write_new(target, _encode(image.crop(box), settings))
        result.rows.append(
            (cut.image_index, cut.object_index,
             (cut.relative_path, cut.label, source, cut.object_index, *box))
        )
    return result


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _write_new(path: Path, data: bytes) -> None:
    """Write a file that must not exist yet (``O_EXCL``: a naming bug must fail, never
    overwrite), without the buffered file object ``open`` would build for one write."""
    fd = os.open(path, _NEW_FILE, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _cut_chunk(tasks: list[_Task], settings: _Settings) -> list[_Result]:
    return [_cut_task(task, settings) for task in tasks]


def _posix_abs(path: str) -> str:
    return Path(os.path.abspath(path)).as_posix()


# --------------------------------------------------------------------------- the API


def _load(
    annotations: AnnotationSet | str | os.PathLike[str],
    format: str | None,
    policy: ErrorPolicy,
    workers: int,
) -> tuple[AnnotationSet, list[tuple[str | None, bool]]]:
    """The annotation set and, per image, the annotation file to name in errors and
    whether that file describes this image alone (so its stem may name the image)."""
    if isinstance(annotations, AnnotationSet):
        return annotations, [(None, False)] * len(annotations.images)
    from .formats import guess_format, read

    path = Path(annotations)
    fmt = format or guess_format(path)
    loaded = read(path, fmt, on_error=policy, workers=workers)
    files: list[tuple[str | None, bool]] = [(str(path), False)] * len(loaded.images)
    if fmt == "voc":
        xml = _voc_files(path, loaded)
        if xml is not None:
            files = [(str(file), True) for file in xml]
    return loaded, files


def _voc_files(path: Path, loaded: AnnotationSet) -> list[Path] | None:
    """The ``.xml`` file of each image read from a VOC folder, by the reader's documented
    listing rule (top-level ``*.xml`` sorted by name, ``._*`` ignored, skipped files left
    out); ``None`` where the count does not match, so a wrong file is never named."""
    from .formats.voc import annotation_files

    candidates = annotation_files(path)
    skipped = {item.file for item in loaded.skipped}
    files = [file for file in candidates if str(file) not in skipped]
    return files if len(files) == len(loaded.images) else None


def _check_paths(out: Path, images: Path, source: Path | None) -> None:
    """Refuse an output folder that holds the inputs: --overwrite would delete them."""
    out_abs = Path(os.path.abspath(out))
    for name, path in (("images folder", images), ("annotations", source)):
        if path is None:
            continue
        path_abs = Path(os.path.abspath(path))
        if path_abs == out_abs or out_abs in path_abs.parents:
            raise UsageError(
                f"the output folder {out} holds the {name} {path}; choose another --out"
            )


@dataclass
class _Plan:
    """What to cut from which file, decided before any image is decoded."""

    tasks: list[_Task]
    skipped_objects: list[tuple[int, SkippedObject]]
    skipped_files: list[SkippedFile]
    excluded: int


def _plan(
    dataset: AnnotationSet,
    finder: ImageFinder,
    *,
    files: Sequence[tuple[str | None, bool]],
    folders: Mapping[str, str],
    wanted: Sequence[str] | None,
    skip_difficult: bool,
    skip_truncated: bool,
    ext: str,
    policy: ErrorPolicy,
) -> _Plan:
    """Choose the objects to cut and find their images, grouping objects by the file they
    come from so that each file is decoded once. Images with nothing to cut are not looked
    for: a missing image that is not needed is no error."""
    stems = crop_stems(dataset.images)
    plan = _Plan([], [], policy.skipped, 0)
    policy.skipped[:0] = dataset.skipped
    by_source: dict[str, tuple[list[_Cut], list[tuple[int, int | None, int | None, str]]]] = {}
    for index, image in enumerate(dataset.images):
        cuts = []
        for obj_index, obj in enumerate(image.objects):
            if wanted is not None and obj.label not in wanted:
                plan.excluded += 1
                continue
            reason = DIFFICULT if skip_difficult and obj.difficult else (
                TRUNCATED if skip_truncated and obj.truncated else None
            )
            if reason:
                plan.skipped_objects.append(
                    (index, SkippedObject(image.filename, obj_index, obj.label, reason))
                )
                continue
            name = f"{folders[obj.label]}/{stems[index]}_{obj_index}.{ext}"
            cuts.append(_Cut(index, obj_index, obj.label, obj.bbox, name))
        if not cuts:
            continue
        where, per_image = files[index]
        try:
            found = finder.find(
                image.filename, path=image.path, annotation_file=where, per_image_file=per_image
            )
        except DsxsdError as exc:
            policy.failed(exc, exc.file or image.filename)
            plan.skipped_objects.extend(
                (index, SkippedObject(image.filename, c.object_index, c.label, FAILED_IMAGE))
                for c in cuts
            )
            continue
        entry = by_source.setdefault(str(found), ([], []))
        entry[0].extend(cuts)
        entry[1].append((index, image.width, image.height, image.filename))
    plan.tasks = [_Task(src, tuple(cuts), tuple(sizes)) for src, (cuts, sizes) in by_source.items()]
    return plan


def _validate_classes(classes: Iterable[str] | None, known: Sequence[str]) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    wanted = list(dict.fromkeys(c.strip() for c in classes if c.strip()))
    if not wanted:
        raise UsageError("classes is empty; name at least one class")
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise UsageError(f"unknown classes {unknown!r}; the annotations have {list(known)!r}")
    return wanted


def _whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
        high is not None and value > high
    ):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise UsageError(f"{name} must be a whole number {bounds}, got {value!r}")
    return value


def crop(
    annotations: AnnotationSet | str | os.PathLike[str],
    *,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    format: str | None = None,
    pad: Pad | float | str | None = None,
    square: bool = False,
    min_size: int = 0,
    skip_difficult: bool = False,
    skip_truncated: bool = False,
    classes: Iterable[str] | str | None = None,
    ext: str = "jpg",
    quality: int = 95,
    workers: int | None = 1,
    exif_transpose: bool = False,
    on_error: Literal["raise", "skip"] = "raise",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> CropReport:
    """Cut every annotated object into ``out/<class folder>/`` and write ``out/crops.csv``.

    ``annotations`` is an :class:`AnnotationSet` or a path read with :func:`dsxsd.read`
    (``format`` guessed from it when not given). Images are looked for under ``images``
    (rules in :mod:`dsxsd._images`). ``pad`` is a fraction of the box per side (``0.1``,
    ``"10%"``) or pixels (``"8px"``); ``square`` makes square crops; ``min_size`` skips
    objects narrower or shorter than that many pixels; ``classes`` keeps only those;
    ``ext`` is ``"jpg"`` (RGB, ``quality``) or ``"png"`` (lossless). ``workers``
    processes cut the images (``None`` or ``0``: every available core, ``1``: this
    process only; 1 by default for the reason :func:`dsxsd.read` gives, while ``dsxsd
    crop`` uses every core); fewer than :data:`PARALLEL_MIN_IMAGES` source images are
    always cut in this process. Files, manifest, report and errors do not depend on
    ``workers``.
    ``exif_transpose`` applies EXIF orientation first: phone photos store rotation in a
    tag, and labelling tools differ in whether they applied it to what was labelled.

    ``on_error="raise"`` stops at the first missing, unreadable or hostile image and
    writes nothing; ``"skip"`` leaves such images out and lists them in
    ``<out>.skipped.csv``. ``out`` must not exist unless ``overwrite``. ``progress(done,
    total)`` is called as source images are finished. Bad option values raise
    :class:`~dsxsd.errors.UsageError` (a ``ValueError``). Returns a :class:`CropReport`.
    """
    policy = ErrorPolicy(on_error)
    pad, ext = parse_pad(pad), _parse_ext(ext)
    min_size = _whole("min_size", min_size, 0)
    quality = _whole("quality", quality, 1, 100)
    workers = resolve_workers(None if workers is None else _whole("workers", workers, 0))
    out, images = Path(out), require_path(images)
    if not images.is_dir():
        raise UsageError(f"images folder {images} is not a folder")
    source = None if isinstance(annotations, AnnotationSet) else require_path(annotations)
    _check_paths(out, images, source)
    _io.check_output(out, overwrite)  # fail before the long work, not after it

    dataset, files = _load(annotations, format, policy, workers)
    wanted = _validate_classes(classes, dataset.classes)
    _refuse_nul_classes(dataset.classes if wanted is None else wanted, source)
    folders = class_folders(dataset.classes)
    plan = _plan(
        dataset, ImageFinder(images), files=files, folders=folders,
        wanted=wanted, skip_difficult=skip_difficult, skip_truncated=skip_truncated,
        ext=ext, policy=policy,
    )
    settings = _Settings(
        out="", pad=pad, square=square, min_size=min_size, fmt=_FORMATS[ext],
        quality=quality, exif_transpose=exif_transpose, max_pixels=Image.MAX_IMAGE_PIXELS,
    )
    with _io.atomic_directory(out, overwrite) as tmp:
        rows, warnings = _execute(
            plan, dataset, replace(settings, out=str(tmp)), workers, policy, progress
        )
        if not rows and plan.skipped_files:
            # Images not found is the usual cause; annotations that all failed to read
            # the other.
            raise nothing_produced(out, plan.skipped_files, "crops", images if dataset.images else source)
        _write_manifest(tmp / MANIFEST_NAME, rows)

    report = write_skip_report(out, plan.skipped_files)
    if report is None:
        report_path(out).unlink(missing_ok=True)  # a report from an earlier run would mislead
    written = Counter(row[1] for row in rows)
    per_class = {name: written.get(name, 0) for name in dataset.classes}
    return CropReport(
        out=out,
        manifest=out / MANIFEST_NAME,
        images=len(plan.tasks),
        crops=len(rows),
        per_class={name: per_class[name] for name in classes_by_count(per_class)},
        folders=folders,
        skipped_objects=tuple(s for _, s in sorted(plan.skipped_objects, key=lambda p: (p[0], p[1].object_index))),
        skipped_files=tuple(plan.skipped_files),
        excluded=plan.excluded,
        report=report,
        warnings=tuple(warnings),
    )


def _execute(
    plan: _Plan,
    dataset: AnnotationSet,
    settings: _Settings,
    workers: int,
    policy: ErrorPolicy,
    progress: ProgressCallback | None,
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """Run the plan's tasks; return the manifest rows in annotation order, and warnings.
    Images that fail are raised or (``skip``) added to the plan's skipped lists."""
    rows: list[tuple[int, int, tuple[Any, ...]]] = []
    warnings: list[str] = []
    total = len(plan.tasks)
    if progress is not None:
        progress(0, total)
    with _results(plan.tasks, settings, workers) as results:
        for done, (task, result) in enumerate(zip(plan.tasks, results), start=1):
            if result.failure is not None:
                error = result.failure.error()
                policy.failed(error, error.file or task.source)
                result.skipped.extend((cut, FAILED_IMAGE, "") for cut in task.cuts)
            rows.extend(result.rows)
            plan.skipped_objects.extend(
                (cut.image_index, SkippedObject(
                    dataset.images[cut.image_index].filename, cut.object_index, cut.label, reason, detail
                ))
                for cut, reason, detail in result.skipped
            )
            warnings.extend(_size_warnings(task, result.size))
            if progress is not None:
                progress(done, total)
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row for _, _, row in rows], warnings


@contextlib.contextmanager
def _results(work: list[_Task], settings: _Settings, workers: int) -> Iterator[Iterable[_Result]]:
    """Yield the results in the order of ``work``, computed here or in a process pool.

    On leaving early (an error), work not started is cancelled and running work waited
    for, so no worker writes into the output folder after it is cleaned up.
    """
    where = ""
    if workers <= 1 or len(work) < PARALLEL_MIN_IMAGES:
        workers, chunks = 1, [[task] for task in work]
    else:
        chunks = chunks_of(work, workers, _CHUNK_IMAGES)
        # Absolute paths: commonpath refuses a mix of relative and absolute ones.
        where = os.path.commonpath([os.path.dirname(os.path.abspath(t.source)) for t in work])
    results = run_chunks(
        chunks, _cut_chunk, (settings,), workers, where=where, doing="cutting crops",
        wait_on_exit=True,
    )
    with contextlib.closing(results):
        yield (result for chunk in results for result in chunk)


def _size_warnings(task: _Task, size: tuple[int, int] | None) -> list[str]:
    if size is None:
        return []
    notes = []
    for _, width, height, filename in task.sizes:
        if width is None or height is None or (width, height) == size or width == 0 or height == 0:
            continue
        hint = (
            "; the annotation may assume the EXIF rotation: try --exif-transpose"
            if (height, width) == size else ""
        )
        notes.append(
            f"{filename}: annotation says {width}x{height} but {task.source} is "
            f"{size[0]}x{size[1]}; boxes were clipped to the image{hint}"
        )
    return notes


def _refuse_nul_classes(classes: Iterable[str], source: Path | None) -> None:
    # The manifest could not carry it: pandas before 3.1 (the newest for Python 3.10 is
    # 2.3) cuts a CSV cell at a NUL, which would merge the class into another, and the csv
    # module of 3.10 refuses the line.
    for name in classes:
        if "\x00" in name:
            raise InvalidValueError(
                f"class {name!r} contains a NUL character, which crops.csv cannot hold "
                "(CSV readers cut or refuse it); rename the class",
                file=source,
            )


def _write_manifest(path: Path, rows: list[tuple[Any, ...]]) -> None:
    # Quoted by hand as csv.writer of Python 3.13 quotes (QUOTE_MINIMAL, and "\r" too, as
    # pairs.csv is): before 3.13 csv.writer leaves a "\r" unquoted when lines end in "\n",
    # and readers end the row there. A class name may hold one.
    def cell(value: Any) -> str:
        text = str(value)
        if "," in text or '"' in text or "\n" in text or "\r" in text:
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = [",".join(MANIFEST_COLUMNS)]
    lines.extend(",".join(map(cell, row)) for row in rows)
    _io.write_text(path, "\n".join(lines) + "\n")


__all__ = [
    "MANIFEST_COLUMNS",
    "MANIFEST_NAME",
    "CropOptionError",
    "CropReport",
    "Pad",
    "SkippedObject",
    "class_folders",
    "crop",
    "crop_box",
    "crop_stems",
    "parse_pad",
    "safe_name",
]
