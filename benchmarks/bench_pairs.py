"""How fast ``make_pairs`` is, against baselines measured in the same run.

For 10k, 100k and 1M crops (1,000 per class, so 10, 100 and 1,000 classes), with the
defaults (1 positive per image, 1 negative per positive: 2 pairs per crop), it prints:

- pairs/s of ``make_pairs`` on an in-memory crops table (the sampling alone, best of two
  runs) and from ``crops.csv`` on disk to ``pairs.csv`` on disk (what ``dsxsd
  make-pairs`` does, one run);
- the ratio of the sampling time to a bare ``Generator.integers`` draw of as many index
  pairs: the floor no sampler can beat, so the ratio says what splitting, de-duplication
  and bookkeeping cost on top of it;
- the peak memory of the sampling per output pair (tracemalloc, a separate run), which
  stays flat as the input grows: memory follows the output, no n^2 candidate table;
- on the 10k and 100k cases, the speed-up over a straightforward pure-Python sampler (a
  loop over images with ``random`` and a set of seen pairs).

It prints ratios and never asserts times: machines differ. Run it as
``python benchmarks/bench_pairs.py`` (about a minute) or ``--sizes 10000,100000``;
``--table`` prints instead the rows :func:`measure` gives ``benchmarks/run.py``:

- ``make-pairs 1M crops``: ``crops.csv`` on disk to ``pairs.csv`` on disk (2M pairs),
  best of two runs (quick: three), target under 10 s, and the sampling alone (in
  memory, no target); the bare ``rng.integers`` draw of as many index pairs is printed
  beside them for scale. ``quick`` does 100k crops (200k pairs) against a scaled
  target of 1 s (the work is linear in the crops);
- the speed-up of the sampling over the pure-Python sampler on 100k crops (``quick``:
  10k), per pair, best of two runs each; reported, no target.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make ``benchmarks._common`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, best_of, table  # noqa: E402
from dsxsd.pairs import make_pairs  # noqa: E402

PER_CLASS = 1000
NAIVE_MAX = 100_000  # the pure-Python baseline takes about a minute on a million crops


def crops_table(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` crops in ``n / PER_CLASS`` classes, with shuffled rows as a crop run gives."""
    rng = np.random.default_rng(seed)
    classes = np.arange(n) // PER_CLASS
    rng.shuffle(classes)
    names = np.array([f"class_{c:04d}" for c in range(n // PER_CLASS)], dtype=object)
    return pd.DataFrame(
        {
            "path": [f"class_{c:04d}/img_{i:07d}_0.jpg" for i, c in enumerate(classes)],
            "class": names[classes],
            "source": [f"/data/images/img_{i // 3:07d}.jpg" for i in range(n)],
        }
    )


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def numpy_floor(count: int) -> float:
    """Time to draw ``count`` random (left, right) index pairs and nothing else."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    rng.integers(0, count, size=count, dtype=np.int64)
    rng.integers(0, count, size=count, dtype=np.int64)
    return time.perf_counter() - start


def naive_pairs(crops: pd.DataFrame, seed: int = 0) -> list[tuple[str, str, int]]:
    """The obvious pure-Python sampler: per image one positive and one negative partner,
    drawn with ``random`` and checked against a set of the pairs seen so far."""
    rng = random.Random(seed)
    by_class: dict[str, list[str]] = {}
    for path, cls in zip(crops["path"], crops["class"]):
        by_class.setdefault(cls, []).append(path)
    paths = list(crops["path"])
    class_of = dict(zip(crops["path"], crops["class"]))
    seen: set[frozenset[str]] = set()
    pairs = []
    for path in paths:
        same = by_class[class_of[path]]
        while True:
            other = rng.choice(same)
            key = frozenset((path, other))
            if other != path and key not in seen:
                break
        seen.add(key)
        pairs.append((path, other, 1))
        while True:
            other = rng.choice(paths)
            key = frozenset((path, other))
            if class_of[other] != class_of[path] and key not in seen:
                break
        seen.add(key)
        pairs.append((path, other, 0))
    return pairs


def peak_bytes(crops: pd.DataFrame) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    make_pairs(crops)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    return peak


STAGE = "make-pairs"
TARGET_S_PER_MILLION = 10.0


def measure(quick: bool = False) -> list[Row]:
    """The rows of ``benchmarks/run.py``: file to file at 1M crops (quick: 100k) with a
    target, and the speed-up over the pure-Python sampler at 100k crops (quick: 10k)."""
    n = 100_000 if quick else 1_000_000
    naive_n = 10_000 if quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-pairs-") as tmp:
        crops = crops_table(n)
        folder = Path(tmp) / "crops"
        folder.mkdir()
        crops.to_csv(folder / "crops.csv", index=False, lineterminator="\n")
        file_runs = 3 if quick else 2
        pairs, file_s = min(
            (timed(make_pairs, folder / "crops.csv", Path(tmp) / f"run{r}" / "pairs.csv")
             for r in range(file_runs)),
            key=lambda result: result[1],
        )
        floor_s = numpy_floor(len(pairs))
        rows.append(Row(
            STAGE, f"crops.csv -> pairs.csv, {n:,} crops -> {len(pairs):,} pairs, best of {file_runs}",
            file_s, "bare rng.integers draw (printed for scale)", floor_s, "seconds",
            TARGET_S_PER_MILLION * n / 1_000_000,
        ))
        # The same in memory: how much of that is the sampling, how much CSV in and out.
        pairs, sample_s = timed(make_pairs, crops)
        rows.append(Row(
            STAGE, f"sampling only (DataFrame in, no file), {n:,} crops, 1 run",
            sample_s, "bare rng.integers draw (printed for scale)", floor_s, "seconds", None,
        ))
    small = crops_table(naive_n)
    pairs, sample_s = best_of(2, make_pairs, small)
    naive, naive_s = best_of(2, naive_pairs, small)
    # Per pair: the two samplers need not return exactly as many pairs.
    rows.append(Row(
        STAGE, f"sampling only, {naive_n:,} crops -> {len(pairs):,} pairs, best of 2",
        sample_s, "pure-Python sampler (random + set)", naive_s * len(pairs) / len(naive),
        "speedup", None,
    ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="crop counts")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--table", action="store_true", help="print the rows of benchmarks/run.py")
    parser.add_argument("--quick", action="store_true", help="with --table: 100k and 10k crops")
    parser.add_argument("--markdown", action="store_true", help="with --table: as Markdown")
    args = parser.parse_args()
    if args.table:
        print(table(measure(args.quick), markdown=args.markdown))
        return
    sizes = [int(s) for s in args.sizes.split(",")]

    header = (
        f"{'crops':>9} {'classes':>7} {'pairs':>9} {'sample s':>9} {'pairs/s':>11} "
        f"{'x numpy floor':>13} {'file->file s':>12} {'pairs/s':>11} {'peak B/pair':>11}"
    )
    print(header)
    print("-" * len(header))
    naive_lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            crops = crops_table(n)
            # Best of two: the first call also pays for fresh memory pages.
            pairs, sample_s = min((timed(make_pairs, crops) for _ in range(2)), key=lambda r: r[1])
            floor_s = numpy_floor(len(pairs))

            folder = Path(tmp) / f"crops{n}"
            folder.mkdir()
            crops.to_csv(folder / "crops.csv", index=False, lineterminator="\n")
            output = Path(tmp) / f"run{n}" / "pairs.csv"
            _, file_s = timed(make_pairs, folder / "crops.csv", output)

            peak = "-" if args.no_memory else f"{peak_bytes(crops) / len(pairs):.0f}"
            print(
                f"{n:>9,} {n // PER_CLASS:>7,} {len(pairs):>9,} {sample_s:>9.2f} "
                f"{len(pairs) / sample_s:>11,.0f} {sample_s / floor_s:>13.0f} "
                f"{file_s:>12.2f} {len(pairs) / file_s:>11,.0f} {peak:>11}"
            )
            if n <= NAIVE_MAX or n == sizes[0]:
                naive, naive_s = timed(naive_pairs, crops)
                ratio = (naive_s / len(naive)) / (sample_s / len(pairs))
                naive_lines.append(
                    f"pure-Python sampler on {n:,} crops: {naive_s:.2f} s, "
                    f"{len(naive) / naive_s:,.0f} pairs/s; make_pairs is {ratio:.1f}x faster "
                    "per pair (and also splits without leaks)"
                )
    print()
    for line in naive_lines:
        print(line)
    print(
        "x numpy floor: sampling time / time of a bare rng.integers draw of as many index "
        "pairs.\npeak B/pair: tracemalloc peak of the sampling per output pair (flat = "
        "memory follows the output)."
    )


if __name__ == "__main__":
    main()
