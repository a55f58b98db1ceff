"""``--freeze-backbone``: a head epoch on the tower's cached features against the frozen
tower run per pair.

For each size one Siamese model is built and its tower frozen, then trained two ways that
take turns, the best epoch of each kept:

- on features, as ``dsxsd train --freeze-backbone`` trains its head: the tower run once
  per distinct training image (:func:`dsxsd.train.fit.tower_features`, timed once and
  printed), the head (:func:`dsxsd.train.network.split_model`) fit on batches from
  :func:`dsxsd.train.data.features_dataset`, a whole epoch over the training pairs timed;
- on images: the whole model, its tower frozen, fit on the same pairs' images from
  :func:`dsxsd.train.data.pairs_dataset` (decoded once into memory), so the tower runs on
  both images of every pair. A full epoch of that takes long on a CPU: its first
  ``slow_steps`` batches are timed and scaled to the epoch's pairs.

Both are compiled as ``fit`` compiles them (Adam, binary cross-entropy, accuracy). The
figure is the epoch on images over the epoch on features (pairs/s on features over pairs/s
on images; no target: it grows with the tower); a second row holds the head epoch's time
to its ceiling: an epoch over thousands of pairs well under a second on a CPU.

    python benchmarks/bench_frozen.py             # width 0.125 and 1.0 at 64 px (--preset cpu's size; an ImageNet tower)
    python benchmarks/bench_frozen.py --quick     # one tiny size (seconds)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, best_fit_epoch_seconds, table  # noqa: E402

STAGE = "frozen backbone"
EPOCH_CEILING = 0.5  # seconds for a head epoch over the training pairs: "well under a second"


@dataclass(frozen=True)
class Size:
    width: float
    image_size: int
    batch: int
    slow_steps: int  # batches timed through the frozen tower per epoch
    rounds: int  # timed epochs per fit
    turns: int  # fits of each way, taking turns


QUICK = (Size(0.125, 32, 32, 2, 1, 1),)
SIZES = (Size(0.125, 64, 32, 8, 3, 2), Size(1.0, 64, 32, 2, 2, 2))


def make_manifest(root: Path, quick: bool) -> Path:
    """Generated JPEG crops of shapes and pairs over them (bench_pipeline's): thousands of
    training pairs at full size."""
    from benchmarks.bench_pipeline import make_manifest as make

    classes, per_class = (4, 10) if quick else (20, 60)
    return make(root, classes=classes, per_class=per_class, size=48, positives=2)


def compiled(model):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    return model


def measure_size(manifest: Path, size: Size) -> dict:
    import keras

    from dsxsd.train import build_model, data, split_model
    from dsxsd.train.fit import tower_features

    pairs = data.pair_table(data.read_manifest(manifest), "train", manifest)
    keras.utils.set_random_seed(0)
    model = build_model(size.image_size, size.width)
    model.get_layer("tower").trainable = False
    tower, head = split_model(model)
    compiled(model), compiled(head)
    started = time.perf_counter()
    features = tower_features(tower, pairs, {"image_size": size.image_size, "resize": "stretch"}, "memory", "train")
    features_s = time.perf_counter() - started
    common = dict(batch_size=size.batch, shuffle=True, seed=0, repeat=True)
    on_features = data.features_dataset(pairs, features, **common)
    on_images = data.pairs_dataset(pairs, image_size=size.image_size, cache="memory", **common)
    epoch_steps = pairs.batches(size.batch)
    slow_steps = min(size.slow_steps, epoch_steps)
    head_s = images_s = float("inf")
    for _ in range(size.turns):
        head_s = min(head_s, best_fit_epoch_seconds(head, on_features, epoch_steps, size.rounds))
        images_s = min(images_s, best_fit_epoch_seconds(model, on_images, slow_steps, size.rounds))
    return figures(size, len(pairs), len(pairs.paths), epoch_steps, slow_steps, head_s, images_s, features_s)


def figures(size: Size, n_pairs: int, n_images: int, epoch_steps: int, slow_steps: int,
            head_s: float, images_s: float, features_s: float) -> dict:
    """Pairs/s both ways; the epoch on images scaled from its ``slow_steps`` timed batches."""
    slow_pairs = min(slow_steps * size.batch, n_pairs)
    images_pairs_per_s = slow_pairs / images_s
    return {
        "width": size.width, "image_size": size.image_size, "batch": size.batch, "pairs": n_pairs,
        "images": n_images, "epoch_steps": epoch_steps, "slow_pairs": slow_pairs,
        "head_s": head_s, "head_pairs_per_s": n_pairs / head_s,
        "images_pairs_per_s": images_pairs_per_s, "images_epoch_s": n_pairs / images_pairs_per_s,
        "features_s": features_s,
    }


def rows_of(result: dict) -> list[Row]:
    sized = f"width {result['width']}, {result['image_size']} px, batch {result['batch']}"
    what = (f"head epoch on cached features: {result['pairs']:,} pairs, {sized}; "
            f"{result['head_pairs_per_s']:,.0f} pairs/s (features of {result['images']:,} images "
            f"computed once in {result['features_s']:.2f} s)")
    against = (f"the model, tower frozen, on image pairs: {result['images_pairs_per_s']:,.0f} pairs/s "
               f"(first {result['slow_pairs']:,} pairs timed, scaled to the epoch)")
    return [
        Row(STAGE, what, result["head_s"], against, result["images_epoch_s"], "speedup", None),
        Row(STAGE, f"head epoch on cached features, {result['pairs']:,} pairs, {sized}", result["head_s"],
            "-", None, "seconds", EPOCH_CEILING),
    ]


def measure(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-frozen-") as tmp:
        manifest = make_manifest(Path(tmp), quick)
        for size in QUICK if quick else SIZES:
            rows += rows_of(measure_size(manifest, size))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny size, one epoch each way")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    print(table(measure(args.quick), markdown=args.markdown))


if __name__ == "__main__":
    main()
