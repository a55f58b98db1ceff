"""Search a large index: the approximate index (FAISS candidates re-ranked by the head)
against the exact search (the head over every entry) of the same index.

Entries are shaped like real ones: a small model is trained on scikit-learn's digits
(1,797 real scans, no download), exported as tower.onnx, and its tower features of the
digits are replicated with small noise (a tenth of each feature's spread) to N entries.
Queries are digits with other noise: a new picture of something the index holds.

Three processes, so that each figure is its own: ``prepare`` (TensorFlow: train, export,
embed the digits; kept in --work and reused), ``build`` (write the index from the
features, no TensorFlow) and ``search`` (open the index and answer the queries, no
TensorFlow). Printed with --json:

- ``recall_at_10``: the share of the exact search's top 10 that the approximate one finds;
- ``p50_ms``, ``exact_p50_ms``: the median milliseconds of one query's search, one query
  at a time, the query's features given (the tower's pass is the same for both and is
  left out); ``p50_cpu_ms`` the median CPU time of one (all threads): what the query costs
  on a machine others share, where wall time also counts waiting for a core; ``batched_ms``: a query's share of all of them searched in one call, and
  ``batched_same_hits`` the share of queries whose hits equal the one-at-a-time ones;
- ``peak_rss_mb``: the search process's peak resident memory, before the exact search
  (which reads every entry);
- ``index_bytes``: the FAISS index, what a search holds in memory; ``disk_bytes`` the whole
  folder; ``build_s`` and ``build_peak_rss_mb`` of the build.

``--feature-dim 4608`` (the reference width) makes entries of that width from the same
model: the tower's features times a fixed random non-negative matrix [64, 4608] (each wide
feature a mix of about half the narrow ones, so the width is redundant, as a real tower's
is), with the noise then added in every wide dimension; the head is the trained one's
Dense(512) carried over to the wide features by a ridge fit of its first layer
(``|A a - A b| W' ~ |a - b| W`` on pairs of digits, near and far), run in numpy. Not a
trained wide tower (minutes of VGG16 at 105 px on 2 shared cores a run): the widths and the
bytes read are the reference's, the features' structure is this model's.
With it, ``parts_ms`` splits a query (medians): FAISS's shortlist, the compact copy's rows
and their narrowing, the candidates' full rows, the head; ``full_rows_p50_ms`` is the same
queries with step 2 on the shortlist's full float16 rows (as an index of version 1 does),
timed in the same process. ``--narrow-dims`` sets the compact copy's width.

The exact search's hits and times are kept beside the index (``INDEX.exact-Q-E.json``)
and reused by a later run on the same index and queries (``--reuse``): they take seconds a
query at a million entries. Such a run times 3 exact queries again, so that both times
are of the same minute of a shared machine. ``--candidates``, ``--nprobe``, ``--shortlist`` and
``--ivf-from`` (the size from which the index is an inverted file) try other settings.

    python benchmarks/bench_search.py --entries 100000 --json
    python benchmarks/bench_search.py --entries 1000000 --work /tmp/bench-search --json   # 8 minutes to build
    python benchmarks/bench_search.py --quick --json     # seconds, for the tests
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RECALL = 0.95  # recall@10 against the exact head ranking
SPEEDUP = 10.0  # over the exact search, at the CI size
NOISE = 0.1  # of each feature's standard deviation
QUICK_EPOCHS = 3  # the --quick model, on 200 digits (one epoch: a head too far from linear, 0.71 at 10,000)
RETIMED = 3  # exact queries timed again when their hits are kept from a run before
CHUNK = 32_768


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------- prepare (TensorFlow)


def prepare(work: Path, width: float, image_size: int, epochs: int, per_class: int | None) -> None:
    """``work/tower.onnx`` of a model trained on the digits, and ``work/base.npy``, the
    tower's features of every digit (with ``work/base_classes.json``)."""
    import numpy as np

    import dsxsd
    from benchmarks.bench_quality import write_digits
    from dsxsd.train import fit

    digits = write_digits(work / "digits", per_class)
    dsxsd.make_pairs(digits, work / "pairs.csv", positives=2, split="0.8,0.1,0.1", seed=0)
    fit(work / "pairs.csv", work / "run", width=width, image_size=image_size, epochs=epochs, verbose=0)
    dsxsd.export(work / "run", work / "tower.onnx", part="tower")
    scorer = dsxsd.Scorer.load(work / "tower.onnx")
    images = dsxsd.inference.read_image_list(digits)
    np.save(work / "base.npy", scorer.embed(images.paths))
    (work / "base_classes.json").write_text(json.dumps(list(images.classes)), "utf-8")


def widen(work: Path, dim: int) -> Path:
    """``work/wide-DIM``: ``base.npy`` of ``dim`` features made from the tower's and
    ``head.npz``, the head carried over to them (the module's docstring)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    out = work / f"wide-{dim}"
    if (out / "head.npz").exists():
        return out
    out.mkdir(exist_ok=True)
    base = np.load(work / "base.npy")
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(work / "tower.onnx")).graph.initializer}
    first = next(v for v in weights.values() if v.shape == (base.shape[1], 512))
    bias = next(v for k, v in weights.items() if v.shape == (512,) and "head_dense" in k)
    second = next(v for v in weights.values() if v.shape == (512, 1))
    last = next(v for k, v in weights.items() if v.shape == (1,) and "score" in k)
    rng = np.random.default_rng(7)
    mix = np.maximum(rng.standard_normal((base.shape[1], dim)), 0).astype(np.float32) / np.sqrt(base.shape[1])
    wide = base @ mix
    # pairs as a search meets them: a digit and a noisy copy, a digit and its nearest others, any two
    spread, wide_spread = base.std(axis=0) * NOISE, wide.std(axis=0) * NOISE
    left = rng.integers(0, len(base), 12_000)
    near = np.argsort(((base[:, None] - base[None]) ** 2).sum(-1), axis=1)[:, 1:20]
    right = np.where(np.arange(len(left)) % 3 == 0, left, np.where(np.arange(len(left)) % 3 == 1,
                     near[left, rng.integers(0, 19, len(left))], rng.integers(0, len(base), len(left))))
    noise = rng.standard_normal((len(left), base.shape[1])).astype(np.float32)
    narrow = np.abs(base[left] - np.maximum(base[right] + spread * noise, 0))
    wide_noise = rng.standard_normal((len(left), dim), dtype=np.float32)
    x = np.abs(wide[left] - np.maximum(base[right] @ mix + wide_spread * wide_noise, 0))
    del wide_noise
    gram = (x.T @ x).astype(np.float64)
    gram[np.diag_indices(dim)] += 1e-3 * np.trace(gram) / dim
    carried = np.linalg.solve(gram, (x.T @ (narrow @ first)).astype(np.float64)).astype(np.float32)
    np.save(out / "base.npy", wide)
    (out / "base_classes.json").write_text((work / "base_classes.json").read_text("utf-8"), "utf-8")
    np.savez(out / "head.npz", first=carried, bias=bias, second=second, last=last)
    return out


def scorer_of(work: Path):
    """The model a build and a search run: the exported one, or ``head.npz`` (widen)."""
    from dsxsd import Scorer

    if not (work / "head.npz").exists():
        return Scorer.load(work / "tower.onnx")
    import numpy as np

    class WideHead(Scorer):
        def __init__(self) -> None:
            kept = np.load(work / "head.npz")
            self.first, self.bias, self.second, self.last = (kept[k] for k in ("first", "bias", "second", "last"))
            self.path, self.image_size, self.resize = work / "head.npz", 105, "stretch"
            self.threshold, self.feature_dim = None, self.first.shape[0]

        def embed_batch(self, paths):
            raise NotImplementedError

        def score_batch(self, left, right):
            hidden = np.maximum(np.abs(left - right) @ self.first + self.bias, 0)
            return 1 / (1 + np.exp(-(hidden @ self.second + self.last)))

    return WideHead()


def entries(base, count: int, seed: int = 0):
    """``count`` rows: the base rows in turn, each with its own noise, a chunk at a time."""
    import numpy as np

    spread = base.std(axis=0, keepdims=True) * NOISE
    for start in range(0, count, CHUNK):
        rng = np.random.default_rng([seed, start])
        rows = base[np.arange(start, min(count, start + CHUNK)) % len(base)]
        yield np.maximum(rows + spread * rng.standard_normal(rows.shape, dtype=np.float32), 0.0)


# --------------------------------------------------------------------------- build and search (no TensorFlow)


def build(work: Path, index: Path, count: int, ivf_from: int | None = None, narrow_dims: int | None = None) -> dict:
    import numpy as np

    from dsxsd import ann

    if ivf_from is not None:
        ann.IVF_MIN_ENTRIES = ivf_from
    if narrow_dims is not None:
        ann.NARROW_DIMS = narrow_dims

    base = np.load(work / "base.npy")
    classes = json.loads((work / "base_classes.json").read_text("utf-8"))
    paths = [f"entries/{i}.png" for i in range(count)]
    labels = [classes[i % len(classes)] for i in range(count)]
    scorer = scorer_of(work)
    start = time.perf_counter()
    built = ann.write_index(index, entries(base, count), count, base.shape[1], paths, labels, scorer, overwrite=True)
    return {
        "build_s": time.perf_counter() - start,
        "build_peak_rss_mb": peak_rss_mb(),
        "faiss_index": built.manifest["faiss_index"],
        "nprobe": built.manifest["nprobe"],
        "feature_dim": int(base.shape[1]),
    }


class _Hit:
    def __init__(self, path: str) -> None:
        self.path = path


class _Queries:
    """A scorer whose tower is a table of query features (``q7.png`` is row 7) and whose
    head is the exported model's."""

    def __new__(cls, table, model: Path):
        from dsxsd.inference import Scorer

        class QueryScorer(Scorer):
            def __init__(self) -> None:
                self.head = scorer_of(model.parent)
                self.path, self.image_size, self.resize = model, self.head.image_size, "stretch"
                self.threshold, self.feature_dim, self.table = None, table.shape[1], table

            def embed_batch(self, paths):
                return self.table[[int(Path(p).stem[1:]) for p in paths]]

            def score_batch(self, left, right):
                return self.head.score_batch(left, right)

        return QueryScorer()


def search(work: Path, index_path: Path, queries: int, exact_queries: int, candidates: int | None,
           nprobe: int | None = None, shortlist: int | None = None) -> dict:
    import numpy as np

    from dsxsd import ann, inference

    base = np.load(work / "base.npy")
    rng = np.random.default_rng(12345)
    table = next(entries(base[rng.integers(0, len(base), queries)], queries, seed=99))
    files = []
    for i in range(queries):
        files.append(work / "queries" / f"q{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].touch()
    index = ann.load(index_path)
    if nprobe:
        index.manifest["nprobe"] = nprobe
    if shortlist:
        ann.SHORTLIST = shortlist
    scorer = _Queries(table, work / "tower.onnx")
    inference.search(index, files[0], k=10, model=scorer, candidates=candidates)  # load FAISS, warm up
    parts = timed_parts(index, scorer)
    approximate, seconds, cpu = [], [], []
    for path in files:
        parts.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        approximate.append(inference.search(index, path, k=10, model=scorer, candidates=candidates))
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        parts.keep()
    full_rows = []  # the same queries with step 2 on full rows (an index of version 1)
    if index.narrow_dims is not None:
        object.__setattr__(index, "narrow_dims", None)
        for path in files:
            start = time.perf_counter()
            inference.search(index, path, k=10, model=scorer, candidates=candidates)
            full_rows.append(time.perf_counter() - start)
        object.__setattr__(index, "narrow_dims", np.load(index_path / ann.NARROW_DIMS_FILE))
    start = time.perf_counter()
    batched = inference.search(index, files, k=10, model=scorer, candidates=candidates)
    batch_ms = (time.perf_counter() - start) * 1000 / len(files)
    rss = peak_rss_mb()  # before the exact search maps every entry's features
    # The exact search of the same index and queries is the same every time: kept beside
    # the index (it takes seconds a query at a million entries), measured once.
    cached = index_path.parent / f"{index_path.name}.exact-{queries}-{exact_queries}.json"
    key = {name: index.manifest[name] for name in ("count", "feature_dim", "files", "model_sha256")}
    if cached.exists() and json.loads(cached.read_text("utf-8"))["key"] == key:
        kept = json.loads(cached.read_text("utf-8"))
        exact = [[_Hit(path) for path in hits] for hits in kept["paths"]]
        exact_seconds = []  # timed again, a few, beside this run's approximate search
        for path in files[:RETIMED]:
            start = time.perf_counter()
            inference.search(index, path, k=10, model=scorer, exact=True)
            exact_seconds.append(time.perf_counter() - start)
    else:
        exact, exact_seconds = [], []
        for path in files[:exact_queries]:
            start = time.perf_counter()
            exact.append(inference.search(index, path, k=10, model=scorer, exact=True))
            exact_seconds.append(time.perf_counter() - start)
        cached.write_text(json.dumps({"key": key, "seconds": exact_seconds,
                                      "paths": [[h.path for h in hits] for hits in exact]}), "utf-8")
    same = np.mean([[h.path for h in a] == [h.path for h in b] for a, b in zip(batched, approximate)])
    recall = np.mean([len({h.path for h in a} & {h.path for h in e}) / 10 for a, e in zip(approximate, exact)])
    return {
        "narrow_dims": None if index.narrow_dims is None else len(index.narrow_dims),
        "parts_ms": parts.medians(),
        "full_rows_p50_ms": float(np.median(full_rows) * 1000) if full_rows else None,
        "recall_at_10": float(recall),
        "p50_ms": float(np.median(seconds) * 1000),
        "p50_cpu_ms": float(np.median(cpu) * 1000),
        "exact_p50_ms": float(np.median(exact_seconds) * 1000),
        "batched_ms": batch_ms,
        "batched_same_hits": float(same),
        "index_bytes": (index_path / ann.FAISS_INDEX).stat().st_size,
        "disk_bytes": sum(p.stat().st_size for p in index_path.iterdir()),
        "peak_rss_mb": rss,
    }


class timed_parts:
    """Wall milliseconds of a search's parts, by wrapping the index's and the head's
    calls: ``shortlist`` (FAISS), ``narrow`` (the compact copy's rows and the choice of
    candidates, less the full rows read within it), ``rows`` (full float16 rows), ``head``."""

    def __init__(self, index, scorer) -> None:
        import numpy as np

        self.now, self.kept, self.np = {}, [], np

        def wrap(name, call):
            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return call(*args, **kwargs)
                finally:
                    self.now[name] = self.now.get(name, 0.0) + (time.perf_counter() - start) * 1000
            return timed

        for name, method in (("shortlist", "shortlist"), ("narrow", "candidates"), ("rows", "rows")):
            object.__setattr__(index, method, wrap(name, getattr(index, method)))
        scorer.score_batch = wrap("head", scorer.score_batch)

    def clear(self) -> None:
        self.now = {}

    def keep(self) -> None:
        self.now["narrow"] = self.now.get("narrow", 0.0) - self.now.get("rows", 0.0)
        self.kept.append(self.now)

    def medians(self) -> dict:
        names = sorted({n for k in self.kept for n in k})
        return {n: float(self.np.median([k.get(n, 0.0) for k in self.kept])) for n in names}


# --------------------------------------------------------------------------- the whole


def index_name(count: int, ivf_from: int | None) -> str:
    return f"index-{count}" + (f"-ivf{ivf_from}" if ivf_from else "")


def phase(*args: str) -> dict:
    """Run this script's ``args`` phase in a new interpreter; its JSON result."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench_search {' '.join(args)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}


def figures(entries_n: int, work: Path, *, quick: bool = False, width: float = 0.125, image_size: int = 32,
            queries: int = 100, exact_queries: int = 20, candidates: int | None = None,
            nprobe: int | None = None, ivf_from: int | None = None, rebuild: bool = True,
            shortlist: int | None = None, feature_dim: int | None = None, narrow_dims: int | None = None) -> dict:
    if not (work / "base.npy").exists():
        phase("--phase", "prepare", "--work", str(work), "--width", str(width), "--image-size", str(image_size),
              *(["--quick"] if quick else []))
    if feature_dim:
        work = widen(work, feature_dim)
    index = work / index_name(entries_n, ivf_from)
    result = {"entries": entries_n, "queries": queries, "exact_queries": exact_queries,
              "candidates": candidates, "cpus": len(os.sched_getaffinity(0))}
    if rebuild or not (index / "manifest.json").exists():
        result.update(phase("--phase", "build", "--work", str(work), "--entries", str(entries_n),
                            *(["--ivf-from", str(ivf_from)] if ivf_from else []),
                            *(["--narrow-dims", str(narrow_dims)] if narrow_dims else [])))
    result.update(phase("--phase", "search", "--work", str(work), "--entries", str(entries_n),
                        "--queries", str(queries), "--exact-queries", str(exact_queries),
                        *(["--candidates", str(candidates)] if candidates else []),
                        *(["--nprobe", str(nprobe)] if nprobe else []),
                        *(["--shortlist", str(shortlist)] if shortlist else []),
                        *(["--ivf-from", str(ivf_from)] if ivf_from else [])))
    result["speedup"] = result["exact_p50_ms"] / result["p50_ms"]
    result["targets_met"] = result["recall_at_10"] >= RECALL and result["speedup"] >= SPEEDUP
    return result


STAGE = "search"
QUICK_ENTRIES = 10_000


def rows_of(result: dict) -> list:
    """The runner's row (benchmarks/run.py): the approximate search's median query
    against the exact search's, the recall@10 and its target in the row's words (a row
    holds one ratio)."""
    from benchmarks._common import Row

    recall = result["recall_at_10"]
    what = (
        f"approximate index ({result['faiss_index']}), {result['entries']:,} entries, "
        f"{result['candidates'] or 'default'} candidates: recall@10 {recall:.3f} "
        f"({'met' if recall >= RECALL else 'MISSED'}: >= {RECALL}), {result['peak_rss_mb']:.0f} MB resident"
    )
    return [Row(STAGE, what, result["p50_ms"] / 1000, "the exact head search of the same index",
                result["exact_p50_ms"] / 1000, "speedup", SPEEDUP)]


def measure(quick: bool = False) -> list:
    """The runner's stage: :data:`QUICK_ENTRIES` entries quick (a model of
    :data:`QUICK_EPOCHS` epochs on 200 digits), else 50,000."""
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-search-") as tmp:
        if quick:
            result = figures(QUICK_ENTRIES, Path(tmp), quick=True, queries=20, exact_queries=20)
        else:
            result = figures(50_000, Path(tmp))
    return rows_of(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000, help="index entries (N)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--exact-queries", type=int, default=20, help="queries also searched exactly (for recall)")
    parser.add_argument("--candidates", type=int, help="entries re-ranked per query [dsxsd's default]")
    parser.add_argument("--nprobe", type=int, help="inverted lists searched per query [the index's]")
    parser.add_argument("--shortlist", type=int, help="FAISS shortlists this many times the candidates, or 4 sqrt(N) where more [dsxsd's]")
    parser.add_argument("--ivf-from", type=int, help="entries from which the index is an inverted file [dsxsd's]")
    parser.add_argument("--feature-dim", type=int, help="entries of this width made from the tower's (the docstring) [the tower's]")
    parser.add_argument("--narrow-dims", type=int, help="features in the compact copy step 2 reads [dsxsd's]")
    parser.add_argument("--reuse", action="store_true", help="search the index in --work as built before")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--work", type=Path, help="folder for the model and features, kept and reused")
    parser.add_argument("--quick", action="store_true", help="a tiny model and index (seconds)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--phase", choices=("prepare", "build", "search"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "prepare":
        prepare(args.work, args.width, args.image_size, epochs=QUICK_EPOCHS if args.quick else 3,
                per_class=20 if args.quick else None)
        return
    if args.phase == "build":
        print(json.dumps(build(args.work, args.work / index_name(args.entries, args.ivf_from), args.entries, args.ivf_from,
                               args.narrow_dims)))
        return
    if args.phase == "search":
        print(json.dumps(search(args.work, args.work / index_name(args.entries, args.ivf_from), args.queries,
                                args.exact_queries, args.candidates, args.nprobe, args.shortlist)))
        return
    if args.quick:
        args.entries, args.queries, args.exact_queries = min(args.entries, QUICK_ENTRIES), 20, 20
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-search-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = figures(args.entries, work, quick=args.quick, width=args.width, image_size=args.image_size,
                         queries=args.queries, exact_queries=args.exact_queries, candidates=args.candidates,
                         nprobe=args.nprobe, ivf_from=args.ivf_from, rebuild=not args.reuse,
                         shortlist=args.shortlist, feature_dim=args.feature_dim, narrow_dims=args.narrow_dims)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
