"""``dsxsd draw``: previews of images with their boxes and class names, and a contact sheet.

Colours come from a fixed palette by class index, so a class keeps its colour across runs
and across previews of the same dataset. Labels use Pillow's default font; a name the font
cannot render (some Unicode scripts) falls back to the class index, and the box is drawn
either way.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ._images import ImageFinder, open_image, to_rgb
from ._io import atomic_directory, check_output, write_bytes
from .errors import DsxsdError, require_path
from .model import AnnotationSet, SkippedFile, classes_in_order

# Tableau 10: distinct, readable on photos, colour-blind friendlier than pure RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)

# A contact sheet bigger than this is no longer something to look at.
GRID_LIMIT = 64
GRID_TILE = 256


@dataclass(frozen=True)
class DrawReport:
    """What ``draw`` wrote and which images it could not draw (and why)."""

    written: tuple[str, ...]
    skipped: tuple[SkippedFile, ...]
    grid: str | None = None


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable
    except TypeError:
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, xy, text: str, fallback: str, font, colour) -> None:
    for candidate in (text, fallback):
        try:
            left, top, right, bottom = draw.textbbox(xy, candidate, font=font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=colour)
            draw.text(xy, candidate, fill=(255, 255, 255), font=font)
            return
        except (UnicodeEncodeError, UnicodeError, ValueError, OSError):
            continue


def render(image: Image.Image, objects, class_index: dict[str, int]) -> Image.Image:
    """A copy of ``image`` (RGB) with each object's box and class name drawn on it."""
    canvas = to_rgb(image).copy()
    draw = ImageDraw.Draw(canvas)
    font = _font()
    width = max(2, round(max(canvas.size) / 300))
    for obj in objects:
        index = class_index.get(obj.label, len(class_index))
        colour = PALETTE[index % len(PALETTE)]
        b = obj.bbox
        box = (min(b.xmin, b.xmax), min(b.ymin, b.ymax), max(b.xmin, b.xmax), max(b.ymin, b.ymax))
        draw.rectangle(box, outline=colour, width=width)
        _text(draw, (box[0] + width, max(0, box[1] - 16)), obj.label, f"#{index}", font, colour)
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
                picture = render(open_image(found), image.objects, class_index)
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
            if grid is not None and len(tiles) < GRID_LIMIT:
                picture.thumbnail((GRID_TILE, GRID_TILE))
                tiles.append(picture)
        if len(skipped) == len(chosen):
            # Raised inside the stack, so that no empty folder or blank grid is left.
            raise _nothing_drawn(annotations, images, skipped)
    if grid is not None:
        write_bytes(grid, _png(contact_sheet(tiles, tile=GRID_TILE)), overwrite)
    return DrawReport(tuple(written), tuple(skipped), None if grid is None else str(grid))


__all__ = ["draw", "DrawReport", "render", "contact_sheet", "PALETTE"]


_SAME, _DIFFERENT = (44, 160, 44), (214, 39, 40)


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
    same manifest and seed give the same sheet. Returns (same shown, different shown)."""
    from .manifests import read_pairs

    check_output(Path(out), overwrite)
    pairs = Path(pairs)
    frame = read_pairs(pairs, check_files=True)
    groups = []
    for label in (1, 0):
        rows = frame[frame["label"] == label]
        groups.append(rows.sample(n=min(count, len(rows)), random_state=seed))
    height = max(1, max(len(g) for g in groups))
    sheet = Image.new("RGB", (2 * (2 * tile + 8), height * (tile + 8)), (255, 255, 255))
    for column, (rows, colour) in enumerate(zip(groups, (_SAME, _DIFFERENT))):
        for n, row in enumerate(rows.itertuples(index=False)):
            x, y = column * (2 * tile + 8), n * (tile + 8)
            ImageDraw.Draw(sheet).rectangle((x, y, x + 2 * tile + 7, y + tile + 7), fill=colour)
            for side, name in enumerate((row.left, row.right)):
                thumb = to_rgb(open_image(pairs.parent / name)).copy()
                thumb.thumbnail((tile, tile))
                sheet.paste(thumb, (x + 4 + side * tile + (tile - thumb.width) // 2,
                                    y + 4 + (tile - thumb.height) // 2))
    write_bytes(out, _png(sheet), overwrite)
    return len(groups[0]), len(groups[1])


__all__ += ["draw_pairs"]
