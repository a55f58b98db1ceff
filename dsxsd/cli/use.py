"""Commands that use a trained model: ``evaluate``, ``predict``, ``embed``, ``search``,
``export``, and ``demo``, which runs the whole pipeline on generated data.

A path given on the command line that does not exist (a model, a manifest, an image to
score) is a usage error, exit 2, found by click before TensorFlow is imported; an image
named inside a manifest that is missing is a data error, exit 1, found by the API.
Importing dsxsd.train (TensorFlow) takes seconds, so each command first makes the
checks that need no TensorFlow (dsxsd._preflight: manifests, splits, N against the classes,
outputs) and imports it only once they pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .. import _preflight
from ._common import (
    input_path, json_option, need_tensorflow, overwrite_option, print_json, print_table, progress,
    setting_warnings,
)

_PATH = click.Path(path_type=Path)  # an output
_INPUT = input_path()
_OUT_FILE = click.Path(dir_okay=False, path_type=Path)
_OUT_FOLDER = click.Path(file_okay=False, path_type=Path)


def _shown(path: str | os.PathLike[str]) -> str:
    """A path as short as it can be shown: relative to the current folder when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def _need_runtime(model: str | os.PathLike[str]) -> None:
    """An exported .onnx runs on onnxruntime (checked when it loads); anything else on
    Keras, which needs TensorFlow."""
    from ..inference import ONNX_SUFFIX

    if Path(model).suffix.lower() != ONNX_SUFFIX:
        need_tensorflow()


def _f(value: float) -> str:
    return f"{value:.4f}"


# --------------------------------------------------------------------------- evaluate


@click.command("evaluate", short_help="Measure a model on held-out pairs or by N-way one-shot trials.")
@click.argument("run", type=_INPUT)
@click.argument("source", type=_INPUT)
@click.option("--split", default="test", show_default=True, help="The split of a pairs manifest to evaluate.")
@click.option(
    "--n-way",
    type=click.IntRange(min=2),
    help="Report N-way one-shot accuracy instead (SOURCE: a crops manifest, a folder of "
    "class folders, or a pairs manifest, of which the images of --split are used).",
)
@click.option("--trials", type=click.IntRange(min=1), default=400, show_default=True, help="N-way trials.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the N-way draws.")
@click.option(
    "--out", type=_OUT_FOLDER,
    help="Folder for metrics.json and the plots [default: beside the model, where dsxsd "
    "predict looks for the calibrated threshold].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images embedded at once.")
@click.option("--no-plots", is_flag=True, help="Skip roc.png and scores.png.")
@overwrite_option
@json_option
def evaluate(run, source, split, n_way, trials, seed, out, batch_size, no_plots, overwrite, as_json) -> None:
    """Measure a trained model on held-out pairs, or by N-way one-shot trials.

    RUN is a run folder (or its model.keras, or an .onnx made by dsxsd export, whose
    metrics.json then goes beside it). SOURCE is a pairs manifest; label 1 means
    "same class". The decision threshold is the one that maximises accuracy on the val
    split, then measured on --split. Results are added to RUN/metrics.json (or
    --out/metrics.json), with roc.png and scores.png; replacing results already there for
    the same split of the same manifest (or the same N on the same SOURCE) needs
    --overwrite.

    \b
    dsxsd evaluate run/ pairs.csv --split test
    dsxsd evaluate run/ crops/crops.csv --n-way 20 --trials 400
    """
    need_tensorflow()
    count = _preflight.check_evaluate(run, source, split, n_way, seed, out, overwrite)
    from ..inference import Scorer
    from ..train.evaluate import evaluate as evaluate_pairs
    from ..train.evaluate import evaluate_n_way

    scorer = Scorer.load(run)
    if n_way is not None:
        with progress(count, "embedding") as advance:
            result = evaluate_n_way(
                scorer, source, n_way, trials, seed=seed, split=split, out=out,
                batch_size=batch_size, overwrite=overwrite, progress=advance,
            )
        if as_json:
            print_json({**result.as_dict(), "metrics": str(result.metrics_file)})
            return
        print_table(
            ["metric", "value"],
            [
                ("N-way", result.n_way),
                ("trials", result.trials),
                ("images", result.images),
                ("classes", result.classes),
                ("correct", result.correct),
                ("one-shot accuracy", _f(result.accuracy)),
                ("chance", _f(result.chance)),
            ],
        )
        click.echo(f"wrote {_shown(result.metrics_file)}")
        return

    with progress(count, "embedding") as advance:
        result = evaluate_pairs(
            scorer, source, split, out=out, batch_size=batch_size, plots=not no_plots,
            overwrite=overwrite, progress=advance,
        )
    files = [p for p in (result.metrics_file, result.roc_png, result.scores_png) if p is not None]
    if as_json:
        print_json({**result.as_dict(), "files": [str(p) for p in files], "warning": result.warning})
        return
    at = result.at_threshold
    print_table(
        ["metric", "value"],
        [
            (f"pairs ({result.split})", result.same + result.different),
            ("same (label 1)", result.same),
            ("different (label 0)", result.different),
            ("accuracy at 0.5", _f(result.at_half.accuracy)),
            (f"threshold (best on {result.threshold_split})", _f(result.threshold)),
            ("accuracy at threshold", _f(at.accuracy)),
            ("precision at threshold", _f(at.precision)),
            ("recall at threshold", _f(at.recall)),
            ("F1 at threshold", _f(at.f1)),
            ("ROC AUC", _f(result.roc_auc)),
            ("equal error rate", _f(result.eer)),
        ],
    )
    if result.warning:
        click.echo(f"warning: {result.warning}", err=True)
    click.echo(f"wrote {', '.join(_shown(p) for p in files)}")


# --------------------------------------------------------------------------- predict


@click.command("predict", short_help="Score two images as same or different, or a whole pairs manifest.")
@click.argument("model", type=_INPUT)
@click.argument("images", nargs=-1, type=_INPUT)
@click.option("--pairs", type=_INPUT, help="Score every pair of this pairs manifest (with --out).")
@click.option("--out", type=_OUT_FILE, help="CSV to write the --pairs scores to.")
@click.option("--split", help="With --pairs: score only this split.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="Decision threshold [default: the run's calibrated one from metrics.json, else 0.5].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images embedded at once.")
@overwrite_option
@json_option
def predict(model, images, pairs, out, split, threshold, batch_size, overwrite, as_json) -> None:
    """Score two images (the probability they show the same class), or a whole manifest.

    MODEL is model.keras (or its run folder), or an .onnx made by dsxsd export, which
    runs without TensorFlow (the serve extra). Images of any size and mode are resized as
    in training. The verdict uses the run's calibrated threshold (written by dsxsd
    evaluate, carried by an export) unless --threshold is given.

    \b
    dsxsd predict run/model.keras a.jpg b.jpg
    dsxsd predict siamese.onnx a.jpg b.jpg
    dsxsd predict run/model.keras --pairs pairs.csv --out scores.csv
    """
    if pairs is not None:
        if images:
            raise click.UsageError("give either two images or --pairs, not both")
        if out is None:
            raise click.UsageError("--pairs needs --out FILE.csv")
    elif len(images) != 2:
        raise click.UsageError("give two images to compare (or --pairs MANIFEST --out FILE)")
    elif out is not None or split is not None:
        raise click.UsageError("--out and --split go with --pairs")
    _need_runtime(model)
    if pairs is None:
        _preflight.check_model(model)
    else:
        count = _preflight.check_predict_pairs(model, pairs, out, split, overwrite)
    from .. import inference

    scorer = inference.Scorer.load(model)
    if pairs is None:
        result = inference.predict(scorer, images[0], images[1], threshold=threshold)
        if as_json:
            print_json(result.as_dict())
            return
        verdict = "same" if result.same else "different"
        click.echo(
            f"{_f(result.score)}  {verdict}  (threshold {_f(result.threshold)}, "
            f"{result.threshold_source})"
        )
        return
    with progress(count, "embedding") as advance:
        summary = inference.predict_pairs(
            scorer, pairs, out, split=split, threshold=threshold, batch_size=batch_size,
            overwrite=overwrite, progress=advance,
        )
    if as_json:
        print_json(summary.__dict__)
        return
    click.echo(
        f"scored {summary.pairs} pairs ({summary.images} images): {summary.predicted_same} "
        f"same at threshold {_f(summary.threshold)} ({summary.threshold_source}); "
        f"wrote {_shown(summary.output)}"
    )


# --------------------------------------------------------------------------- embed / search


@click.command("embed", short_help="Store the features of every image of SOURCE in a search index.")
@click.argument("model", type=_INPUT)
@click.argument("source", type=_INPUT)
@click.option(
    "--out", type=_PATH, required=True,
    help="The index to write: a .npz file (exact) or a folder (approximate).",
)
@click.option(
    "--ann/--exact", "ann", default=None,
    help="--ann: an approximate index (a folder; FAISS candidates re-ranked by the head, the "
    "serve extra); --exact: one .npz, every entry scored by the head. [default: --exact for an "
    f"--out named .npz (a warning from {_preflight.ANN_MIN_ENTRIES:,} images), else --ann]",
)
@click.option("--split", help="With a pairs manifest as SOURCE: embed only this split's images.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images embedded at once.")
@overwrite_option
@json_option
def embed(model, source, out, ann, split, batch_size, overwrite, as_json) -> None:
    """Store the feature vector of every image of SOURCE in a search index.

    MODEL is model.keras (or its run folder), or an .onnx made by dsxsd export. SOURCE is
    a crops manifest, a folder of class folders, or a pairs manifest. The index holds each
    image's features (the shared tower's output), path, class and the model's path. An
    exact index (.npz) is searched by scoring every entry with the model's head; an
    approximate one (a folder: float16 features read from disk, a FAISS index) hands the
    head a few hundred candidates per query, for indexes of up to millions of images.

    \b
    dsxsd embed run/model.keras crops/crops.csv --out index.npz
    dsxsd embed siamese.onnx crops/crops.csv --out index/      # approximate
    """
    _need_runtime(model)
    kind = "auto" if ann is None else ("ann" if ann else "exact")
    with setting_warnings():  # a large .npz: written, with a warning line
        count, kind = _preflight.check_embed(model, source, out, split, overwrite, kind)
    from .. import inference

    scorer = inference.Scorer.load(model)
    with progress(count, "embedding") as advance:
        index = inference.embed(
            scorer, source, out, split=split, batch_size=batch_size, overwrite=overwrite,
            progress=advance, kind=kind,
        )
    summary = {
        "index": str(out),
        "kind": kind,
        "images": len(index.paths),
        "classes": len(index.manifest["classes"]) if kind == "ann" else len(set(index.classes)),
        "feature_dim": int(index.features.shape[1]),
        "model": str(index.model),
    }
    if kind == "ann":
        summary["faiss_index"] = index.manifest["faiss_index"]
    if as_json:
        print_json(summary)
        return
    what = f"an approximate index ({summary['faiss_index']})" if kind == "ann" else "an exact index"
    click.echo(
        f"embedded {summary['images']} images of {summary['classes']} classes "
        f"({summary['feature_dim']} features each) into {_shown(out)}, {what}"
    )


def _query_images(queries: tuple[Path, ...]) -> list[Path]:
    """The query images: each path given, a folder standing for the images below it
    (sorted, hidden entries skipped)."""
    from ..errors import UsageError
    from ..manifests import IMAGE_EXTENSIONS

    images: list[Path] = []
    for query in queries:
        if not query.is_dir():
            images.append(query)
            continue
        found = sorted(
            Path(root) / name
            for root, folders, files in os.walk(query)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in Path(root).relative_to(query).parts)
        )
        if not found:
            raise UsageError(
                f"no images in this folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})", file=query
            )
        images.extend(found)
    return images


@click.command("search", short_help="The K images of an index most similar to each query image.")
@click.argument("index", type=_INPUT)
@click.argument("queries", nargs=-1, required=True, type=_INPUT)
@click.option("-k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Hits per query.")
@click.option("--model", type=_INPUT, help="Score with this model [default: the one that made the index].")
@click.option(
    "--candidates", type=click.IntRange(min=1),
    help=f"Approximate index: entries the head re-ranks per query [default: {_preflight.DEFAULT_CANDIDATES}, at least K].",
)
@click.option("--exact", is_flag=True, help="Approximate index: score every entry with the head instead.")
@click.option("--out", type=_OUT_FILE, help="Write every hit to this CSV (query,rank,path,class,score).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Query images embedded at once.")
@overwrite_option
@json_option
def search(index, queries, k, model, candidates, exact, out, batch_size, overwrite, as_json) -> None:
    """The K images of INDEX most similar to each QUERY, best first: path, class, score.

    QUERIES are images, or folders standing for every image below them. Scores are the
    model's own (its head applied to the query's and each entry's features), so they read
    like dsxsd predict's. An approximate index (a folder made by dsxsd embed) shortlists
    8 x --candidates entries (4 x sqrt(entries) where more) by its FAISS index, keeps the
    --candidates that a linear stand-in of the head scores highest, and re-ranks those
    with the head; --exact scores every entry. An index made with an .onnx is searched without TensorFlow.

    \b
    dsxsd search index.npz query.jpg -k 5
    dsxsd search index/ queries/ -k 5 --out hits.csv
    """
    if out is not None:
        _preflight.check_output_file(out, overwrite)
    images = _query_images(queries)
    loaded = _preflight.check_search(index, model, k, exact)
    _need_runtime(model if model is not None else loaded.model)
    from .. import inference

    scorer = inference.search_scorer(loaded, model)
    results = inference.search_blocks(loaded, scorer, images, k, candidates, exact, batch_size)
    if out is not None:
        written = _write_hits(out, results, overwrite)
        if as_json:
            print_json({"queries": len(images), "hits": written, "out": str(out)})
        else:
            click.echo(f"searched {len(images)} queries, {written} hits: wrote {_shown(out)}")
        return
    results = list(results)
    if as_json:
        if len(queries) == 1 and not queries[0].is_dir():
            print_json([hit.as_dict() for hit in results[0][1]])
        else:
            print_json([{"query": q, "hits": [hit.as_dict() for hit in hits]} for q, hits in results])
        return
    many = len(results) > 1
    rows = [
        ((_shown(query),) if many else ()) + (_shown(hit.path), hit.class_name, _f(hit.score))
        for query, hits in results
        for hit in hits
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]))


def _write_hits(out: Path, results, overwrite: bool) -> int:
    """The hits as CSV, paths relative to the CSV's folder (the manifests' convention),
    written as they come and renamed into place at the end."""
    import csv

    from .._io import atomic_path, relative_path

    written = 0
    with atomic_path(out, overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["query", "rank", "path", "class", "score"])
        for query, hits in results:
            shown = relative_path(query, out.parent)
            for hit in hits:
                writer.writerow([shown, hit.rank, relative_path(hit.path, out.parent), hit.class_name, f"{hit.score:.6f}"])
                written += 1
    return written


# --------------------------------------------------------------------------- export


@click.command("export", short_help="Export a trained model as ONNX, SavedModel or LiteRT.")
@click.argument("run", type=_INPUT)
@click.option(
    "--format", "fmt", type=click.Choice(_preflight.EXPORT_FORMATS), default="onnx", show_default=True,
    help="onnx: a .onnx file (predict, embed and search run it without TensorFlow); "
    "saved_model: a SavedModel folder; litert: a .tflite file.",
)
@click.option("--out", type=_PATH, required=True, help="The file (or, for saved_model, the folder) to write.")
@click.option(
    "--part", type=click.Choice(_preflight.EXPORT_PARTS), default="siamese", show_default=True,
    help="siamese: scores a pair of images; tower: maps an image to its feature vector.",
)
@click.option(
    "--model", "which", type=click.Choice(list(_preflight.EXPORT_MODELS)), default="best", show_default=True,
    help="best: best.keras (the best validation epoch); final: model.keras.",
)
@overwrite_option
@json_option
def export(run, fmt, out, part, which, overwrite, as_json) -> None:
    """Export a trained model out of its run folder, to serve it elsewhere.

    RUN is a run folder (or a .keras file). The export takes raw 0-255 RGB images,
    float32 [N, S, S, 3], and carries the input size, the resize mode, dsxsd's version,
    the sha256 of the run's config.json and the calibrated threshold, where metrics.json
    holds one of the exported model (dsxsd evaluate RUN/best.keras PAIRS): as ONNX
    metadata properties, or in OUT.json beside a SavedModel or a LiteRT file.

    \b
    dsxsd export run/ --out siamese.onnx
    dsxsd export run/ --format saved_model --part tower --out tower_saved_model
    dsxsd export run/ --format litert --out siamese.tflite
    """
    need_tensorflow()
    _preflight.check_export(run, out, fmt, part, which, overwrite)
    from ..train.exporting import export as export_model

    result = export_model(run, out, format=fmt, part=part, model=which, overwrite=overwrite)
    written = [p for p in (result.path, result.info_path) if p is not None]
    if as_json:
        print_json({
            "format": result.format, "part": result.part, "source": str(result.source),
            "files": [str(p) for p in written], "info": result.info.as_dict(),
            "warnings": list(result.warnings),
        })
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    threshold = "none" if result.info.threshold is None else _f(result.info.threshold)
    click.echo(
        f"exported {_shown(result.source)} ({result.part}, {result.info.image_size}x"
        f"{result.info.image_size} inputs, threshold {threshold}) as {result.format}: "
        f"wrote {', '.join(_shown(p) for p in written)}"
    )


# --------------------------------------------------------------------------- demo


@click.command("demo", short_help="Run the whole pipeline on generated shapes in a few minutes.")
@click.option(
    "--out", type=_PATH, default=Path("dsxsd-demo"), show_default=True,
    help="Folder for everything the demo makes.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated data and of training.")
@click.option("--quick", is_flag=True, hidden=True, help="Tiny sizes, for tests.")
@overwrite_option
@json_option
def demo(out, seed, quick, overwrite, as_json) -> None:
    """Run the whole pipeline on generated shapes, in a few minutes on a laptop CPU.

    Draws coloured shapes and labels them as LabelImg would (Pascal VOC), then converts,
    crops, makes pairs, trains a small model, evaluates it, predicts a same and a
    different pair and searches the crops, printing where everything is.

    \b
    dsxsd demo
    dsxsd demo --out /tmp/demo --seed 1 --overwrite
    """
    need_tensorflow()
    from ..demo import QUICK, DemoSettings, run_demo

    settings = QUICK if quick else DemoSettings()
    settings = settings.with_seed(seed)
    result = run_demo(out, settings, overwrite=overwrite, echo=None if as_json else click.echo)
    if as_json:
        print_json(result.as_dict())


COMMANDS = [evaluate, predict, embed, search, export, demo]
