"""Training throughput: the network fed from the manifest against fed from memory, its
FLOPs, and on a GPU the fraction of the chip's bf16 peak it reaches.

For each size (width, image size, batch) one model is trained with ``model.fit`` for a
fixed number of steps, fed two ways that take turns, the best epoch of each kept:

- from the manifest, as ``dsxsd train`` feeds it: the manifest read, its ``train`` split
  made a :class:`dsxsd.train.data.PairTable`, batches from
  :func:`dsxsd.train.data.pairs_dataset` (shuffled, endless, images decoded once into
  memory), copied onto a lone GPU by :func:`dsxsd.train.fit.onto_device`, and the model
  compiled as ``fit`` compiles it (Adam, binary cross-entropy, accuracy, the steps per
  execution :func:`dsxsd.train.fit.resolve_steps_per_execution` picks);
- from memory: the first batches of that pipeline made once and held in memory as they
  are (uint8, ``Dataset.cache``), served round and round: input that costs nothing to make.

The figure is pairs/s from the manifest over pairs/s from memory (target: at least 0.95:
the pipeline never starves the model). Each ``fit`` first trains one untimed epoch
(tracing, decoding the images into the cache, starting tf.data's threads); on a CPU an
epoch is one step, so the fastest is a step the machine's other work disturbed least
(the new order drawn at the start of each pass over the pairs is then left out; the
input pipeline's own benchmark counts it). FLOPs per pair are counted from the layers
(:func:`benchmarks._common.forward_flops`); a train step is taken as three forward passes, so TFLOP/s = 3 x FLOPs x pairs/s. On a GPU a second row puts the epoch
against the time the same FLOPs take at the chip's dense bf16 peak
(:data:`benchmarks._common.PEAK_BF16_TFLOPS`; other chips: unknown, no row): the goal
for width 1.0 at 105 px under ``mixed_bfloat16`` is 40% of peak, at most 2.5x the time.

The sizes are the README's CPU smoke runs (width 0.125 at 32 px, 0.25 at 64 px); the
full network (width 1.0, 105 px, 17M parameters) is added on a GPU, or on a CPU with
``--full-size`` (slow there: see benchmarks/README.md).

    python benchmarks/bench_train.py                 # CPU sizes (and the full size on a GPU)
    python benchmarks/bench_train.py --full-size     # the full network too, even on a CPU
    python benchmarks/bench_train.py --quick         # one tiny size, a few steps (seconds)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, accelerator_name, best_fit_epoch_seconds, forward_flops, peak_tflops, table  # noqa: E402

STAGE = "train"
TARGET = 0.95  # pairs/s from the manifest over pairs/s from memory
PEAK_GOAL = 0.40  # of the GPU's dense bf16 peak, for the full network under mixed_bfloat16


@dataclass(frozen=True)
class Size:
    width: float
    image_size: int
    batch: int
    steps: int  # timed steps per epoch (a multiple of the steps per execution)
    rounds: int  # timed epochs per fit
    turns: int  # fits of each feeding, taking turns


QUICK = (Size(0.125, 32, 8, 2, 1, 1),)
# On a shared CPU other work slows some steps: many epochs of one step, the fastest
# kept, are the least disturbed (a CPU step is done when Keras' call returns, so each is
# timed whole; a GPU's epochs must be long, its steps only queued when the call returns).
CPU_SIZES = (Size(0.125, 32, 32, 1, 16, 4), Size(0.25, 64, 32, 1, 8, 4))
CPU_FULL = Size(1.0, 105, 8, 1, 3, 2)
# On a GPU a step takes milliseconds: more of them, a multiple of 16 steps per execution.
GPU_SIZES = (Size(0.125, 32, 32, 160, 2, 2), Size(0.25, 64, 32, 160, 2, 2))
GPU_FULL = Size(1.0, 105, 256, 48, 2, 2)


def make_manifest(root: Path, quick: bool, gpu: bool) -> Path:
    """Generated JPEG crops of shapes and a pairs manifest over them (bench_pipeline's):
    on a GPU enough that a pass over the pairs takes many steps of 256, as a real
    project's does, since each pass begins with a new order (a cost a tiny set would
    show out of proportion)."""
    from benchmarks.bench_pipeline import make_manifest as make

    classes, per_class = (4, 10) if quick else (40, 100) if gpu else (20, 40)
    return make(root, classes=classes, per_class=per_class, size=48, positives=1)


def pipeline(manifest: Path, size: Size):
    """The training batches as ``fit`` makes them, before they are copied to a device."""
    from dsxsd.train import data

    pairs = data.pair_table(data.read_manifest(manifest), "train", manifest)
    return data.pairs_dataset(pairs, image_size=size.image_size, batch_size=size.batch, shuffle=True, seed=0,
                              repeat=True, cache="memory", cache_key="train")


def in_memory(ds, batches: int):
    """The first ``batches`` batches of ``ds``, made once and held in memory (drained
    here, before any timing), then served again and again: the same data, and the same
    element shapes (so the model's train function is not traced again), at no cost to make.
    """
    import tensorflow as tf

    held = ds.take(batches).cache()
    held.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)  # fills the cache
    return held.repeat().prefetch(tf.data.AUTOTUNE)


def compiled_model(size: Size, precision: str, steps_per_execution: int):
    """The network compiled as ``fit`` compiles it."""
    import keras

    from dsxsd.train import build_model

    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = build_model(size.image_size, size.width)
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
                  steps_per_execution=steps_per_execution)
    return model


def measure_size(manifest: Path, size: Size, precision: str) -> dict:
    """One size timed: seconds per epoch fed both ways (the best epoch of each), then
    :func:`figures`."""
    from dsxsd.train.fit import onto_device, resolve_steps_per_execution, train_input_device

    device = accelerator_name()
    per_execution = resolve_steps_per_execution(None, size.steps, gpu=device is not None)
    model = compiled_model(size, precision, per_execution)
    made = pipeline(manifest, size)
    # Both copied onto a lone GPU as fit copies its batches: only making them differs.
    input_device = train_input_device("default")
    from_manifest = onto_device(made, input_device)
    from_memory = onto_device(in_memory(made, min(size.steps, 8)), input_device)
    best = {"manifest": float("inf"), "memory": float("inf")}
    for _ in range(size.turns):
        for name, ds in (("manifest", from_manifest), ("memory", from_memory)):
            best[name] = min(best[name], best_fit_epoch_seconds(model, ds, size.steps, size.rounds))
    return figures(size, precision, per_execution, device, best["manifest"], best["memory"], forward_flops(model))


def figures(size: Size, precision: str, steps_per_execution: int, device: str | None,
            manifest_s: float, memory_s: float, flops: int) -> dict:
    """What an epoch's times say: pairs/s both ways and their ratio, FLOPs per pair,
    TFLOP/s (a train step taken as three forward passes) and, on a GPU whose peak is
    known, the fraction of it and the time the epoch's FLOPs take at the peak."""
    pairs = size.steps * size.batch
    train_flops = 3 * flops * pairs
    peak = peak_tflops(device) if device else None
    tflops = train_flops / manifest_s / 1e12
    return {
        "width": size.width, "image_size": size.image_size, "batch": size.batch, "steps": size.steps,
        "precision": precision, "steps_per_execution": steps_per_execution, "device": device or "cpu",
        "manifest_s": manifest_s, "memory_s": memory_s,
        "pairs_per_s": pairs / manifest_s, "memory_pairs_per_s": pairs / memory_s, "ratio": memory_s / manifest_s,
        "gflops_per_pair": flops / 1e9, "tflops": tflops,
        "peak_tflops": peak, "fraction_of_peak": None if peak is None else tflops / peak,
        "peak_s": None if peak is None else train_flops / (peak * 1e12),
    }


def rows_of(result: dict) -> list[Row]:
    what = (f"model.fit from the manifest (dsxsd pipeline): width {result['width']}, "
            f"{result['image_size']} px, batch {result['batch']}, {result['precision']}, "
            f"epochs of {result['steps']} step{'s' * (result['steps'] != 1)} on {result['device']}; "
            f"{result['pairs_per_s']:,.0f} pairs/s, "
            f"{result['gflops_per_pair']:.3g} GFLOP/pair forward, {result['tflops']:.3g} TFLOP/s")
    rows = [Row(STAGE, what, result["manifest_s"], "the same model fed the same batches from memory",
                result["memory_s"], "speedup", TARGET)]
    if result["peak_s"] is not None:
        goal = result["width"] == 1.0 and result["image_size"] == 105 and result["precision"] == "mixed_bfloat16"
        rows.append(Row(
            STAGE, f"{what}: {100 * result['fraction_of_peak']:.1f}% of peak", result["manifest_s"],
            f"the same FLOPs at the {result['device']}'s dense bf16 peak ({result['peak_tflops']:g} TFLOP/s)",
            result["peak_s"], "overhead", 1 / PEAK_GOAL if goal else None,
        ))
    return rows


def sizes(quick: bool, full: bool | None, gpu: bool) -> tuple[Size, ...]:
    if quick:
        return QUICK
    base, full_size = (GPU_SIZES, GPU_FULL) if gpu else (CPU_SIZES, CPU_FULL)
    return base + ((full_size,) if (gpu if full is None else full) else ())


def measure(quick: bool = False, *, full: bool | None = None, precision: str | None = None) -> list[Row]:
    """The rows of ``benchmarks/run.py``. ``full``: add the full network (default: on a
    GPU only). ``precision`` defaults to ``mixed_bfloat16`` on a GPU (the goal's), else
    ``float32``."""
    gpu = accelerator_name() is not None
    precision = precision or ("mixed_bfloat16" if gpu else "float32")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-train-") as tmp:
        manifest = make_manifest(Path(tmp), quick, gpu)
        for size in sizes(quick, full, gpu):
            rows += rows_of(measure_size(manifest, size, precision))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny size, a few steps")
    parser.add_argument("--full-size", action="store_true", default=None,
                        help="add the full network (width 1.0, 105 px) on a CPU too (default: on a GPU only)")
    parser.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"],
                        help="default: mixed_bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    rows = measure(args.quick, full=args.full_size, precision=args.precision)
    print(table(rows, markdown=args.markdown))


if __name__ == "__main__":
    main()
