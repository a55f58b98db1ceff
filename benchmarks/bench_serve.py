"""Serving an exported model: ``dsxsd predict`` from the ``.onnx`` against from
``model.keras``, and batch scoring with onnxruntime against Keras.

One model per size is built (untrained: the time does not depend on the weights), saved
as a run folder and exported with ``dsxsd export`` (ONNX, siamese part). Then:

- the whole command ``dsxsd predict MODEL a.jpg b.jpg``, interpreter start included, as a
  user runs it: from the ``.onnx`` (onnxruntime, no TensorFlow) against from
  ``model.keras`` (TensorFlow). Targets: the ``.onnx`` command under 1 s, and at least 5x
  quicker than the Keras one. The commands take turns and each keeps its best run;
- batch scoring, pairs/s: ``session.run`` of the export against calling the Keras model
  on the same batches of images already in memory (the model's own cost, no decoding),
  each the best of a few passes. Reported, no target.

The sizes are the README's CPU smoke runs (width 0.125 at 32 px, 0.25 at 64 px) and the
full network (width 1.0 at 105 px), which is also the model of the command rows.

    python benchmarks/bench_serve.py            # every size
    python benchmarks/bench_serve.py --quick    # one tiny size, few runs (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, best_of, interleaved, table  # noqa: E402

STAGE = "serve"
COMMAND_SECONDS = 1.0  # the .onnx predict command, whole
COMMAND_SPEEDUP = 5.0  # over the same command from model.keras


@dataclass(frozen=True)
class Size:
    width: float
    image_size: int
    batch: int  # pairs scored per call

    def __str__(self) -> str:
        return f"width {self.width:g}, {self.image_size} px"


CPU_SIZES = (Size(0.125, 32, 256), Size(0.25, 64, 128))
FULL = Size(1.0, 105, 32)
QUICK = Size(0.125, 32, 16)


def make_run(folder: Path, size: Size) -> Path:
    """``folder`` as a finished run of an untrained model, and its siamese.onnx export."""
    import keras

    import dsxsd
    from dsxsd.train import build_model

    keras.utils.set_random_seed(0)
    folder.mkdir(parents=True)
    model = build_model(size.image_size, size.width)
    model.save(folder / "model.keras")
    model.save(folder / "best.keras")
    config = {"format": "dsxsd.run", "image_size": size.image_size, "width": size.width, "resize": "stretch"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    dsxsd.export(folder, folder / "siamese.onnx")
    return folder


def make_images(folder: Path) -> tuple[Path, Path]:
    """Two photo-sized JPEGs, as a user would score."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.jpg", "b.jpg"):
        pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, quality=90)
        paths.append(folder / name)
    return paths[0], paths[1]


def predict_command(model: Path, a: Path, b: Path) -> None:
    """``dsxsd predict MODEL a b`` in a new interpreter, as a shell runs it."""
    code = "import sys; from dsxsd.cli import main; sys.argv[0] = 'dsxsd'; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "predict", str(model), str(a), str(b)], capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dsxsd predict {model} failed:\n{done.stderr.strip()}")


def command_rows(run: Path, a: Path, b: Path, runs: int) -> list[Row]:
    keras_s, onnx_s = interleaved(
        runs, (predict_command, run / "model.keras", a, b), (predict_command, run / "siamese.onnx", a, b),
    )
    what = "dsxsd predict siamese.onnx a.jpg b.jpg (whole command, no TensorFlow)"
    return [
        Row(STAGE, what, onnx_s, "the same command from model.keras", keras_s, "speedup", COMMAND_SPEEDUP),
        Row(STAGE, what, onnx_s, "-", None, "seconds", COMMAND_SECONDS),
    ]


def scoring_row(run: Path, size: Size, passes: int, calls: int) -> Row:
    """Pairs/s of ``calls`` batches through onnxruntime against through Keras."""
    import numpy as np
    import onnxruntime

    from dsxsd.train import load_model

    rng = np.random.default_rng(1)
    shape = (size.batch, size.image_size, size.image_size, 3)
    left, right = (rng.uniform(0, 255, shape).astype(np.float32) for _ in range(2))
    model = load_model(run / "model.keras")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # as dsxsd's own sessions: not the optional inputs' warnings
    session = onnxruntime.InferenceSession(str(run / "siamese.onnx"), options, providers=["CPUExecutionProvider"])

    def keras_calls():
        for _ in range(calls):
            np.asarray(model([left, right], training=False))

    def onnx_calls():
        for _ in range(calls):
            session.run(["score"], {"left": left, "right": right})

    keras_calls()  # trace and warm up both, untimed
    onnx_calls()
    _, keras_s = best_of(passes, keras_calls)
    _, onnx_s = best_of(passes, onnx_calls)
    pairs = size.batch * calls
    what = (
        f"onnxruntime scoring pairs, {size}, batch {size.batch}: {pairs / onnx_s:,.0f} pairs/s "
        f"(Keras {pairs / keras_s:,.0f})"
    )
    return Row(STAGE, what, onnx_s, "Keras calling the model on the same batches", keras_s, "speedup", None)


def measure(quick: bool = False) -> list[Row]:
    sizes = (QUICK,) if quick else (*CPU_SIZES, FULL)
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-serve-") as tmp:
        root = Path(tmp)
        a, b = make_images(root)
        runs = {size: make_run(root / f"run-{i}", size) for i, size in enumerate(sizes)}
        command_size = QUICK if quick else FULL
        rows = command_rows(runs[command_size], a, b, runs=2 if quick else 5)
        for size in sizes:
            rows.append(scoring_row(runs[size], size, passes=2 if quick else 3, calls=2 if quick else 8))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny size, few runs")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    print(table(measure(args.quick), markdown=args.markdown))


if __name__ == "__main__":
    main()
