"""``dsxsd validate``, ``stats`` and ``ls``: look at a dataset before training on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ._common import json_option, overwrite_option, print_json, print_table


@click.command("validate")
@click.argument("annotations", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", default=None, help="Input format (guessed from the path).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Images folder: check that each image exists and its size matches.")
@click.option("--classes", "classes_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="classes.txt, one name a line: other classes are errors.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Pixels a box may reach past the image edge.")
@json_option
def validate_command(annotations, fmt, images, classes_file, tolerance, as_json):
    """Check ANNOTATIONS: box order and area, boxes outside the image, image sizes, missing
    images, unknown classes, duplicate boxes, unreadable files.

    Prints one line per problem and a summary; exits 1 when any error is found (warnings
    alone exit 0).
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


@click.command("ls")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--ext", default=None,
              help="Comma-separated extensions to list, e.g. .jpg,.png (default: images).")
@click.option("--absolute", is_flag=True, help="Print absolute paths instead of relative.")
def ls_command(root, ext, absolute):
    """List image files under ROOT recursively, sorted, one per line (relative to ROOT)."""
    from ..listing import DEFAULT_EXTENSIONS, list_images

    extensions = [e for e in ext.split(",") if e.strip()] if ext else DEFAULT_EXTENSIONS
    if not extensions:
        raise click.BadParameter("name at least one extension", param_hint="--ext")
    for line in list_images(root, extensions=extensions, absolute=absolute):
        click.echo(line)


@click.command("stats")
@click.argument("annotations", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", default=None, help="Input format (guessed from the path).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw class counts and box-size histograms into this PNG.")
@overwrite_option
@json_option
def stats_command(annotations, fmt, plot, overwrite, as_json):
    """Count images, objects and classes in ANNOTATIONS; box size and aspect quantiles."""
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


@click.command("draw")
@click.argument("annotations", type=click.Path(exists=True, path_type=Path))
@click.option("--images", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding the annotated images.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for one PNG preview per image.")
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path),
              help="Contact sheet PNG of the first --limit images.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Draw only the first N images (default: all; 16 with only --grid).")
@click.option("--format", "fmt", default=None, help="Input format (guessed from the path).")
@overwrite_option
def draw_command(annotations, images, out, grid, limit, fmt, overwrite):
    """Draw each image's boxes and class names (one colour per class) into previews."""
    from ..drawing import draw

    if out is None and grid is None:
        raise click.UsageError("give --out, --grid or both")
    if limit is None and out is None:
        limit = 16
    report = draw(annotations, images, out, format=fmt, grid=grid, limit=limit,
                  overwrite=overwrite)
    for skip in report.skipped:
        click.echo(f"skipped {skip.file}: {skip.reason}", err=True)
    if out is not None:
        click.echo(f"{len(report.written)} preview(s) in {out}")
    if grid is not None:
        click.echo(f"grid: {grid}")


@click.command("draw-pairs")
@click.argument("pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Sheet PNG to write.")
@click.option("--count", type=click.IntRange(min=1), default=8, show_default=True,
              help="Pairs of each kind to show.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@overwrite_option
def draw_pairs_command(pairs, out, count, seed, overwrite):
    """Show sample same-class (label 1, green, left) and different-class (label 0, red,
    right) pairs of a make-pairs manifest side by side in one PNG."""
    from ..drawing import draw_pairs

    same, different = draw_pairs(pairs, out, count=count, seed=seed, overwrite=overwrite)
    click.echo(f"{same} same and {different} different pair(s) in {out}")


COMMANDS = [validate_command, stats_command, draw_command, draw_pairs_command, ls_command]
