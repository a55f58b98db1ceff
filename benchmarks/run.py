"""Run dsxsd's benchmarks and print one table of ratios measured in this run.

Each stage is a module ``benchmarks/bench_<stage>.py`` with ``measure(quick) -> list[Row]``;
every figure in the table is against a baseline (or a limit) timed in the same run on the
same machine, since absolute seconds from another machine, or another minute of a shared
one, mean little. The machine is printed above the table. Each stage runs in a fresh
interpreter, as a user runs one command: a stage measured in the process of the one
before it inherits its memory and threads (the pipeline after crop's worker pools was
measured at 1.44x of its limit instead of 1.19x).

It reports, it does not test: the exit status is 0 when every stage ran, whether or not
its targets were met (the missed ones are listed under the table); 1 when a stage failed
to run; 2 on a usage error.

    python benchmarks/run.py                   # every stage, full size
    python benchmarks/run.py --quick           # smaller inputs, fewer runs (2-3 minutes)
    python benchmarks/run.py --only pipeline,pairs,import --markdown
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks._common import Row, last_line_in_fresh_process, table  # noqa: E402

# stage -> what it compares, for --help and for the user told a stage is missing
STAGES = {
    "convert": "voc2csv against the xml_to_csv.py ElementTree loop",
    "crop": "dsxsd crop against a per-object PIL crop loop",
    "pipeline": "tf.data pipeline against a per-pair PIL loader and the decode+resize limit",
    "pairs": "make-pairs at 1M crops, and against a pure-Python sampler",
    "import": "`import dsxsd` in a fresh interpreter, and the heavy modules it loads",
    "train": "model.fit fed by the pipeline against fed from memory; FLOPs, TFLOP/s, GPU peak",
    "frozen": "--freeze-backbone: a head epoch on cached features against the frozen tower run per pair",
    "store": "fit past --cache-limit from the disk store: peak memory, first epoch vs the decode limit, vs memory",
    "serve": "dsxsd predict from the exported .onnx against from model.keras; onnxruntime against Keras",
    "search": "a query of the approximate index (FAISS candidates re-ranked by the head) against the exact search; recall@10",
}


def machine() -> str:
    """One line naming what the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    parts = [
        f"{usable} cores usable ({os.cpu_count()} in the machine)",
        f"Python {platform.python_version()}",
        f"{platform.system()} {platform.machine()}",
    ]
    for dist in ("tensorflow", "tensorflow-cpu", "numpy", "pandas", "pillow"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def load_stage(stage: str):
    """The stage's module, or ``None`` with the reason printed when it cannot run."""
    name = f"benchmarks.bench_{stage}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            print(f"[{stage}] skipped: benchmarks/bench_{stage}.py does not exist", file=sys.stderr)
        else:
            print(f"[{stage}] skipped: it needs the module {error.name!r}, which is not installed",
                  file=sys.stderr)
        return None
    if not callable(getattr(module, "measure", None)):
        print(f"[{stage}] skipped: benchmarks/bench_{stage}.py has no measure(quick) function",
              file=sys.stderr)
        return None
    return module


def rows_in_fresh_process(stage: str, quick: bool) -> list[Row] | None:
    """The stage's rows, measured by ``run.py --rows-of STAGE`` in a new interpreter, or
    ``None`` when it failed (its traceback printed on stderr)."""
    argv = [str(Path(__file__).resolve()), "--rows-of", stage] + (["--quick"] if quick else [])
    try:
        line = last_line_in_fresh_process(*argv)
    except RuntimeError as failure:
        print(failure, file=sys.stderr)
        return None
    return [Row(**fields) for fields in json.loads(line)]


def missed(rows: list[Row]) -> list[str]:
    """One line per row whose target was missed: a ratio names its baseline, a time what
    was timed."""
    return [
        f"{row.stage}, {row.what if row.kind == 'seconds' else 'vs ' + row.baseline}: "
        f"{row.figure()} (target {row.goal()})"
        for row in rows if row.met is False
    ]


def parse_stages(text: str | None, parser: argparse.ArgumentParser) -> list[str]:
    if not text:
        return list(STAGES)
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown or not chosen:
        parser.error(f"unknown stage(s) {', '.join(unknown) or repr(text)}; "
                     f"choose from {', '.join(STAGES)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="stages: " + "; ".join(f"{name} ({what})" for name, what in STAGES.items()),
    )
    parser.add_argument("--quick", action="store_true", help="a fast pass: smaller inputs, fewer runs")
    parser.add_argument("--only", metavar="STAGES", help=f"comma-separated, of: {','.join(STAGES)}")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--rows-of", choices=list(STAGES), help=argparse.SUPPRESS)  # see rows_in_fresh_process
    args = parser.parse_args(argv)
    if args.rows_of:
        print(json.dumps([dataclasses.asdict(row) for row in load_stage(args.rows_of).measure(args.quick)]))
        return 0
    stages = parse_stages(args.only, parser)

    rows: list[Row] = []
    skipped: list[str] = []
    failed: list[str] = []
    for stage in stages:
        module = load_stage(stage)
        if module is None:
            skipped.append(stage)
            continue
        print(f"[{stage}] measuring...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        stage_rows = rows_in_fresh_process(stage, args.quick)
        if stage_rows is None:  # one broken stage must not hide the others' figures
            print(f"[{stage}] FAILED (traceback above)", file=sys.stderr)
            failed.append(stage)
            continue
        rows += stage_rows
        print(f"[{stage}] done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    mode = "quick" if args.quick else "full"
    print(f"Machine: {machine()}")
    print(f"Run: {mode}, stages {', '.join(stages)}; every figure is against a baseline timed "
          "in this same run.\n")
    if rows:
        print(table(rows, markdown=args.markdown))
    else:
        print("(no figures)")
    print()
    misses = missed(rows)
    print("Missed targets: " + ("; ".join(misses) if misses else "none")
          + ("" if any(r.target is not None for r in rows) else " (no targets measured)"))
    if skipped:
        print(f"Skipped (not available here): {', '.join(skipped)}")
    if failed:
        print(f"Failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
