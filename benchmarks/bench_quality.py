"""Model quality on a small real dataset: what each training recipe reaches, and how fast.

The data are real handwriting that ships with scikit-learn (``load_digits``: 1,797 scans
of the digits 0-9, 8x8 pixels, no download), written as class folders and paired by
``dsxsd make-pairs``. Two protocols:

- ``small``: 50 images per class, the images split 60/20/20 (``--split-by item``), 4
  positives per image: about 300 training images, the size of a first real dataset
  (the issue's 6 classes of photographed objects). Measured on the test images: ROC AUC,
  equal error rate, and 10-way one-shot accuracy (400 trials);
- ``unseen``: every image, the classes split 60/10/30 (``--split-by class``): the test
  classes were never trained on, the one-shot protocol. ROC AUC, EER, 3-way one-shot.

A recipe is the options of ``dsxsd train``, as typed: each trains by the command itself
(in this process), then ``best.keras`` is evaluated. The rows give the figures and the
wall time of training. Quality does not come as a ratio, so this benchmark prints its own
table and is not among ``run.py``'s stages.

    python benchmarks/bench_quality.py              # both protocols, the recipes below
    python benchmarks/bench_quality.py --quick      # a tiny pass (seconds), for the tests
    python benchmarks/bench_quality.py --protocol small \
        --recipe "--preset cpu" --recipe "--preset cpu --augment crops --weight-decay 0.05"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# dsxsd train's options. The first is the first recipe a new user tried on real photos (a
# CPU-sized model, no preset); the preset is what dsxsd now recommends.
RECIPES = ("--width 0.125 --image-size 64 --epochs 10", "--preset cpu")
QUICK_RECIPES = ("--preset cpu --epochs 1 --image-size 32",)


@dataclass(frozen=True)
class Protocol:
    name: str
    per_class: int | None  # images per class kept; None: all
    split: str
    split_by: str
    positives: int
    n_way: int


PROTOCOLS = (
    Protocol("small", 50, "0.6,0.2,0.2", "item", 4, 10),
    Protocol("unseen", None, "0.6,0.1,0.3", "class", 2, 3),
)
QUICK = Protocol("small", 12, "0.6,0.2,0.2", "item", 1, 5)


@dataclass(frozen=True)
class Result:
    protocol: str
    recipe: str
    train_s: float
    epochs: int
    best_epoch: int
    roc_auc: float
    eer: float
    n_way: int
    one_shot: float


def write_digits(root: Path, per_class: int | None) -> Path:
    """scikit-learn's digits as ``root/<digit>/<index>.png`` (grey, 0-255)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    kept: dict[int, int] = {}
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        if per_class is not None and kept.get(target, 0) >= per_class:
            continue
        kept[target] = kept.get(target, 0) + 1
        folder = root / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).astype(np.uint8)).save(folder / f"{index}.png")
    return root


def measure_one(root: Path, protocol: Protocol, recipe: str) -> Result:
    import shlex

    from click.testing import CliRunner

    import dsxsd
    from dsxsd.cli import main
    from dsxsd.train.evaluate import evaluate, evaluate_n_way

    folder = root / protocol.name
    pairs = folder / "pairs.csv"
    if not pairs.exists():
        write_digits(folder / "digits", protocol.per_class)
        dsxsd.make_pairs(folder / "digits", pairs, positives=protocol.positives, split=protocol.split,
                         split_by=protocol.split_by, seed=0)
    run = folder / f"run-{len(list(folder.glob('run-*')))}"
    start = time.perf_counter()
    done = CliRunner().invoke(main, ["train", str(pairs), "--out", str(run), *shlex.split(recipe), "--json"])
    train_s = time.perf_counter() - start
    if done.exit_code:
        raise SystemExit(f"recipe {recipe!r}: {done.output.strip() or done.exception!r}")
    summary = json.loads(done.stdout)
    pairs_result = evaluate(run / "best.keras", pairs, "test", plots=False)
    one_shot = evaluate_n_way(run / "best.keras", pairs, protocol.n_way, 400, split="test", overwrite=True)
    return Result(
        protocol.name, recipe, train_s, summary["epochs"], summary["best_epoch"],
        pairs_result.roc_auc, pairs_result.eer, protocol.n_way, one_shot.accuracy,
    )


def measure(quick: bool = False, recipes: list[str] | None = None, protocols: list[str] | None = None) -> list[Result]:
    """Every recipe on every protocol (``protocols``: names of :data:`PROTOCOLS`; with
    ``quick``, a tiny "small")."""
    chosen = (QUICK,) if quick else tuple(p for p in PROTOCOLS if protocols is None or p.name in protocols)
    recipes = list(recipes or (QUICK_RECIPES if quick else RECIPES))
    results = []
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-quality-") as tmp:
        for protocol in chosen:
            for recipe in recipes:
                results.append(measure_one(Path(tmp), protocol, recipe))
                print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)  # as they come
    return results


def table(results: list[Result]) -> str:
    head = "| protocol | recipe | train s | epochs (best) | test ROC AUC | EER | one-shot |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.protocol} | {r.recipe} | {r.train_s:.0f} | {r.epochs} ({r.best_epoch}) | "
            f"{r.roc_auc:.3f} | {r.eer:.3f} | {r.one_shot:.3f} ({r.n_way}-way) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny pass (seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--recipe", action="append", metavar="OPTIONS",
                        help='dsxsd train options, quoted, e.g. "--preset cpu --augment crops" (repeatable; '
                        'default: the recipes of the table in benchmarks/README.md)')
    parser.add_argument("--protocol", action="append", choices=[p.name for p in PROTOCOLS],
                        help="only this protocol (repeatable; default: all)")
    args = parser.parse_args(argv)
    results = measure(args.quick, args.recipe, args.protocol)
    print(json.dumps([r.__dict__ for r in results], indent=2) if args.json else table(results))


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
