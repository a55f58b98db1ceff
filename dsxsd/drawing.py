"""``dsxsd draw``: previews of images with their boxes and class names, and a contact sheet.

Colours come from a fixed palette by class index, so a class keeps its colour across runs
and across previews of the same dataset. Labels use Pillow's default font, sized for what
is looked at: the image itself in a preview, the cell in a contact sheet (an image is
scaled into its cell before its labels are drawn, so a large photo's labels do not shrink
away). A name the font cannot render (some Unicode scripts) falls back to the class index,
and the box is drawn either way.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ._images import ImageFinder, open_image, to_rgb
from ._io import atomic_directory, check_output, write_bytes
from .errors import DsxsdError, require_path
from .annotations import AnnotationSet, SkippedFile, classes_in_order

# Tableau 10: distinct, readable on photos, colour-blind friendlier than pure RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)

# A contact sheet bigger than this is no longer something to look at.
GRID_LIMIT = 64
GRID_TILE = 256
LABEL_SIZE = 14  # pixels, on a preview at the image's own size


def _label_size(cell: int) -> int:
    """The font size of labels in a ``cell`` x ``cell`` tile: 16 px in a 256 px one."""
    return max(10, cell // 16)


@dataclass(frozen=True)
class DrawReport:
    """What ``draw`` wrote and which images it could not draw (and why)."""

    written: tuple[str, ...]
    skipped: tuple[SkippedFile, ...]
    grid: str | None = None


@functools.lru_cache(maxsize=None)
def _font(size: int = LABEL_SIZE):
    return ImageFont.load_default(size=size)  # scalable since Pillow 10.1


def _text(draw: ImageDraw.ImageDraw, xy, text: str, fallback: str, font, colour) -> None:
    for candidate in (text, fallback):
        try:
            left, top, right, bottom = draw.textbbox(xy, candidate, font=font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
            draw.text(xy, candidate, fill=(255, 255, 255), font=font)
            return
        except (UnicodeEncodeError, UnicodeError, ValueError, OSError):
            continue


def render(image: Image.Image, objects, class_index: dict[str, int], *,
           fit: int | None = None) -> Image.Image:
    """A copy of ``image`` (RGB) with each object's box and class name drawn on it.

    With ``fit`` (a contact sheet's cell), the image is first scaled down to fit
    ``fit`` x ``fit``, its boxes with it, and the labels are sized for the cell, so they
    read the same on the sheet whatever the size of the image.
    """
    canvas = to_rgb(image).copy()
    size = LABEL_SIZE
    if fit is not None:
        canvas.thumbnail((fit, fit))
        size = _label_size(fit)
    sx, sy = canvas.width / image.width, canvas.height / image.height
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    width = max(2, round(max(canvas.size) / 300))
    for obj in objects:
        index = class_index.get(obj.label, len(class_index))
        colour = PALETTE[index % len(PALETTE)]
        b = obj.bbox
        box = (min(b.xmin, b.xmax) * sx, min(b.ymin, b.ymax) * sy,
               max(b.xmin, b.xmax) * sx, max(b.ymin, b.ymax) * sy)
        draw.rectangle(box, outline=colour, width=width)
        _text(draw, (box[0] + width, max(0, box[1] - size - 2)), obj.label, f"#{index}", font, colour)
    return canvas


def contact_sheet(tiles: list[Image.Image], *, columns: int = 4, tile: int = 256) -> Image.Image:
    """Tiles scaled to fit ``tile`` x ``tile`` cells, laid out row by row on white."""
    rows = max(1, -(-len(tiles) // columns))
    sheet = Image.new("RGB", (columns * tile, rows * tile), (255, 255, 255))
    for n, image in enumerate(tiles):
        thumb = image.copy()
        thumb.thumbnail((tile - 4, tile - 4))
        x, y = (n % columns) * tile, (n // columns) * tile
        sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
    return sheet


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _nothing_drawn(annotations, images, skipped: list[SkippedFile]) -> DsxsdError:
    if not skipped:
        where = None if isinstance(annotations, AnnotationSet) else annotations
        return DsxsdError("no images to draw: the annotations list none", file=where)
    return DsxsdError(
        f"none of the {len(skipped)} images could be drawn (first: {skipped[0].reason})",
        file=images,
    )


def draw(
    annotations: str | os.PathLike[str] | AnnotationSet,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    format: str | None = None,
    grid: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    overwrite: bool = False,
) -> DrawReport:
    """Draw boxes on the first ``limit`` images (all by default) into ``out/<stem>.png``
    and/or a contact sheet of the first ``GRID_LIMIT`` of them at ``grid``. Missing or
    undecodable images are skipped and
    listed in the report, so one bad file does not hide the rest; when no image can be
    drawn, a :class:`DsxsdError` naming ``images`` is raised and nothing is written."""
    if out is None and grid is None:
        raise DsxsdError("nothing to write: give an output folder or a grid file")
    if out is not None:
        check_output(Path(out), overwrite)
    if grid is not None:
        check_output(Path(grid), overwrite)
    if isinstance(annotations, AnnotationSet):
        dataset, source = annotations, None
    else:
        from .formats import read

        dataset, source = read(annotations, format), str(annotations)
    classes = dataset.classes or classes_in_order(dataset.images)
    class_index = {name: i for i, name in enumerate(classes)}
    finder = ImageFinder(require_path(images))
    per_image = source is not None and Path(source).is_dir()
    chosen = dataset.images[:limit] if limit is not None else dataset.images
    skipped: list[SkippedFile] = []
    written: list[str] = []
    # Only thumbnails stay in memory for the grid, so previewing a large dataset streams.
    tiles: list[Image.Image] = []
    used: set[str] = set()
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(atomic_directory(out, overwrite)) if out is not None else None
        for image in chosen:
            try:
                found = finder.find(image.filename, path=image.path, annotation_file=source,
                                    per_image_file=per_image)
                original = open_image(found)
                picture = render(original, image.objects, class_index) if folder is not None else None
                tile = None
                if grid is not None and len(tiles) < GRID_LIMIT:
                    # Drawn at the cell's size (less contact_sheet's margin), not shrunk.
                    tile = render(original, image.objects, class_index, fit=GRID_TILE - 4)
            except DsxsdError as exc:
                skipped.append(SkippedFile(image.filename, str(exc)))
                continue
            if folder is not None:
                stem = Path(image.filename.replace("\\", "/")).stem or "image"
                name, n = f"{stem}.png", 1
                while name in used:  # two images named alike in different folders
                    name, n = f"{stem}_{n}.png", n + 1
                used.add(name)
                (folder / name).write_bytes(_png(picture))
                written.append(str(Path(out) / name))
            if tile is not None:
                tiles.append(tile)
        if len(skipped) == len(chosen):
            # Raised inside the stack, so that no empty folder or blank grid is left.
            raise _nothing_drawn(annotations, images, skipped)
    if grid is not None:
        write_bytes(grid, _png(contact_sheet(tiles, tile=GRID_TILE)), overwrite)
    return DrawReport(tuple(written), tuple(skipped), None if grid is None else str(grid))


__all__ = ["draw", "DrawReport", "render", "contact_sheet", "PALETTE"]


_SAME, _DIFFERENT = (44, 160, 44), (214, 39, 40)


def _shortened(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _caption(draw: ImageDraw.ImageDraw, band, text: str, font) -> None:
    """``text`` centred in ``band`` in dark ink, shortened with "..." to fit its width."""
    left, top, right, bottom = band
    for candidate in (text, text.encode("ascii", "replace").decode()):
        try:
            shown = _shortened(draw, candidate, font, right - left - 4)
            draw.text(((left + right) / 2, (top + bottom) / 2), shown, fill=(20, 20, 20),
                      font=font, anchor="mm")
            return
        except (UnicodeError, ValueError, OSError):  # a font without the name's script
            continue


def draw_pairs(
    pairs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    count: int = 8,
    seed: int = 0,
    tile: int = 128,
    overwrite: bool = False,
) -> tuple[int, int]:
    """A PNG sheet of up to ``count`` same-class pairs (left column, green frame) and
    ``count`` different-class pairs (right column, red frame), sampled with ``seed`` so the
    same manifest and seed give the same sheet; each image is captioned with its class.
    Returns (same shown, different shown)."""
    from .manifests import read_pairs

    check_output(Path(out), overwrite)
    pairs = Path(pairs)
    frame = read_pairs(pairs, check_files=True)
    groups = []
    for label in (1, 0):
        rows = frame[frame["label"] == label]
        groups.append(rows.sample(n=min(count, len(rows)), random_state=seed))
    height = max(1, max(len(g) for g in groups))
    font = _font(_label_size(tile))
    caption = _label_size(tile) + 6  # the band under each image that names its class
    sheet = Image.new("RGB", (2 * (2 * tile + 8), height * (tile + caption + 8)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for column, (rows, colour) in enumerate(zip(groups, (_SAME, _DIFFERENT))):
        for n, row in enumerate(rows.itertuples(index=False)):
            x, y = column * (2 * tile + 8), n * (tile + caption + 8)
            draw.rectangle((x, y, x + 2 * tile + 7, y + tile + caption + 7), fill=colour)
            for side, (name, label) in enumerate(((row.left, row.left_class), (row.right, row.right_class))):
                thumb = to_rgb(open_image(pairs.parent / name)).copy()
                thumb.thumbnail((tile, tile))
                left = x + 4 + side * tile
                sheet.paste(thumb, (left + (tile - thumb.width) // 2, y + 4 + (tile - thumb.height) // 2))
                band = (left + 1, y + 4 + tile, left + tile - 2, y + 4 + tile + caption - 1)
                draw.rectangle(band, fill=(255, 255, 255))
                _caption(draw, band, str(label), font)
    write_bytes(out, _png(sheet), overwrite)
    return len(groups[0]), len(groups[1])


__all__ += ["draw_pairs"]
