"""``dsxsd validate``, ``stats`` and ``ls``: look at a dataset before training on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

import click

from ._common import format_option, input_path, json_option, overwrite_option, print_json, print_table


@click.command("validate", short_help="Check annotations for bad boxes, sizes, classes and files.")
@click.argument("annotations", type=input_path())
@format_option()
@click.option("--images", type=input_path(file_okay=False),
              help="Images folder: check that each image exists and its size matches.")
@click.option("--classes", "classes_file", type=input_path(dir_okay=False), help="classes.txt, one name a line: other classes are errors.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Pixels a box may reach past the image edge.")
@json_option
def validate_command(annotations, fmt, images, classes_file, tolerance, as_json):
    """Check ANNOTATIONS: box order and area, boxes outside the image, image sizes, missing
    images, unknown classes, duplicate boxes, unreadable files.

    Prints one line per problem and a summary; exits 1 when any error is found (warnings
    alone exit 0).

    \b
    dsxsd validate Annotations/ --images JPEGImages/ --classes classes.txt
    dsxsd validate labels.csv --tolerance 1 --json > problems.json
    """
    from ..validation import read_class_list, validate

    classes = read_class_list(classes_file) if classes_file else None
    problems = validate(annotations, format=fmt, images=images, classes=classes,
                        tolerance=tolerance)
    errors = sum(p.severity == "error" for p in problems)
    if as_json:
        print_json({"errors": errors, "warnings": len(problems) - errors,
                    "problems": [p.to_dict() for p in problems]})
    else:
        for problem in problems:
            click.echo(str(problem))
        counts = Counter((p.check, p.severity) for p in problems)
        if counts:
            print_table(["check", "severity", "count"],
                        [(c, s, n) for (c, s), n in sorted(counts.items())])
        click.echo(f"{errors} error(s), {len(problems) - errors} warning(s)")
    if errors:
        raise SystemExit(1)


@click.command("ls", short_help="List image files under a folder, sorted, one per line.")
@click.argument("root", type=input_path(file_okay=False))
@click.option("--ext", default=None,
              help="Comma-separated extensions to list, e.g. .jpg,.png (default: images).")
@click.option("--absolute", is_flag=True, help="Print absolute paths instead of relative.")
@json_option
def ls_command(root, ext, absolute, as_json):
    """List image files under ROOT recursively, sorted, one per line (relative to ROOT).

    \b
    dsxsd ls JPEGImages/ > files.txt
    dsxsd ls photos/ --ext .jpg,.png --absolute
    """
    from ..listing import DEFAULT_EXTENSIONS, list_images

    extensions = [e for e in ext.split(",") if e.strip()] if ext else DEFAULT_EXTENSIONS
    if not extensions:
        raise click.BadParameter("name at least one extension", param_hint="--ext")
    files = list_images(root, extensions=extensions, absolute=absolute)
    if as_json:
        print_json({"root": str(root), "files": len(files), "paths": files})
        return
    for line in files:
        click.echo(line)


@click.command("stats", short_help="Count images, objects and classes; box size quantiles.")
@click.argument("annotations", type=input_path())
@format_option()
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw class counts and box-size histograms into this PNG.")
@overwrite_option
@json_option
def stats_command(annotations, fmt, plot, overwrite, as_json):
    """Count images, objects and classes in ANNOTATIONS; box size and aspect quantiles.

    \b
    dsxsd stats labels.csv
    dsxsd stats Annotations/ --plot stats.png --json
    """
    from ..statistics import dataset_stats, plot_stats

    stats = dataset_stats(annotations, format=fmt, include_boxes=plot is not None)
    if plot is not None:
        plot_stats(stats, plot, overwrite=overwrite)
        del stats["boxes"]
    if as_json:
        print_json(stats)
        return
    click.echo(f"images: {stats['images']} ({stats['images_without_objects']} without objects)")
    click.echo(f"objects: {stats['objects']}")
    if stats["classes"]:
        print_table(["class", "objects", "images"],
                    [(name, c["objects"], c["images"]) for name, c in stats["classes"].items()])
    keys = ("objects_per_image", "box_width", "box_height", "box_area", "box_aspect")
    rows = [(key, *stats[key].values()) for key in keys if stats[key] is not None]
    if rows:
        click.echo("")
        print_table(["quantile", *stats["objects_per_image"].keys()], rows)
    if plot is not None:
        click.echo(f"plot: {plot}")


@click.command("draw", short_help="Draw each image's boxes and class names into PNG previews.")
@click.argument("annotations", type=input_path())
@click.option("--images", required=True,
              type=input_path(file_okay=False), help="Folder holding the annotated images.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for one PNG preview per image.")
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path),
              help="Contact sheet PNG of the first --limit images.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Draw only the first N images (default: all; 16 with only --grid).")
@format_option()
@overwrite_option
@json_option
def draw_command(annotations, images, out, grid, limit, fmt, overwrite, as_json):
    """Draw each image's boxes and class names (one colour per class) into previews.

    Images that cannot be found or read are skipped and named on stderr; exits 1 when
    none can be drawn.

    \b
    dsxsd draw labels.csv --images JPEGImages/ --out previews/
    dsxsd draw Annotations/ --images JPEGImages/ --grid sheet.png --limit 16
    """
    from ..drawing import draw

    if out is None and grid is None:
        raise click.UsageError("give --out, --grid or both")
    if limit is None and out is None:
        limit = 16
    report = draw(annotations, images, out, format=fmt, grid=grid, limit=limit,
                  overwrite=overwrite)
    if as_json:
        print_json({
            "out": None if out is None else str(out), "previews": len(report.written),
            "grid": report.grid, "skipped": [asdict(s) for s in report.skipped],
        })
        return
    for skip in report.skipped:
        click.echo(f"skipped {skip.file}: {skip.reason}", err=True)
    if out is not None:
        click.echo(f"{len(report.written)} preview(s) in {out}")
    if grid is not None:
        click.echo(f"grid: {grid}")


@click.command("draw-pairs", short_help="Show sample same- and different-class pairs in one PNG.")
@click.argument("pairs", type=input_path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Sheet PNG to write.")
@click.option("--count", type=click.IntRange(min=1), default=8, show_default=True,
              help="Pairs of each kind to show.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@overwrite_option
@json_option
def draw_pairs_command(pairs, out, count, seed, overwrite, as_json):
    """Show sample same-class (label 1, green, left) and different-class (label 0, red,
    right) pairs of a make-pairs manifest side by side in one PNG.

    \b
    dsxsd draw-pairs pairs.csv --out pairs.png
    dsxsd draw-pairs pairs.csv --out pairs.png --count 4 --seed 1
    """
    from ..drawing import draw_pairs

    same, different = draw_pairs(pairs, out, count=count, seed=seed, overwrite=overwrite)
    if as_json:
        print_json({"out": str(out), "same": same, "different": different})
        return
    click.echo(f"{same} same and {different} different pair(s) in {out}")


COMMANDS = [validate_command, stats_command, draw_command, draw_pairs_command, ls_command]
