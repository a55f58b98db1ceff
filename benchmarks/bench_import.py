"""How long ``import dsxsd`` takes, and whether it drags in the heavy libraries.

Every ``dsxsd`` command and every script that uses the API pays the import first, so it
must stay short: ``dsxsd/__init__.py`` loads its heavy modules (pandas, numpy, Pillow,
lxml, TensorFlow) lazily, on first use.

The figure is the import alone, in a fresh interpreter each time (``python -c "import
dsxsd"``, so no module is already loaded), minus the start of a bare interpreter
(``python -c pass``) measured the same way. Both are the best of several runs, alternated
so that load from other processes hits both alike. It also lists which heavy libraries the
import loaded (there must be none) and, with ``--importtime``, the slowest modules by
``python -X importtime`` (self + children, microseconds).

    python benchmarks/bench_import.py [--runs 15] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks._common`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, table, timed  # noqa: E402

STAGE = "import dsxsd"
TARGET_S = 0.3
HEAVY = ("pandas", "numpy", "PIL", "lxml", "tensorflow", "keras", "matplotlib")
FULL_RUNS = 15
QUICK_RUNS = 5


def _python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def import_seconds(runs: int) -> tuple[float, float]:
    """Best-of-``runs`` wall time of ``python -c "import dsxsd"`` and of ``python -c pass``."""
    _python("import dsxsd")  # warm the file cache and the bytecode, outside every timing
    bare, full = [], []
    for _ in range(runs):
        bare.append(timed(_python, "pass")[1])
        full.append(timed(_python, "import dsxsd")[1])
    return min(full), min(bare)


def heavy_modules_loaded() -> list[str]:
    """Which of :data:`HEAVY` a fresh ``import dsxsd`` leaves in ``sys.modules``."""
    code = (
        "import sys, json, dsxsd; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def slowest_imports(count: int = 10) -> list[tuple[int, str]]:
    """The ``count`` slowest imports under ``import dsxsd`` by ``-X importtime``
    (cumulative microseconds, module), top-level packages first among equals."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import dsxsd"],
        check=True, capture_output=True, text=True,
    )
    found = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        # "import time: <self us> | <cumulative us> | <indented module name>"
        _, cumulative, name = line.split("|", 2)
        found.append((int(cumulative), name.strip()))
    return sorted(found, reverse=True)[:count]


def measure(quick: bool = False, runs: int | None = None) -> list[Row]:
    runs = runs or (QUICK_RUNS if quick else FULL_RUNS)
    full, bare = import_seconds(runs)
    heavy = heavy_modules_loaded()
    pulled = f"pulls in {', '.join(heavy)}" if heavy else "no heavy library loaded"
    return [
        Row(STAGE, f"fresh interpreter, best of {runs}, minus start ({pulled})",
            max(full - bare, 0.0), "python -c pass (printed for scale)", bare, "seconds", TARGET_S),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help=f"interpreter starts per timing (default {FULL_RUNS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs")
    parser.add_argument("--importtime", action="store_true", help="list the slowest imports")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(table(measure(args.quick, args.runs), markdown=args.markdown))
    heavy = heavy_modules_loaded()
    print(f"\nheavy libraries loaded by `import dsxsd`: {', '.join(heavy) if heavy else 'none'}")
    if args.importtime:
        print("\nslowest imports (python -X importtime, cumulative us):")
        for micros, name in slowest_imports():
            print(f"  {micros:>9,}  {name}")


if __name__ == "__main__":
    main()
