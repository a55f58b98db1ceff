"""``dsxsd convert``: annotations from one registered format to another."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import input_path, json_option, on_error_option, overwrite_option, print_json


def _pairs_help() -> str:
    from ..formats import format_names

    readable = format_names(readable=True)
    writable = format_names(writable=True)
    pairs = [f"{a}2{b}" for a in readable for b in writable if a != b]
    return (
        f"Formats: {', '.join(readable)}.\n\n"
        f"Conversions: {', '.join(pairs)}."
    )


class _ConvertCommand(click.Command):
    """Lists the conversions from the registry when help is shown, not at import."""

    def get_short_help_str(self, limit: int = 45) -> str:
        # The line `dsxsd --help` shows: the formats, so a user sees what converts.
        from ..formats import format_names

        return f"Convert annotations between formats: {', '.join(format_names())}."

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for paragraph in _pairs_help().split("\n\n"):
            formatter.write_text(paragraph)
            formatter.write_paragraph()


def _parse(args: tuple[str, ...], source: str | None, target: str | None):
    from ..formats import get_format

    if source or target:
        if not (source and target):
            raise click.UsageError("--from and --to go together")
        if len(args) != 2:
            raise click.UsageError("with --from/--to, give INPUT and OUTPUT")
        # Both names before reading anything: a typo in --to must not cost a long read.
        get_format(source), get_format(target)
        return source, target, args[0], args[1]
    if len(args) != 3:
        raise click.UsageError("give SRC2DST INPUT OUTPUT, e.g. 'dsxsd convert voc2csv Annotations/ labels.csv'")
    pair = args[0].lower()
    if pair.count("2") != 1:
        raise click.UsageError(f"{args[0]!r} is not a conversion like voc2csv")
    source, target = pair.split("2")
    get_format(source), get_format(target)  # unknown names: a usage error listing them
    return source, target, args[1], args[2]


@click.command("convert", cls=_ConvertCommand)
@click.argument("args", nargs=-1, metavar="[SRC2DST] INPUT OUTPUT")
@click.option("--from", "source", metavar="FORMAT", help="Input format (instead of SRC2DST).")
@click.option("--to", "target", metavar="FORMAT", help="Output format (instead of SRC2DST).")
@click.option(
    "--columns",
    type=click.Choice(["full", "basic"]),
    default="full",
    show_default=True,
    help="csv output: 'basic' writes only filename,width,height,class,xmin,ymin,xmax,ymax.",
)
@click.option(
    "--images",
    type=input_path(file_okay=False),
    help="voc input: where to read image sizes from (headers only) when <size> is "
    "missing (default: beside the XML files). yolo input: the images whose headers give "
    "the sizes (default: the 'images' twin of a 'labels' folder, then the label folder). "
    "yolo output: where to read the sizes of images the input gives none for.",
)
@click.option(
    "--shapes-as-boxes",
    is_flag=True,
    help="labelme input: convert polygons, circles... to their bounding box instead of "
    "skipping them.",
)
@click.option(
    "--one-based",
    is_flag=True,
    help="coco input or output: VOC corners are 1-based inclusive pixel indices; shift "
    "them (x = xmin - 1, w = xmax - xmin + 1) when writing COCO, and back when reading.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Processes reading a folder of per-image files (voc). Default (0): all cores; "
    "1: no extra processes. Small folders are always read in one process. The output "
    "does not depend on it.",
)
@overwrite_option
@on_error_option
@json_option
def convert(
    args, source, target, columns, images, shapes_as_boxes, one_based, workers, overwrite,
    on_error, as_json,
) -> None:
    """Convert annotations between formats.

    \b
    dsxsd convert voc2csv Annotations/ labels.csv
    dsxsd convert --from csv --to voc labels.csv Annotations/
    """
    from ..conversion import convert as convert_annotations

    source, target, input_path, output_path = _parse(args, source, target)
    if one_based and "coco" not in (source, target):
        raise click.UsageError("--one-based applies to coco input or output only")
    read_options = {"images": images} if images and source in ("voc", "yolo") else {}
    if shapes_as_boxes and source == "labelme":
        read_options["shapes_as_boxes"] = True
    if one_based and source == "coco":
        read_options["one_based"] = True
    write_options = {"columns": columns} if target == "csv" else {}
    if images and target == "yolo":
        write_options["images"] = images
    if one_based and target == "coco":
        write_options["one_based"] = True
    done = convert_annotations(
        input_path, output_path, source, target, on_error=on_error, workers=workers,
        overwrite=overwrite, read_options=read_options, write_options=write_options,
    )
    # Said after the write succeeded, so a failed run still prints only its error line.
    if done.lost and not as_json:
        click.echo(
            f"warning: {target} cannot hold {', '.join(done.lost)}; "
            "these are not in the output",
            err=True,
        )
    summary = {
        "from": source,
        "to": target,
        "input": str(input_path),
        "output": str(output_path),
        "images": done.images,
        "objects": done.objects,
        "classes": done.classes,
        "skipped": len(done.skipped),
        "report": done.report,
        "lost": list(done.lost),
    }
    if as_json:
        print_json(summary)
        return
    click.echo(
        f"{source} -> {target}: {summary['images']} images, {summary['objects']} objects, "
        f"{summary['classes']} classes written to {Path(output_path)}"
    )
    if done.report is not None:
        click.echo(f"skipped {summary['skipped']} files; reasons in {done.report}", err=True)


COMMANDS = [convert]
