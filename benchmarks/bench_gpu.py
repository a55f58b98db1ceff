"""The dsxsd network on an accelerator: pairs/s, images/s and the fraction of the chip's
bf16 peak it reaches.

Meant for ``KERAS_BACKEND=jax`` on a GPU machine where TensorFlow is not installed
(:mod:`dsxsd.train.network` needs Keras only). The batches are made once, on the device, so
the figures are the network's alone; the input pipeline has its own benchmark
(``bench_pipeline.py``). Training steps (forward, backward, Adam update) and inference are
timed after a warm-up that includes compilation; each step ends with its loss or scores
back on the host, so asynchronous dispatch cannot flatter the figure.

FLOPs are counted from the layers (a convolution: ``2 * H * W * k * k * C_in * C_out`` per
image; a dense layer: ``2 * inputs * outputs``); a training step counts three forward
passes (the backward pass costs about two), the usual approximation. The fraction of peak
uses the chip's dense bf16 figure: ``--peak-tflops``, or a known chip's spec sheet value.

    KERAS_BACKEND=jax python benchmarks/bench_gpu.py                       # width 1.0, 105 px, bf16
    KERAS_BACKEND=jax python benchmarks/bench_gpu.py --batch 512 --json out.json
    python benchmarks/bench_gpu.py --width 0.125 --image-size 32 --batch 8 --steps 2   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make dsxsd importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import accelerator_name, forward_flops, peak_tflops  # noqa: E402


def _timed_steps(step, steps: int) -> float:
    step()  # warm-up: compilation
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def measure(width: float, image_size: int, batch: int, steps: int, precision: str,
            given_peak: float | None) -> dict:
    import keras
    import numpy as np

    from dsxsd.train.network import build_model

    keras.config.set_dtype_policy(precision)
    model = build_model(image_size=image_size, width=width)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", jit_compile=True)
    rng = np.random.default_rng(0)
    shape = (batch, image_size, image_size, 3)
    # uint8 images as the dsxsd pipeline delivers them, put on the device once.
    left, right = (keras.ops.convert_to_tensor(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(2))
    labels = keras.ops.convert_to_tensor((np.arange(batch) % 2).astype("float32")[:, None])

    train_s = _timed_steps(lambda: model.train_on_batch([left, right], labels), steps)
    infer_s = _timed_steps(
        lambda: keras.ops.convert_to_numpy(model.predict_on_batch([left, right])), steps
    )
    flops = forward_flops(model)
    device = accelerator_name() or "cpu"
    peak = peak_tflops(device, given_peak)
    result = {
        "backend": keras.backend.backend(),
        "device": device,
        "width": width,
        "image_size": image_size,
        "batch": batch,
        "precision": precision,
        "parameters": model.count_params(),
        "gflops_per_pair_forward": flops / 1e9,
        "peak_bf16_tflops": peak,
    }
    for name, seconds, passes in (("train", train_s, 3), ("inference", infer_s, 1)):
        tflops = passes * flops * batch / seconds / 1e12
        result[name] = {
            "seconds_per_step": seconds,
            "pairs_per_s": batch / seconds,
            "images_per_s": 2 * batch / seconds,
            "tflops": tflops,
            "fraction_of_peak": None if peak is None else tflops / peak,
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=105)
    parser.add_argument("--batch", type=int, default=256, help="pairs per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after two warm-up steps)")
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=["mixed_bfloat16", "mixed_float16", "float32"])
    parser.add_argument("--peak-tflops", type=float, help="the chip's dense bf16 TFLOP/s (default: known chips)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = measure(args.width, args.image_size, args.batch, args.steps, args.precision, args.peak_tflops)
    print(f"{result['device']} ({result['backend']}), width {args.width}, {args.image_size} px, "
          f"batch {args.batch}, {args.precision}, {result['gflops_per_pair_forward']:.2f} GFLOP per pair forward")
    for name in ("train", "inference"):
        row = result[name]
        fraction = "-" if row["fraction_of_peak"] is None else f"{100 * row['fraction_of_peak']:.1f}% of bf16 peak"
        print(f"  {name:<9} {row['pairs_per_s']:>10,.0f} pairs/s {row['images_per_s']:>10,.0f} images/s "
              f"{row['tflops']:>8.1f} TFLOP/s  {fraction}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
