"""Training past memory: the disk image store (``--cache auto`` past ``--cache-limit``)
against the in-memory cache and the decode limit, measured in the same run.

1. Peak resident memory of ``dsxsd.train.fit`` (one short epoch, width 0.125, 105 px) on a
   generated manifest whose images do not fit ``--cache-limit``, in a fresh interpreter,
   against the fixed cost: the same run on a tiny manifest, plus the limit (target: at
   most 1x). Reported twice: the peak of all resident pages (``ru_maxrss``, which counts
   the store's pages mapped at that moment) and of the process's own memory (anonymous
   pages, sampled every 20 ms).
2. The first epoch of that short run from the store: the one pass that checks every image
   and writes it into a new store, then the epoch's batches gathered from it (as many steps
   as the run in 1), against the decode+resize limit (each distinct image read, decoded and
   resized once, nothing else; target at most 1.25x). Each turn in a fresh interpreter that
   builds its pipelines, as a user's first epoch does. Beside it, a whole epoch of pairs
   after the pass, and that epoch alone from a store out of the page cache, as one just
   written around it is, against the same epoch with the store in the cache: what a whole
   first epoch adds by reading the new store back once.
3. A later epoch, pairs gathered from the store while the page cache holds it, against the
   same epoch gathered from memory (``--cache memory``, ``tf.gather`` from one tensor): from
   the store within the limit, a split that fits both (target at least 0.8x as fast), and,
   for the cost of bounding memory, from the store past the limit, its mapped pages
   released whenever they may exceed it.

    python benchmarks/bench_store.py            # 3,000 crops, a few minutes on 2 cores
    python benchmarks/bench_store.py --full     # 300,000 crops (about 10 GB decoded), --cache-limit 1GB
    python benchmarks/bench_store.py --crops 30000 --limit 100MB
    python benchmarks/bench_store.py --full --data /tmp/crops300k   # the crops kept for another run

Memory figures are printed in the table's time columns, in MB (``what`` says so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make ``benchmarks._common`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, interleaved, last_line_in_fresh_process, table, timed  # noqa: E402

STAGE = "image store"
SIZE = 105
BATCH = 32
CLASSES = 50
TINY_CROPS = 100
MB = 2**20


def make_manifest(root: Path, crops: int) -> Path:
    """``crops`` generated JPEG crops in up to :data:`CLASSES` classes and make-pairs' pairs,
    split 60/20/20 into train, val and test."""
    import dsxsd
    from benchmarks.bench_pipeline import make_images

    classes = max(2, min(CLASSES, crops // 10))
    if not (root / "images").exists():
        make_images(root / "images", classes, crops // classes, SIZE)
    manifest = root / "pairs.csv"
    if not manifest.exists():
        dsxsd.make_pairs(root / "images", manifest, positives=1, split="0.6,0.2,0.2", seed=0)
    return manifest


# ---------------------------------------------------------------------- memory (fresh process)


def fit_child(manifest: str, out: str, limit: str, steps: int) -> None:
    """In a fresh interpreter: one short epoch of fit; print the peaks as JSON."""
    peak_anon = [0]

    def sample() -> None:
        while True:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak_anon[0] = max(peak_anon[0], int(line.split()[1]) * 1024)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    import resource

    from dsxsd.train import fit

    start = time.perf_counter()
    summary = fit(manifest, out, epochs=1, steps_per_epoch=steps, width=0.125, image_size=SIZE,
                  batch_size=BATCH, cache_limit=limit, verbose=0)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_anon": peak_anon[0],
        "image_cache": summary["image_cache"], "decoded": summary["images_decoded"], "seconds": seconds,
    }))


def fit_peaks(manifest: Path, out: Path, limit: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--fit-child", str(manifest), str(out), limit, str(steps)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------- time (this process)


def drain(ds) -> int:
    import tensorflow as tf

    return int(ds.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def first_epoch_child(manifest: str, folder: str, what: str, steps: int) -> None:
    """In a fresh interpreter, as a user's first epoch runs: print the CPU seconds (user and
    system, all threads) and then the seconds of ``what``, each pipeline built in its turn:

    - ``limit``: the decode+resize limit, each distinct image read, decoded and resized
      once, nothing else;
    - ``short``: what the first epoch of a run of ``steps`` steps does past the limit, check
      and store every image in one pass, then gather ``steps`` batches of pairs from the
      store; ``first``: the same with a whole epoch of pairs; ``unchecked``: that without
      the check (``check=False``); ``pass``: the pass alone;
    - ``epoch-cold`` and ``epoch-warm``: the epoch alone, from the store a turn before left
      in ``folder``, its pages first dropped from the page cache (what the first epoch
      reads from a store just written around it) or first read into it.

    A fresh process each turn: a pipeline's reader of a store stays registered with
    TensorFlow for the life of the process, and with it the store's mapping, which would
    keep each turn's deleted store on the disk."""
    import shutil

    from dsxsd.train import data
    from benchmarks.bench_pipeline import decode_limit_dataset

    pairs = data.pair_table(data.read_manifest(manifest), "train", manifest)

    def epoch(rows, batches: int = -1) -> None:
        drain(data.pairs_dataset(pairs, image_size=SIZE, batch_size=BATCH, shuffle=True, images=rows).take(batches))

    epoch_alone = what.startswith("epoch")
    if epoch_alone:
        rows = data.prepare({"train": pairs.paths}, image_size=SIZE, resize="stretch", cache=folder)["train"]
        assert rows.kind == "disk" and rows.decoded == 0, "no store left by a turn before"
        with open(rows.file, "rb") as f:
            if what == "epoch-cold":  # the store's clean pages out of the page cache, no privileges needed
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            else:
                while f.read(8 * MB):
                    pass
    else:
        shutil.rmtree(folder, ignore_errors=True)
    start, cpu = time.perf_counter(), os.times()
    if epoch_alone:
        epoch(rows)
    elif what == "limit":
        drain(decode_limit_dataset(pairs.paths, SIZE, BATCH))
    else:
        rows = data.prepare({"train": pairs.paths}, image_size=SIZE, resize="stretch", cache=folder,
                            source=manifest, rows=pairs.rows, check=what != "unchecked")["train"]
        if what != "pass":
            epoch(rows, steps if what == "short" else -1)
    used = os.times()
    print(used.user - cpu.user + used.system - cpu.system, time.perf_counter() - start)


def measure(quick: bool = False, *, crops: int | None = None, limit: str | None = None,
            data_folder: Path | None = None) -> list[Row]:
    from dsxsd import _preflight
    from dsxsd.train import data, store

    crops = crops or 3000
    limit = limit or ("1GB" if crops >= 100_000 else "20MB")
    runs = 2 if quick else 3
    steps = 10 if quick else 20
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-store-") as tmp:
        tmp = Path(tmp)
        manifest = make_manifest(data_folder or tmp / "big", crops)
        tiny = make_manifest(tmp / "tiny", TINY_CROPS)
        pairs = data.pair_table(data.read_manifest(manifest), "train", manifest)
        limit_bytes = _preflight.parse_size(limit)
        decoded_mb = len(pairs.paths) * SIZE * SIZE * 3 / MB

        # 1. memory: the store run against the fixed cost plus the limit
        fixed = fit_peaks(tiny, tmp / "tiny-run", limit, steps)
        big = fit_peaks(manifest, tmp / "big-run", limit, steps)
        what = (f"fit, 1 epoch of {steps} steps, {crops:,} crops ({len(pairs.paths):,} train images, "
                f"{decoded_mb:,.0f} MB decoded), --cache-limit {limit}, train on {big['image_cache']['train']}")
        bound = f"fixed cost ({TINY_CROPS} crops) + the limit"
        for key, name in (("peak_rss", "peak resident MB"), ("peak_anon", "peak own (anonymous) MB")):
            rows.append(Row(STAGE, f"{what}: {name} (MB in the time columns)", big[key] / MB, bound,
                            (fixed[key] + limit_bytes) / MB, "overhead", 1.0))

        # 2. the first epoch: one checking pass into a new store, then the epoch from it;
        #    each turn in a fresh interpreter, as a user's run (first_epoch_child)
        folder = tmp / "store"

        cpu: dict[str, float] = {}  # the least CPU seconds of each kind of turn

        def first_epoch(what: str) -> float:
            line = last_line_in_fresh_process(__file__, "--first-epoch-child", str(manifest), str(folder), what,
                                              str(steps))
            cpu_s, seconds = map(float, line.split())
            cpu[what] = min(cpu.get(what, cpu_s), cpu_s)
            return seconds

        first_epoch("limit")  # untimed: the files into the page cache
        cpu.clear()  # and its CPU seconds left out too
        limit_s, short_s, first_s, unchecked_s, pass_s = interleaved(
            runs, *((first_epoch, what) for what in ("limit", "short", "first", "unchecked", "pass")), self_timed=True
        )
        # The epoch alone, from the store the last pass left: what reading it back once costs
        cold_s, warm_s = interleaved(runs, (first_epoch, "epoch-cold"), (first_epoch, "epoch-warm"), self_timed=True)
        data_note = f"{len(pairs):,} pairs of {len(pairs.paths):,} images, {SIZE}px"
        short_note = f"{steps} batches of {BATCH} pairs, {len(pairs.paths):,} images, {SIZE}px"
        limit_name = "decode+resize limit (distinct images once)"
        rows += [
            Row(STAGE, "first epoch of the run in 1: check + decode into a new store + its batches from it: "
                f"{short_note}", short_s, limit_name, limit_s, "overhead", 1.25),
            Row(STAGE, f"a whole first epoch: check + decode into a new store + the epoch from it: {data_note}",
                first_s, limit_name, limit_s, "overhead", None),
            Row(STAGE, f"a whole first epoch, the header check left out (check=False): {data_note}",
                unchecked_s, limit_name, limit_s, "overhead", None),
            Row(STAGE, f"the decode pass alone (check + decode into a new store), no epoch: {data_note}",
                pass_s, limit_name, limit_s, "overhead", None),
            Row(STAGE, f"the epoch alone, the store in the page cache: {data_note}", warm_s,
                "the same epoch, the store out of the page cache, as one just written is", cold_s, "speedup", None),
            # The work apart from the waits: on a noisy machine of 2 cores the wall clock
            # of a turn moves by 15-30% with what else runs, its CPU seconds far less.
            Row(STAGE, f"first epoch of the run in 1, CPU seconds (user + system, all threads): {short_note}",
                cpu["short"], f"{limit_name}, CPU seconds", cpu["limit"], "overhead", None),
            Row(STAGE, f"the decode pass alone, CPU seconds: {data_note}",
                cpu["pass"], f"{limit_name}, CPU seconds", cpu["limit"], "overhead", None),
        ]

        # 3. later epochs from the store, the page cache warm, against the same from memory:
        #    the store within the limit (a subset that fits both: its pages stay mapped), and
        #    past it (its pages released whenever they may exceed the limit)
        within = data.prepare({"train": pairs.paths}, image_size=SIZE, resize="stretch", cache=folder,
                              cache_limit=10**15)["train"]
        past = data.prepare({"train": pairs.paths}, image_size=SIZE, resize="stretch", cache=folder,
                            cache_limit=limit_bytes)["train"]
        assert within.kind == past.kind == "disk" and within.decoded == past.decoded == 0
        in_memory = store.in_memory(*within.array.shape[:1], within.array.shape[1:])
        in_memory.array[:] = within.array
        common = dict(image_size=SIZE, batch_size=BATCH, shuffle=True)
        from_within, from_past, from_memory = (data.pairs_dataset(pairs, images=images, **common)
                                              for images in (within, past, in_memory))
        for ds in (from_within, from_past, from_memory):
            drain(ds)
        within_s, past_s, memory_s = interleaved(runs + 2, (drain, from_within), (drain, from_past),
                                                 (drain, from_memory))
        memory_name = "the same epoch from memory (--cache memory, tf.gather)"
        rows += [
            Row(STAGE, f"later epoch from the disk store within the limit (page cache warm): {data_note}",
                within_s, memory_name, memory_s, "speedup", 0.8),
            Row(STAGE, f"later epoch from the store past --cache-limit {limit} (pages released): {data_note}",
                past_s, memory_name, memory_s, "speedup", None),
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--fit-child":
        fit_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--first-epoch-child":
        first_epoch_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, help="generated crops (default 3,000; --full 300,000)")
    parser.add_argument("--limit", help="--cache-limit of the run (default 20MB; 1GB from 100,000 crops)")
    parser.add_argument("--full", action="store_true", help="300,000 crops at --cache-limit 1GB")
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--data", type=Path, help="a folder for the generated crops, kept and reused (same --crops)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    crops = args.crops or (300_000 if args.full else None)
    rows, seconds = timed(measure, args.quick, crops=crops, limit=args.limit, data_folder=args.data)
    print(table(rows, markdown=args.markdown))
    print(f"\n({seconds:.0f} s in all)")


if __name__ == "__main__":
    main()
