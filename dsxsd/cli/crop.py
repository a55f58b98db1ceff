"""``dsxsd crop``: cut every annotated object into per-class folders, with a manifest."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ._common import (
    format_option,
    input_path,
    json_option,
    on_error_option,
    overwrite_option,
    print_json,
    print_table,
    progress,
)


# A dataset photographed on one phone repeats one warning per image; a few say it all.
_SHOWN_WARNINGS = 5


class _PadType(click.ParamType):
    name = "PAD"

    def convert(self, value, param, ctx):
        from ..crops import parse_pad
        from ..errors import UsageError

        try:
            return parse_pad(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def _split_classes(ctx, param, values: tuple[str, ...]) -> list[str] | None:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if values and not names:
        raise click.BadParameter("name at least one class", ctx=ctx, param=param)
    return names or None


class _Progress:
    """Adapts the API's ``progress(done, total)`` to a bar opened once the total is known."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._advance = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if self._advance is None:
            self._advance = self._stack.enter_context(progress(total, "cropping"))
        self._advance(done - self._done)
        self._done = done


@click.command("crop", short_help="Cut every annotated object into per-class folders, with crops.csv.")
@click.argument("annotations", type=input_path())
@click.option(
    "--images", required=True, metavar="DIR",
    type=input_path(file_okay=False),
    help="Folder the images are in (looked up by filename, then by stem with any usual "
    "extension; never outside this folder).",
)
@click.option(
    "--out", default=Path("crops"), show_default=True, metavar="DIR",
    type=click.Path(file_okay=True, path_type=Path),
    help="Output folder: <class folder>/<image stem>_<object index>.<ext> and crops.csv.",
)
@format_option("format_")
@click.option(
    "--pad", type=_PadType(), default="0", show_default=True,
    help="Context added on every side: a fraction of the box (0.1 or 10%) or pixels (8px).",
)
@click.option("--square", is_flag=True, help="Grow the shorter side to a square around the box centre (shifted to stay inside the image).")
@click.option(
    "--min-size", type=click.IntRange(min=0), default=0, show_default=True, metavar="PX",
    help="Skip objects narrower or shorter than this many pixels (0: keep all).",
)
@click.option("--skip-difficult", is_flag=True, help="Skip objects marked difficult.")
@click.option("--skip-truncated", is_flag=True, help="Skip objects marked truncated.")
@click.option(
    "--classes", multiple=True, callback=_split_classes, metavar="A,B",
    help="Crop only these classes (comma-separated; may be repeated).",
)
@click.option(
    "--ext", type=click.Choice(["jpg", "png"], case_sensitive=False), default="jpg",
    show_default=True,
    help="jpg: 8-bit RGB. png: lossless, keeps grey, palette, alpha and 16-bit modes.",
)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, metavar="N",
    help="Processes cutting images in parallel. Default (0): all cores; 1: no extra "
    "processes. A few images are always cut in one process. The output does not depend "
    "on it.",
)
@click.option(
    "--exif-transpose", is_flag=True,
    help="Apply the EXIF orientation tag before cutting. Phone photos store rotation in "
    "EXIF rather than in the pixels, and labelling tools differ in whether they applied "
    "it: use this when the boxes were drawn on the upright photo.",
)
@on_error_option
@overwrite_option
@json_option
def crop_command(
    annotations, images, out, format_, pad, square, min_size, skip_difficult,
    skip_truncated, classes, ext, quality, workers, exif_transpose, on_error, overwrite,
    as_json,
) -> None:
    """Cut every annotated object out of its image into per-class folders.

    Writes OUT/<class folder>/<image stem>_<object index>.<ext> and OUT/crops.csv
    (path,class,source,object_index,xmin,ymin,xmax,ymax). Boxes are pixel corners
    (left, top, right, bottom) as LabelImg writes them; fractions are widened to whole
    pixels and every box is clipped to its image.

    \b
    dsxsd crop Annotations/ --images JPEGImages/ --out crops/
    dsxsd crop labels.csv --images images/ --pad 0.1 --square --ext png --workers 4
    """
    from ..crops import crop

    with contextlib.ExitStack() as stack:
        report = crop(
            annotations, images=images, out=out, format=format_, pad=pad, square=square,
            min_size=min_size, skip_difficult=skip_difficult, skip_truncated=skip_truncated,
            classes=classes, ext=ext.lower(), quality=quality, workers=workers,
            exif_transpose=exif_transpose, on_error=on_error, overwrite=overwrite,
            progress=_Progress(stack),
        )
    if as_json:
        print_json(report.to_dict())
        return
    skipped = report.skipped_per_class()
    print_table(
        ["class", "folder", "crops", "skipped"],
        [[name, report.folders[name], count, skipped[name]] for name, count in report.per_class.items()]
        + [["total", "", report.crops, len(report.skipped_objects)]],
    )
    reasons = ", ".join(f"{n} {reason}" for reason, n in report.skipped_by_reason().items())
    click.echo(
        f"{report.crops} crops from {report.images} images written to {report.out}"
        + (f"; skipped objects: {reasons}" if reasons else "")
    )
    for warning in report.warnings[:_SHOWN_WARNINGS]:
        click.echo(f"warning: {warning}", err=True)
    if len(report.warnings) > _SHOWN_WARNINGS:
        click.echo(
            f"warning: ... and {len(report.warnings) - _SHOWN_WARNINGS} more (see --json)", err=True
        )
    if report.report is not None:
        click.echo(
            f"skipped {len(report.skipped_files)} files; reasons in {report.report}", err=True
        )


COMMANDS = [crop_command]
