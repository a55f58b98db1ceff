"""How fast the training input pipeline is, against baselines measured in the same run.

1. Pairs per second delivered by ``dsxsd.train.make_dataset`` (decode each distinct image
   once per epoch, gather pairs by index; with and without the memory cache) against a
   plain Python loader that opens both images of every pair with PIL, as the reference
   implementation did.
2. Training steps per second of the same model fed from the manifest by that pipeline
   against fed from tensors already in memory: how much the input costs training.

    python benchmarks/bench_pipeline.py               # CPU-sized defaults, a few minutes on 2 cores
    python benchmarks/bench_pipeline.py --width 1 --steps 50   # the full model, on a GPU
    python benchmarks/bench_pipeline.py --table [--quick]      # the rows of benchmarks/run.py

Prints ratios; never asserts on time (timings belong here, not in tests).

:func:`measure` (the rows of ``benchmarks/run.py``, no training) times one epoch of the
``train`` split of 2,000 generated crops (1,600 training images: a small real project),
every figure the best of several runs alternated with its baseline so that load from
other processes hits both alike. Datasets are drained inside a compiled function
(``Dataset.reduce``), as ``model.fit`` draws its batches; a Python ``for`` loop would add
its own ~0.25 ms per batch, which is the loop's cost, not the pipeline's, and would fall
on the pipeline 2-8 times as often as on the limit (which yields batches of 32 distinct
images, the pipeline batches of 32 pairs).

- the pipeline: ``make_dataset(..., cache="none")`` drained, i.e. every distinct image
  decoded once in the epoch, then every pair delivered as uint8 batches;
- the per-pair PIL loader: the reference implementation's loop, which opens, converts and
  resizes both images of every pair (target: the pipeline at least 5x faster). Its cost
  is the same for every pair, so it is timed on the epoch's first pairs and scaled to the
  epoch (the row says how many);
- the decode+resize limit: a bare ``tf.data`` map of ``read_file`` + ``decode_image`` +
  ``resize`` (the same kernel, antialiased, and size as the pipeline) over the split's
  *distinct* files, ``AUTOTUNE`` parallel, batched and drained, nothing else. No
  pipeline can deliver an epoch of these pairs without decoding each of their images once,
  so this is the floor of an epoch, whatever the number of pairs; the figure is epoch time
  over floor time (target: at most 1.25x). What the pipeline does above it: rounding the
  images to uint8, and gathering each pair's two images into uint8 batches, which costs
  memory bandwidth in proportion to the pairs per image. Both are measured at two
  densities: ``--positives 1`` (make-pairs' default: each image in about 4 pairs' sides)
  and ``--positives 4`` (about 16): the more uses per image, the further the pipeline is
  ahead of the PIL loader and the more its batches cost above the limit;
- a later epoch with ``cache="memory"``, training's default, where the images were
  decoded in the first epoch and only the gathering is left (reported against the same
  limit, no target).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

if __package__ in (None, ""):  # run as a script: make ``benchmarks._common`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dsxsd  # noqa: E402
from benchmarks._common import Row, interleaved, table, timed  # noqa: E402

STAGE = "input pipeline"
SHAPES = ("circle", "square", "triangle", "star", "cross")


def make_images(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> None:
    """JPEG crops of shapes, of several sizes, like real crops (so decoding costs what it
    does in practice)."""
    rng = random.Random(seed)
    for c in range(classes):
        name = SHAPES[c % len(SHAPES)] + str(c)
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            side = rng.randint(size, 2 * size)
            image = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            m = side // 6
            box = (m, m, side - m, side - m)
            fill = tuple(rng.randrange(256) for _ in range(3))
            [draw.ellipse, draw.rectangle, draw.rectangle, draw.ellipse, draw.rectangle][c % 5](box, fill=fill)
            image.save(root / name / f"{i:04d}.jpg", quality=90)


def pil_loader_epoch(manifest: Path, size: int, batch_size: int, limit: int | None = None) -> int:
    """The reference approach: for every pair, open, convert and resize both images.
    Returns how many pairs it delivered (the first ``limit`` if given)."""
    rows = dsxsd.read_pairs(manifest).query("split == 'train'").iloc[:limit]
    root = manifest.parent

    def load(path: str) -> np.ndarray:
        with Image.open(root / path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)

    for i in range(0, len(rows), batch_size):
        batch = rows.iloc[i : i + batch_size]
        np.stack([load(p) for p in batch.left]), np.stack([load(p) for p in batch.right])
    return len(rows)


def pil_loader_pairs_per_second(manifest: Path, size: int, batch_size: int) -> float:
    pairs, seconds = timed(pil_loader_epoch, manifest, size, batch_size)
    return pairs / seconds


def decode_limit_dataset(paths: list[str], size: int, batch_size: int):
    """The floor of an epoch: each distinct file read, decoded and resized once, as fast as
    tf.data does it, and nothing else (see the module docstring)."""
    import tensorflow as tf

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, [size, size], antialias=True)

    return (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def drain(ds) -> int:
    """Iterate a dataset to its end inside a compiled function, as ``model.fit`` draws
    its batches; returns the elements."""
    import tensorflow as tf

    return int(ds.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def make_manifest(root: Path, classes: int, per_class: int, size: int, positives: int) -> Path:
    if not (root / "images").exists():
        make_images(root / "images", classes, per_class, size)
    manifest = root / f"pairs-{positives}.csv"
    dsxsd.make_pairs(root / "images", manifest, positives=positives, seed=0)
    return manifest


DENSITIES = (1, 4)  # --positives: 1 is make-pairs' default (4 uses per image), 4 gives 16


def measure(
    quick: bool = False,
    *,
    classes: int = 20,
    per_class: int | None = None,
    densities: tuple[int, ...] = DENSITIES,
    image_size: int = 105,
    batch_size: int = 32,
    pil_pairs: int = 1280,
) -> list[Row]:
    """The pipeline against the per-pair PIL loader and against the decode+resize limit,
    on the same images paired at each of ``densities`` (same-class pairs per image)."""
    from dsxsd.train import make_dataset
    from dsxsd.train.data import pair_table, read_manifest

    per_class = per_class or (20 if quick else 100)
    runs = 3 if quick else 10  # TF's threads are noisy: the best of several
    rows = []
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-pipeline-") as tmp:
        for positives in densities:
            manifest = make_manifest(Path(tmp), classes, per_class, image_size, positives)
            pairs = pair_table(read_manifest(manifest), "train", manifest)
            pipeline = make_dataset(manifest, "train", image_size=image_size,
                                    batch_size=batch_size, cache="none", check=False)
            # Training's default: decoded once for the run, so later epochs only gather.
            cached = make_dataset(manifest, "train", image_size=image_size,
                                  batch_size=batch_size, cache="memory", check=False)
            limit = decode_limit_dataset(pairs.paths, image_size, batch_size)
            drain(pipeline), drain(limit), drain(cached)  # untimed: tracing, threads, caches
            limit_s, pipeline_s, cached_s = interleaved(runs, (drain, limit), (drain, pipeline), (drain, cached))
            timed_pairs = min(pil_pairs, len(pairs))
            pil_s = min(timed(pil_loader_epoch, manifest, image_size, batch_size, timed_pairs)[1]
                        for _ in range(2)) * len(pairs) / timed_pairs
            data = (f"{len(pairs):,} pairs of {len(pairs.paths):,} images "
                    f"({2 * len(pairs) / len(pairs.paths):.0f} uses each, --positives {positives}), "
                    f"{image_size}px")
            what = f"make_dataset, cache none, 1 epoch: {data}"
            limit_name = "decode+resize limit (distinct images once)"
            pil_name = "per-pair PIL loader (reference)"
            if timed_pairs < len(pairs):
                pil_name += f", first {timed_pairs:,} pairs timed, scaled to the epoch"
            rows += [
                Row(STAGE, what, pipeline_s, pil_name, pil_s, "speedup", 5.0),
                Row(STAGE, what, pipeline_s, limit_name, limit_s, "overhead", 1.25),
                Row(STAGE, f"make_dataset, cache memory (the default), a later epoch: {data}",
                    cached_s, limit_name, limit_s, "overhead", None),
            ]
    return rows


def pipeline_pairs_per_second(manifest: Path, size: int, batch_size: int, cache: str) -> tuple[float, float]:
    """Pairs/s of the first and of the second epoch."""
    from dsxsd.train import make_dataset

    ds = make_dataset(manifest, "train", image_size=size, batch_size=batch_size, cache=cache, check=False)
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        n = sum(int(y.shape[0]) for _, y in ds)
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def training_steps_per_second(
    manifest: Path, size: int, width: float, batch_size: int, steps: int, rounds: int
) -> tuple[float, float]:
    """Steps/s of one model fed by the pipeline and fed from in-memory tensors.

    Each feeding runs ``rounds`` timed epochs of ``steps`` steps after an untimed one
    (tracing, starting the input threads); the two feedings alternate twice and the best
    epoch of each is kept, so that load from other processes hits both alike.
    """
    import keras
    import tensorflow as tf

    from dsxsd.train import build_model, make_dataset

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                rates.append(steps / (time.perf_counter() - self.start))

    keras.utils.set_random_seed(0)
    model = build_model(size, width)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    from_manifest = make_dataset(manifest, "train", image_size=size, batch_size=batch_size, repeat=True, check=False)
    (left, right), labels = next(iter(from_manifest))
    in_memory = tf.data.Dataset.from_tensors(((left, right), labels)).repeat()
    best = {"manifest": 0.0, "memory": 0.0}
    for _ in range(2):
        for name, ds in (("manifest", from_manifest), ("memory", in_memory)):
            rates: list[float] = []
            model.fit(ds, epochs=1 + rounds, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[EpochTimer()])
            best[name] = max(best[name], *rates)
    return best["manifest"], best["memory"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, help="default: 10, with --table 20")
    parser.add_argument("--per-class", type=int, help="default: 40, with --table 100 (20 with --quick)")
    parser.add_argument("--positives", type=int, default=4, help="same-class pairs per image")
    parser.add_argument("--image-size", type=int, default=105)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=2, help="timed epochs per fit (best kept)")
    parser.add_argument("--table", action="store_true",
                        help="print only the rows of benchmarks/run.py (no training)")
    parser.add_argument("--quick", action="store_true", help="with --table: fewer images and runs")
    parser.add_argument("--markdown", action="store_true", help="with --table: as Markdown")
    args = parser.parse_args(argv)
    if args.table:
        rows = measure(args.quick, classes=args.classes or 20, per_class=args.per_class,
                       image_size=args.image_size, batch_size=args.batch_size)
        print(table(rows, markdown=args.markdown))
        return
    args.classes, args.per_class = args.classes or 10, args.per_class or 40

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_manifest(root, args.classes, args.per_class, args.image_size, args.positives)
        rows = dsxsd.read_pairs(manifest).query("split == 'train'")
        distinct = len(set(rows.left) | set(rows.right))
        print(f"{len(rows)} training pairs over {distinct} distinct images "
              f"({2 * len(rows) / distinct:.1f} uses per image), {args.image_size}px, batch {args.batch_size}")

        pil = pil_loader_pairs_per_second(manifest, args.image_size, args.batch_size)
        none_first, _ = pipeline_pairs_per_second(manifest, args.image_size, args.batch_size, "none")
        memory_first, memory_next = pipeline_pairs_per_second(manifest, args.image_size, args.batch_size, "memory")
        print("\ninput pipeline, pairs/s")
        print(f"  PIL per pair (reference)          {pil:10.0f}   1.00x")
        print(f"  dsxsd, decode once per epoch      {none_first:10.0f}   {none_first / pil:.2f}x")
        print(f"  dsxsd, --cache memory, 1st epoch  {memory_first:10.0f}   {memory_first / pil:.2f}x")
        print(f"  dsxsd, --cache memory, later      {memory_next:10.0f}   {memory_next / pil:.2f}x")

        fed, memory = training_steps_per_second(
            manifest, args.image_size, args.width, args.batch_size, args.steps, args.rounds
        )
        print(f"\ntraining (width {args.width}), steps/s")
        print(f"  tensors in memory (no input cost) {memory:10.2f}   1.00x")
        print(f"  fed from the manifest             {fed:10.2f}   {fed / memory:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
