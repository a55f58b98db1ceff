"""What every benchmark reports: one :class:`Row` per figure, and the table they make.

A figure is always relative to something measured in the same run on the same machine
(these machines are noisy, so absolute seconds from another run mean little):

- ``speedup``: ``baseline_s / seconds``, how many times faster than the baseline
  (target: at least ``target``);
- ``overhead``: ``seconds / baseline_s``, how close to a limit no implementation can beat
  (target: at most ``target``);
- ``seconds``: a plain time with a ceiling (``import dsxsd``, make-pairs on 1M crops); the
  baseline, if any, is printed for scale.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Literal, Optional, TypeVar

T = TypeVar("T")

Kind = Literal["speedup", "overhead", "seconds"]


@dataclass(frozen=True)
class Row:
    stage: str  # "convert voc2csv", "crop", ...
    what: str  # what was timed: "dsxsd, --workers 2 (17,000 files)"
    seconds: float
    baseline: str  # what it is compared with: "ElementTree loop (xml_to_csv.py)"
    baseline_s: Optional[float]
    kind: Kind
    target: Optional[float]  # None: reported, no target

    @property
    def ratio(self) -> Optional[float]:
        if self.kind == "seconds" or not self.baseline_s:
            return None
        if self.kind == "speedup":
            return self.baseline_s / self.seconds
        return self.seconds / self.baseline_s

    @property
    def met(self) -> Optional[bool]:
        if self.target is None:
            return None
        if self.kind == "seconds":
            return self.seconds <= self.target
        ratio = self.ratio
        assert ratio is not None
        return ratio >= self.target if self.kind == "speedup" else ratio <= self.target

    def figure(self) -> str:
        if self.kind == "seconds":
            return f"{self.seconds:.3f} s"
        word = "faster" if self.kind == "speedup" else "of the limit"
        return f"{self.ratio:.2f}x {word}"

    def goal(self) -> str:
        if self.target is None:
            return "-"
        if self.kind == "seconds":
            return f"< {self.target:g} s"
        return f">= {self.target:g}x" if self.kind == "speedup" else f"<= {self.target:g}x"


def timed(function: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def best_of(runs: int, function: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """The fastest of ``runs`` calls: the least disturbed by other work on the machine."""
    results = [timed(function, *args, **kwargs) for _ in range(runs)]
    return min(results, key=lambda pair: pair[1])


def interleaved(runs: int, *calls: tuple, self_timed: bool = False) -> list[float]:
    """The best time of each call over ``runs`` rounds, the calls taking turns within a
    round: load from other work on the machine then falls on all of them alike. With
    ``self_timed``, each call returns the seconds it measured itself (see
    :func:`in_fresh_process`) and those are compared."""
    best = [float("inf")] * len(calls)
    for _ in range(runs):
        for index, (function, *args) in enumerate(calls):
            result, seconds = timed(function, *args)
            best[index] = min(best[index], result if self_timed else seconds)
    return best


def best_fit_epoch_seconds(model, ds, steps: int, rounds: int) -> float:
    """The quickest of ``rounds`` epochs of ``steps`` steps of ``model.fit`` on ``ds``, after
    an untimed one (tracing). Keras waits for the device at the end of each epoch, so an
    epoch's time is complete."""
    import keras

    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                times.append(time.perf_counter() - self.start)

    model.fit(ds, epochs=1 + rounds, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[EpochTimer()])
    return min(times)


def in_fresh_process(*argv: str) -> float:
    """Run ``python argv...`` and return the seconds it printed on its last line: a run as
    a user's script runs, in a new interpreter whose state (threads, imports, start
    method of worker processes) no earlier benchmark changed, timed by itself so that
    starting Python is left out."""
    return float(last_line_in_fresh_process(*argv).split()[-1])


def last_line_in_fresh_process(*argv: str) -> str:
    """The last line ``python argv...`` printed; RuntimeError with its stderr if it failed."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr.strip()}")
    return done.stdout.splitlines()[-1]


# Dense bf16 TFLOP/s from the vendors' spec sheets (no sparsity); dense fp16 is the same
# on these chips. Looked up by a part of the device's name, the first match wins: the
# PCIe and NVL H100s before the SXM one.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0,
    "A100": 312.0, "L40S": 362.0, "L4": 121.0,
}


def peak_tflops(device_name: str, given: float | None = None) -> float | None:
    """The device's dense bf16 peak: ``given``, else the table's, else ``None`` (unknown)."""
    if given is not None:
        return given
    return next((tflops for chip, tflops in PEAK_BF16_TFLOPS.items() if chip in device_name), None)


def forward_flops(model) -> int:
    """FLOPs of one forward pass of one pair through dsxsd's Siamese ``model``.

    Counted from the layers (a convolution: ``2 * H * W * k * k * C_in * C_out`` per
    image; a dense layer: ``2 * inputs * outputs``); the tower runs once per image of the
    pair. A training step costs about three forward passes (the backward pass about two).
    """
    import keras

    def layer_flops(layer) -> int:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            k_h, k_w = layer.kernel_size
            return 2 * height * width * k_h * k_w * layer.input.shape[-1] * filters
        if isinstance(layer, keras.layers.Dense):
            return 2 * layer.input.shape[-1] * layer.units
        return 0

    tower = model.get_layer("tower")
    head = [layer for layer in model.layers if layer is not tower]
    return 2 * sum(map(layer_flops, tower.layers)) + sum(map(layer_flops, head))


def accelerator_name() -> str | None:
    """The name of the GPU (or other accelerator) Keras' backend computes on, e.g.
    ``NVIDIA H100 80GB HBM3``; ``None`` on a CPU."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return None if device.platform == "cpu" else device.device_kind
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else None
    except Exception:  # a name is only for the report
        pass
    return None


def cores() -> int:
    from dsxsd._engine import available_cores

    return available_cores()


def table(rows: list[Row], markdown: bool = False) -> str:
    header = ("stage", "measured", "time s", "against", "base s", "figure", "target", "met")
    lines = [
        (
            row.stage,
            row.what,
            f"{row.seconds:.3f}",
            row.baseline,
            "-" if row.baseline_s is None else f"{row.baseline_s:.3f}",
            row.figure(),
            row.goal(),
            {True: "yes", False: "NO", None: "-"}[row.met],
        )
        for row in rows
    ]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)
