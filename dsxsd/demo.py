"""``dsxsd demo``: the whole pipeline on data it draws itself.

:func:`generate_shapes` draws coloured shapes with Pillow and writes them the way LabelImg
would (JPEG images, one Pascal VOC XML per image), so the demo needs no download and its
first step is the same as a user's. :func:`run_demo` then takes that folder through every
public step: convert, crop, make-pairs, train, evaluate, predict, embed and search.

Shapes are told apart by form, not colour: each object gets a random colour, size and
position, so a model can only succeed by learning what a circle or a star looks like.
"""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from . import _io
from .errors import OutputExistsError
from .annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# Written into the demo folder so that --overwrite only ever deletes a demo folder.
MARKER = ".dsxsd-demo"


def _star(cx: float, cy: float, r: float, points: int = 5) -> list[tuple[float, float]]:
    corners = []
    for i in range(points * 2):
        radius = r if i % 2 == 0 else r * 0.45
        angle = math.pi * i / points - math.pi / 2
        corners.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return corners


def _draw_shape(draw, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    """Draw ``shape`` filling ``box`` (xmin, ymin, xmax, ymax; inclusive pixel corners)."""
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "star":
        draw.polygon(_star(cx, cy, r), fill=colour)
    elif shape == "cross":
        t = (x1 - x0) / 6  # arm half-thickness
        draw.rectangle((x0, cy - t, x1, cy + t), fill=colour)
        draw.rectangle((cx - t, y0, cx + t, y1), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _colour(rng: random.Random, background: tuple[int, int, int]) -> tuple[int, int, int]:
    """A random colour that stands out from ``background`` (so every object is visible)."""
    while True:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if sum(abs(a - b) for a, b in zip(colour, background)) > 220:
            return colour


def _overlaps(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]], gap: int) -> bool:
    return any(
        box[0] <= o[2] + gap and o[0] <= box[2] + gap and box[1] <= o[3] + gap and o[1] <= box[3] + gap
        for o in others
    )


def draw_image(
    rng: random.Random,
    size: tuple[int, int],
    objects: int,
    object_size: tuple[int, int],
    shapes: tuple[str, ...] = SHAPES,
):
    """One picture: a random background and up to ``objects`` non-overlapping shapes.

    Returns ``(PIL image, [(shape, (xmin, ymin, xmax, ymax)), ...])``: each box is the
    square the shape was drawn in.
    """
    from PIL import Image, ImageDraw

    width, height = size
    background = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    # A few faint stripes so that the background is not a flat colour a model can key on.
    for _ in range(3):
        y = rng.randrange(height)
        shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in background)
        draw.rectangle((0, y, width, y + rng.randint(2, 10)), fill=shade)
    placed: list[tuple[str, tuple[int, int, int, int]]] = []
    for _ in range(objects):
        shape = rng.choice(shapes)
        for _attempt in range(30):
            side = rng.randint(*object_size)
            x0 = rng.randint(1, width - side - 2)
            y0 = rng.randint(1, height - side - 2)
            box = (x0, y0, x0 + side - 1, y0 + side - 1)
            if not _overlaps(box, [b for _, b in placed], gap=3):
                _draw_shape(draw, shape, box, _colour(rng, background))
                placed.append((shape, box))
                break
    return image, placed


def generate_shapes(
    out: str | os.PathLike[str],
    *,
    images: int = 120,
    image_size: tuple[int, int] = (160, 120),
    objects: tuple[int, int] = (2, 4),
    object_size: tuple[int, int] = (24, 44),
    shapes: tuple[str, ...] = SHAPES,
    seed: int = 0,
    overwrite: bool = False,
) -> AnnotationSet:
    """Draw ``images`` pictures of coloured shapes into ``out/images/*.jpg`` and label them
    as LabelImg would in ``out/annotations/*.xml`` (Pascal VOC).

    Each picture holds between ``objects[0]`` and ``objects[1]`` shapes of a side drawn
    from ``object_size``. The same seed gives the same pictures. ``out`` is written
    atomically and replaced only with ``overwrite``. Returns the annotations written.
    """
    from .formats import write

    out = Path(out)
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    if object_size[1] + 4 > min(image_size):
        raise ValueError(f"object size {object_size[1]} does not fit in an image of {image_size}")
    rng = random.Random(seed)
    annotations = []
    with _io.atomic_directory(out, overwrite) as tmp:
        (tmp / "images").mkdir()
        for index in range(images):
            image, placed = draw_image(rng, image_size, rng.randint(*objects), object_size, shapes)
            filename = f"shapes_{index:04d}.jpg"
            image.save(tmp / "images" / filename, format="JPEG", quality=92)
            annotations.append(
                ImageAnnotation(
                    filename=filename,
                    width=image_size[0],
                    height=image_size[1],
                    depth=3,
                    objects=tuple(
                        ObjectAnnotation(label=shape, bbox=BBox(*box)) for shape, box in placed
                    ),
                    folder="images",
                    # Where the image will be once the folder is in place (LabelImg writes
                    # the absolute path).
                    path=str((out / "images" / filename).resolve()),
                )
            )
        result = AnnotationSet(tuple(annotations), classes=tuple(shapes))
        write(result, tmp / "annotations", "voc")
    return result


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. The defaults finish in a few minutes on two CPU cores (measured
    in the README) and reach a validation accuracy far above chance; :data:`QUICK` is a
    smoke-test size for the test suite."""

    pictures: int = 150
    picture_size: tuple[int, int] = (160, 120)
    objects: tuple[int, int] = (2, 4)
    object_size: tuple[int, int] = (24, 44)
    image_size: int = 32
    width: float = 0.125
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-4
    augment: bool = True  # random colours already; flips and brightness help it generalise
    positives: int = 4
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    n_way: int = 5
    trials: int = 400
    search_k: int = 5
    seed: int = 0

    def with_seed(self, seed: int) -> "DemoSettings":
        return replace(self, seed=seed)


QUICK = DemoSettings(
    pictures=20, picture_size=(96, 72), object_size=(20, 30), image_size=32, width=0.125,
    epochs=1, batch_size=16, positives=1, n_way=3, trials=20, search_k=3,
)


@dataclass
class DemoResult:
    """What the demo made and measured; ``files`` maps a name to each file it wrote."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    one_shot: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)
    served: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "files": {name: str(path) for name, path in self.files.items()},
            "counts": self.counts,
            "training": self.training,
            "test": self.test,
            "one_shot": self.one_shot,
            "predictions": self.predictions,
            "search": self.search,
            "served": self.served,
            "seconds": self.seconds,
        }


def _prepare(out: Path, overwrite: bool) -> None:
    """Create ``out``; replace an earlier demo there only with ``overwrite``, and never
    delete a folder that is not a demo's (the marker file says which is which)."""
    if out.exists():
        if not overwrite:
            raise OutputExistsError("already exists; pass --overwrite to replace it", file=out)
        if not out.is_dir():
            raise OutputExistsError("exists and is not a folder; refusing to replace it", file=out)
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise OutputExistsError(
                f"is not a dsxsd demo folder (no {MARKER} in it); refusing to delete it",
                file=out,
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _io.write_text(out / MARKER, "made by 'dsxsd demo'; --overwrite may delete this folder\n")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _shown(path: str | os.PathLike[str]) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def run_demo(
    out: str | os.PathLike[str] = "dsxsd-demo",
    settings: DemoSettings = DemoSettings(),
    *,
    overwrite: bool = False,
    echo: Callable[[str], None] | None = print,
) -> DemoResult:
    """Draw shapes, then convert, crop, make pairs, train, evaluate, predict, embed and
    search, all through dsxsd's public API, writing everything under ``out``.

    ``echo`` receives progress lines and the final summary (``None``: silent). Each step's
    output is written atomically; the demo as a whole is not (a failed step leaves the
    steps before it in place, which is what one wants to look at).
    """
    import dsxsd

    say = echo or (lambda line: None)
    out = Path(out)
    s = settings
    result = DemoResult(out=out)
    _prepare(out, overwrite)
    clock = time.monotonic()
    step_started = clock
    steps = 9

    def step(number: int, text: str) -> None:
        nonlocal step_started
        step_started = time.monotonic()
        say(f"[{number}/{steps}] {text}")

    def done(name: str) -> None:
        result.seconds[name] = round(time.monotonic() - step_started, 1)

    step(1, f"drawing {s.pictures} pictures of {len(SHAPES)} shapes, labelled as Pascal VOC")
    shapes = out / "shapes"
    drawn = generate_shapes(
        shapes, images=s.pictures, image_size=s.picture_size, objects=s.objects,
        object_size=s.object_size, seed=s.seed,
    )
    result.files.update(images=shapes / "images", annotations=shapes / "annotations")
    result.counts.update(pictures=len(drawn.images), objects=drawn.num_objects)
    done("draw")

    step(2, "converting VOC -> CSV (dsxsd.read / dsxsd.write)")
    labels = out / "labels.csv"
    dsxsd.write(dsxsd.read(shapes / "annotations", "voc"), labels, "csv")
    result.files["labels"] = labels
    done("convert")

    step(3, "cropping every object into per-class folders (dsxsd.crop)")
    crops = out / "crops"
    report = dsxsd.crop(labels, images=shapes / "images", out=crops, pad="2px", square=True)
    result.files["crops"] = report.manifest
    result.counts.update(crops=report.crops, per_class=dict(report.per_class))
    done("crop")

    step(4, "making same/different pairs, split train/val/test (dsxsd.make_pairs)")
    pairs = out / "pairs.csv"
    frame = dsxsd.make_pairs(
        report.manifest, pairs, positives=s.positives, split=s.split, seed=s.seed
    )
    result.files["pairs"] = pairs
    result.counts["pairs"] = {
        split: {"same": int(((frame["split"] == split) & (frame["label"] == 1)).sum()),
                "different": int(((frame["split"] == split) & (frame["label"] == 0)).sum())}
        for split in ("train", "val", "test")
    }
    done("pairs")

    step(5, f"training a small Siamese network ({_plural(s.epochs, 'epoch')}, {s.image_size}px, width {s.width})")
    # TensorFlow takes seconds to import: only now, so that steps 1-4 show at once.
    from .train import fit
    from .train.evaluate import evaluate, evaluate_n_way
    from .train.infer import embed, load_scorer, predict, read_pairs_frame, search

    run = out / "run"
    summary = fit(
        pairs, run, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
        width=s.width, image_size=s.image_size, augment=s.augment, verbose=0,
        callbacks=[_epoch_lines(s.epochs, say)] if echo else [],
    )
    result.files.update(model=run / "model.keras", curves=run / "curves.png", history=run / "history.csv")
    result.training = {
        "epochs": summary["epochs"],
        "val_accuracy": summary["val_accuracy"],
        "val_loss": summary["val_loss"],
        "accuracy": summary["accuracy"],
        "chance": 0.5,
    }
    done("train")

    step(6, "evaluating on the test pairs and by N-way one-shot trials")
    scorer = load_scorer(run)
    metrics = evaluate(scorer, pairs, "test")
    one_shot = evaluate_n_way(scorer, pairs, min(s.n_way, len(SHAPES)), s.trials, seed=s.seed, split="test")
    scorer.threshold = metrics.threshold  # now calibrated: predict uses it
    result.files.update(metrics=metrics.metrics_file, roc=metrics.roc_png, scores=metrics.scores_png)
    result.test = {
        "pairs": metrics.same + metrics.different,
        "accuracy_at_0.5": metrics.at_half.accuracy,
        "threshold": metrics.threshold,
        "accuracy": metrics.at_threshold.accuracy,
        "f1": metrics.at_threshold.f1,
        "roc_auc": metrics.roc_auc,
        "eer": metrics.eer,
    }
    result.one_shot = one_shot.as_dict()
    done("evaluate")

    step(7, "predicting one same-class and one different-class test pair")
    test_pairs = read_pairs_frame(pairs, "test")
    for label in (1, 0):
        row = test_pairs[test_pairs["label"] == label].iloc[0]
        prediction = predict(scorer, row["left"], row["right"])
        result.predictions.append(
            {
                "left": row["left"],
                "right": row["right"],
                "truth": "same" if label else "different",
                "score": prediction.score,
                "verdict": "same" if prediction.same else "different",
            }
        )
    done("predict")

    step(8, "embedding every crop and searching with a test image (dsxsd embed / search)")
    index_path = out / "index.npz"
    index = embed(scorer, report.manifest, index_path)
    query = test_pairs["left"].iloc[0]
    hits = search(index, query, k=s.search_k, model=scorer)
    result.files["index"] = index_path
    result.search = {
        "query": query,
        "query_class": test_pairs["left_class"].iloc[0],
        "hits": [hit.as_dict() for hit in hits],
    }
    done("search")

    step(9, "exporting the model to ONNX and scoring the same pairs without TensorFlow (dsxsd export)")
    import keras

    if keras.backend.backend() == "tensorflow":  # export runs TensorFlow's converters
        from .inference import Scorer
        from .train.exporting import export

        onnx_path = out / "siamese.onnx"
        export(run, onnx_path, model="final")  # model.keras: what was evaluated and predicted
        served = Scorer.from_onnx(onnx_path)
        scores = [predict(served, p["left"], p["right"]).score for p in result.predictions]
        result.files["onnx"] = onnx_path
        result.served = {
            "scores": scores,
            "largest_difference": max(abs(a - p["score"]) for a, p in zip(scores, result.predictions)),
        }
    else:
        say(f"      skipped: export runs under Keras' tensorflow backend, not {keras.backend.backend()}")
    done("export")
    result.seconds["total"] = round(time.monotonic() - clock, 1)

    summary_path = out / "summary.json"
    result.files["summary"] = summary_path
    _io.write_text(summary_path, json.dumps(result.as_dict(), indent=2) + "\n", overwrite=True)
    if echo:
        _print_summary(result, say)
    return result


def _epoch_lines(epochs: int, say: Callable[[str], None]) -> Any:
    """A Keras callback saying one line per finished epoch: training takes minutes, and
    the lines are the same on a terminal and in a log (a progress bar would fill a log
    with carriage returns)."""
    import keras

    class EpochLines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            measured = [f"{name} {logs[name]:.3f}" for name in ("loss", "val_accuracy") if name in logs]
            seconds = time.monotonic() - self.started
            say(f"      epoch {epoch + 1}/{epochs}: {', '.join(measured)} ({seconds:.0f} s)")

    return EpochLines()


def _print_summary(r: DemoResult, say: Callable[[str], None]) -> None:
    t = r.training
    say("")
    say(f"validation accuracy {t['val_accuracy']:.3f} after {_plural(t['epochs'], 'epoch')} (chance 0.5)")
    say(
        f"test pairs: accuracy {r.test['accuracy']:.3f} at threshold {r.test['threshold']:.3f}, "
        f"ROC AUC {r.test['roc_auc']:.3f}, EER {r.test['eer']:.3f}"
    )
    o = r.one_shot
    say(f"{o['n_way']}-way one-shot accuracy {o['accuracy']:.3f} over {o['trials']} trials (chance {o['chance']:.3f})")
    for p in r.predictions:
        say(f"predict {p['truth']} pair: score {p['score']:.3f} -> {p['verdict']}")
    say(f"search for a {r.search['query_class']}: top {len(r.search['hits'])} classes "
        + ", ".join(h["class"] for h in r.search["hits"]))
    if r.served:
        say(f"the ONNX export scores those pairs the same (largest difference "
            f"{r.served['largest_difference']:.1g}) with onnxruntime, no TensorFlow")
    say("")
    say(f"everything is in {_shown(r.out)}/ ({r.seconds['total']:.0f} s):")
    width = max(len(name) for name in r.files)
    for name, path in r.files.items():
        say(f"  {name.ljust(width)}  {_shown(path)}")
    say("")
    # Files the demo made, so that the commands run as printed: the same-class test pair
    # it predicted and the image it searched with; the export where there is one, a
    # command that answers in well under a second.
    same = r.predictions[0]
    model = r.files.get("onnx", r.files["model"])
    shell = [shlex.quote(_shown(p)) for p in (model, same["left"], same["right"], r.files["index"], r.search["query"])]
    say(f"next: dsxsd predict {shell[0]} {shell[1]} {shell[2]}")
    say(f"      dsxsd search {shell[3]} {shell[4]} -k 5")


__all__ = ["QUICK", "SHAPES", "DemoResult", "DemoSettings", "draw_image", "generate_shapes", "run_demo"]
