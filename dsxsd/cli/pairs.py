"""``dsxsd make-pairs``: the pairs manifest a Siamese network trains on."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import input_path, json_option, overwrite_option, print_json, print_table

# Mirrors dsxsd.pairs.SPLIT_BY without importing numpy/pandas when the CLI starts.
_SPLIT_BY = ("item", "source", "class")
_SHOWN_NAMES = 10


def _split_callback(ctx: click.Context, param: click.Parameter, value: str):
    from ..errors import UsageError
    from ..pairs import parse_split

    try:
        return parse_split(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


@click.command("make-pairs", short_help="Make same- and different-class image pairs for training.")
@click.argument("source", metavar="INPUT", type=input_path())
@click.argument("output", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--positives",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Same-class pairs per image (fewer where a class has fewer distinct pairs).",
)
@click.option(
    "--negatives-per-positive",
    type=click.FloatRange(min=0, max=1e6),
    default=1.0,
    show_default=True,
    help="Different-class pairs per positive pair, in each split (1.0: balanced).",
)
@click.option(
    "--split",
    default="0.8,0.1,0.1",
    show_default=True,
    callback=_split_callback,
    metavar="TRAIN,VAL,TEST",
    help="Fractions of the images for train, val and test; three numbers >= 0 summing to 1.",
)
@click.option(
    "--split-by",
    type=click.Choice(_SPLIT_BY),
    default="item",
    show_default=True,
    help="What stays in one split: each image (item), every crop of one source image "
    "(source; needs a crops manifest), or each class (class: train, val and test have "
    "disjoint classes, the one-shot protocol).",
)
@click.option(
    "--min-per-class",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Leave out classes with fewer images than this (they are listed as skipped).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed; the same input and seed give byte-identical output.",
)
@overwrite_option
@json_option
def make_pairs_command(
    source: Path,
    output: Path,
    positives: int,
    negatives_per_positive: float,
    split: tuple[float, float, float],
    split_by: str,
    min_per_class: int,
    seed: int,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Make positive and negative image pairs for a Siamese network.

    INPUT is a crops manifest (crops.csv from 'dsxsd crop') or a folder of class folders
    (INPUT/<class>/<image>). OUTPUT is the pairs CSV with the columns
    left,right,label,left_class,right_class,split. Label convention: 1 = same class,
    0 = different classes. Paths are relative to OUTPUT's folder. Pairs never cross
    splits, so no image is in two splits.

    \b
    dsxsd make-pairs crops/crops.csv pairs.csv
    dsxsd make-pairs omniglot/images_background/ pairs.csv --split-by class
    """
    from ..pairs import make_pairs

    if split_by == "source" and source.is_dir():
        raise click.UsageError(
            "--split-by source needs a crops manifest (crops.csv), which records each "
            "crop's source image; a folder of class folders does not"
        )
    frame = make_pairs(
        source,
        output,
        positives=positives,
        negatives_per_positive=negatives_per_positive,
        split=split,
        split_by=split_by,
        min_per_class=min_per_class,
        seed=seed,
        overwrite=overwrite,
    )
    summary = frame.attrs["summary"]
    if as_json:
        print_json(summary)
        return

    click.echo(
        f"{summary['pairs']} pairs ({summary['positives']} positive, {summary['negatives']} "
        f"negative) from {summary['images']} images in {summary['classes']} classes "
        f"written to {output}"
    )
    splits = summary["splits"]
    print_table(
        ["split", "images", "classes", "positives", "negatives", "pairs"],
        [
            [name, s["images"], s["classes"], s["positives"], s["negatives"], s["pairs"]]
            for name, s in splits.items()
        ],
    )
    _print_notes(summary)


def _print_notes(summary: dict) -> None:
    """What the user should know about the pairs they did not get."""
    skipped = summary["skipped_classes"]
    if skipped:
        click.echo(
            f"skipped {len(skipped)} class{'es' if len(skipped) > 1 else ''} with fewer than "
            f"{summary['options']['min_per_class']} images: {_names(list(skipped))}",
            err=True,
        )
    for name, s in summary["splits"].items():
        single = s["single_image_classes"]
        if single:
            click.echo(
                f"{name}: {len(single)} class{'es have' if len(single) > 1 else ' has'} one "
                f"image (negatives only, no positives): {_names(single)}",
                err=True,
            )
        if s["negatives"] < s["negatives_wanted"]:
            click.echo(
                f"{name}: {s['negatives']} negatives of {s['negatives_wanted']} wanted; "
                "that is every different-class pair there is",
                err=True,
            )
        if s["pairs"] == 0 and summary["options"]["split"][name] > 0:
            click.echo(f"{name}: no pairs (no class has two images in it)", err=True)


COMMANDS = [make_pairs_command]
