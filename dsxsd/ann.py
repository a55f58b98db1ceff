"""An approximate index for large searches: FAISS candidates over tower features,
re-ranked by the model's head.

The exact index (one ``.npz``, :func:`dsxsd.inference.embed`) keeps every feature vector
as float32 in memory and scores a query against all of them with the head. At the
reference size (4,608 features) a million entries are 18 GB of features and each query
runs the head a million times. This index answers in three steps instead:

1. shortlist: :func:`shortlist_size` entries, those a linear stand-in of
   the head, taken in ``(a - b)**2``, scores highest: the largest inner products in a
   FAISS index (:func:`entry_vectors`; the stand-in is measured from the head itself when
   the index is written, :func:`head_weights`; past a size an inverted file over lifted
   vectors, :func:`index_spec`, :func:`lift`);
2. candidates: those of the shortlist the same stand-in, taken in ``|a - b|`` as the
   head takes it, scores highest, on a compact copy of the features: the dimensions that
   count most in the stand-in, 8 bits each (:func:`narrow_spec`,
   :meth:`AnnIndex.candidates`; a shortlist is thousands of rows, and at the reference
   size their float16 rows were most of a query's time);
3. re-ranking: the head scores the query against the candidates only, on their float16
   features read from disk, so the order and the scores are the model's own (the head is
   no metric: L1 distance, then dense layers).

An index is a folder::

    INDEX/manifest.json       what follows, with each file's size; written last
    INDEX/features.f16.npy    [N, D] float16, memory-mapped (np.load(mmap_mode="r"))
    INDEX/index.faiss         the FAISS index over the features
    INDEX/paths.utf8          the entries' paths, relative to INDEX's folder, UTF-8, back to back
    INDEX/paths.offsets.npy   [N + 1] int64: where each path starts and ends in paths.utf8
    INDEX/classes.npy         [N] int32: each entry's class, an index into manifest "classes"
    INDEX/head_weights.npy    [D] float32: the linearised head the candidates are found by
    INDEX/projection.npy      [D + 1, P] float32: the projection before FAISS: from 256 features
                              on a selection, P = 255; below, for an inverted file, zero columns
                              up to a multiple of 8 less one (padding); [0, 0]: none
    INDEX/narrow.u8.npy       [N, d] uint8: the compact copy step 2 reads (version 2 on)
    INDEX/narrow.dims.npy     [d] int64: the features it keeps, ascending
    INDEX/narrow.scale.npy    [2, d] float32: each kept feature's offset and step (x = offset + step * code)

An index of version 1 (no compact copy) is still read: its step 2 reads the shortlist's
float16 rows, as it did.

A search holds the FAISS index in memory and reads only its shortlists' rows of the
features, by file reads (:class:`_Rows`); the rest is memory-mapped. FAISS (faiss-cpu, the ``serve`` extra) is imported only when an
index is written or searched.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import _io
from ._preflight import ANN_MIN_ENTRIES, DEFAULT_CANDIDATES
from .errors import DsxsdError, MissingDependencyError, ModelFileError, first_line

ANN_FORMAT = "dsxsd.ann-index"
ANN_VERSION = 2
MANIFEST = "manifest.json"
FEATURES = "features.f16.npy"
FAISS_INDEX = "index.faiss"
PATHS = "paths.utf8"
OFFSETS = "paths.offsets.npy"
CLASSES = "classes.npy"
WEIGHTS = "head_weights.npy"
PROJECTION = "projection.npy"
NARROW = "narrow.u8.npy"
NARROW_DIMS_FILE = "narrow.dims.npy"
NARROW_SCALE = "narrow.scale.npy"
FILES_V1 = (FEATURES, FAISS_INDEX, PATHS, OFFSETS, CLASSES, WEIGHTS, PROJECTION)
FILES = (*FILES_V1, NARROW, NARROW_DIMS_FILE, NARROW_SCALE)

# Features from this length on are reduced before FAISS sees them (to the PCA_DIMS - 2 of
# largest |head weight| x spread from index version 2 on, a PCA before): the index's
# memory and distance cost follow the reduced length, and the head re-ranks on the full
# features anyway.
PCA_DIMS = 256
# Below this many entries the shortlist comes from an exhaustive inner-product scan;
# from it, an inverted file over lifted vectors (index_spec, lift), which at 200,000
# entries was faster at the same recall (benchmarks/README.md, search) and at a million
# holds a byte a dimension where the scan holds four.
IVF_MIN_ENTRIES = 100_000
# The share of an inverted file's lists searched per query (nprobe): measured in
# benchmarks/README.md (search) against the recall of the head's top 10. From PCA_DIMS
# features on twice that: at 4,608 features a sixteenth of the lists lost some of the top
# 10 that the flat scan's shortlist held, an eighth none, and the scan is a small part
# of a query there (write_index: vectors FAISS scans quickly).
NPROBE_SHARE = 1 / 16
NPROBE_SHARE_WIDE = 1 / 8
# A features file up to this size stays memory-mapped while an index is open; a larger
# one is mapped for each gather of rows and let go of after (_Rows.take): a search over
# many queries touches most of the file, whose pages a lasting map would hold as the
# process's own (9 GB at a million entries of the reference size).
KEEP_MAPPED_BYTES = 1 << 30
# FAISS scans an inverted file's scalar-quantised codes by its vectorised kernels only
# where the vectors' length is a multiple of this; otherwise by a plain loop, several
# times slower for the same results (benchmarks/README.md, search). The vectors FAISS
# indexes are made that long: the features selected past PCA_DIMS (write_index), zeros
# appended below it (padding).
FAISS_LENGTH_MULTIPLE = 8
# Rows used to train the inverted file's centroids, at most: enough for a stable
# estimate, bounded so that building stays minutes at a million entries.
TRAIN_ROWS = 65_536
# Rows transformed and added to FAISS at once, bounding the float32 copy in memory.
ADD_CHUNK = 32_768
# The compact copy the candidates are picked on keeps this many features (all of them
# where there are no more): those of largest |head weight| x spread, 8 bits each. Chosen
# by measurement at 4,608 features (benchmarks/README.md, search): fewer lost some of the
# head's top 10 that the shortlist held, more kept about as much.
NARROW_DIMS = 1024


def need_faiss() -> Any:
    """``faiss``, or the install line that brings it."""
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError(
            'an approximate index needs faiss, which is not installed: pip install "dsxsd[serve]"'
        ) from None
    return faiss


# --------------------------------------------------------------------------- the FAISS index


def head_weights(scorer: Any, sample: np.ndarray, pairs: int = 8, step: float = 1e-2) -> np.ndarray:
    """How the head's logit moves with each feature's distance ``|a - b|`` [D], at the
    distances between entries of ``sample`` and their nearest neighbours in it.

    A trained head is close to linear in ``|a - b|`` there (a ReLU layer mostly in its
    linear range, then a sigmoid), but no metric: its weights are of both signs, some
    features counting for "same" the further apart they are. Finite differences of the
    head's own scores measure them, whatever runs the head (Keras, onnxruntime)."""
    sample = np.asarray(sample, dtype=np.float32)
    rng = np.random.default_rng(0)
    dim = sample.shape[1]
    grads = []
    for i in rng.choice(len(sample), min(pairs, len(sample)), replace=False):
        distances = ((sample - sample[i]) ** 2).sum(axis=1)
        distances[i] = np.inf
        base = np.abs(sample[i] - sample[int(np.argmin(distances))])
        right = np.vstack([base, base + step * np.eye(dim, dtype=np.float32)])
        scores = np.clip(scorer.score(np.zeros(dim, np.float32), right), 1e-7, 1 - 1e-7)
        logits = np.log(scores / (1 - scores))
        grads.append((logits[1:] - logits[0]) / step)
    return np.mean(grads, axis=0).astype(np.float32)


def entry_vectors(features: np.ndarray, weights: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """What FAISS indexes of each entry ``b``: ``[b, sum(w * b**2)]``, projected.

    The head's logit is about ``sum(w * |a - b|)``; with ``(a - b)**2`` for ``|a - b|``
    (the same order near the query) it is ``sum(w*a*a) - 2 sum(w*a*b) + sum(w*b*b)``, for
    a query ``a`` an inner product of ``[-2 w*a, 1]`` with ``[b, sum(w*b*b)]`` plus a
    constant: candidates by largest inner product are the entries the linearised head
    scores highest (benchmarks/README.md, search: L2 on the features, raw or square
    rooted, finds few of the head's top 10)."""
    features = np.asarray(features, dtype=np.float32)
    vectors = np.hstack([features, (features * features) @ weights[:, None]])
    return vectors if projection is None else np.ascontiguousarray(vectors @ projection)


def query_vectors(features: np.ndarray, weights: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    vectors = np.hstack([-2.0 * features * weights, np.ones((len(features), 1), np.float32)])
    return vectors if projection is None else np.ascontiguousarray(vectors @ projection)


def padding(width: int) -> np.ndarray | None:
    """The projection ``[width, P]`` that appends zeros to vectors of ``width`` so that,
    lifted (:func:`lift`), they are a multiple of :data:`FAISS_LENGTH_MULTIPLE` long, or
    ``None`` where they are already. Zeros change no inner product or distance; they only
    let FAISS scan the inverted file by its vectorised kernels (:data:`FAISS_LENGTH_MULTIPLE`)."""
    columns = -(-(width + 1) // FAISS_LENGTH_MULTIPLE) * FAISS_LENGTH_MULTIPLE - 1
    return None if columns == width else np.eye(width, columns, dtype=np.float32)


def index_spec(count: int, dim: int) -> tuple[str, int]:
    """The FAISS ``index_factory`` string for ``count`` vectors of ``dim`` features, and
    the number of inverted lists searched per query (``nprobe``; 0 for a flat index).

    Below :data:`IVF_MIN_ENTRIES` an exhaustive inner-product scan; above, an inverted
    file of about sqrt(count) lists under L2 on the lifted vectors (:func:`lift`) with
    8-bit scalar-quantised codes (a byte a dimension; 16-bit past :data:`PCA_DIMS`
    features, where the lifted vectors are :data:`PCA_DIMS` long: 512 MB at a million
    entries); an eighth of the lists probed past :data:`PCA_DIMS` features, a sixteenth
    below."""
    if count < IVF_MIN_ENTRIES:
        return "Flat", 0
    lists = 2 ** round(math.log2(math.sqrt(count)))
    # Past PCA_DIMS features the vectors' squared term spans a range whose 256 levels are
    # wider than the gaps between near-duplicates: 8-bit codes lost most of the head's top
    # 10 there, 16-bit codes kept as many as the flat scan (benchmarks/README.md, search).
    code = "SQ8" if dim < PCA_DIMS else "SQfp16"
    share = NPROBE_SHARE if dim < PCA_DIMS else NPROBE_SHARE_WIDE
    return f"IVF{lists},{code}", max(1, round(lists * share))


def lift(vectors: np.ndarray, norm: float) -> np.ndarray:
    """Entry vectors with one more component, ``sqrt(norm**2 - |v|**2)``, so that all
    have length ``norm``; a query gets 0 there (:meth:`AnnIndex.query_vectors`). Then
    ``|q - v|**2 = |q|**2 + norm**2 - 2 q.v``: the nearest entries in L2 are those of
    largest inner product, and an inverted file, whose k-means lists only make sense
    under L2, finds them (Bachrach et al. 2014, the "MIPS to NN" reduction). ``norm`` is
    the largest entry vector's length."""
    squared = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(np.float32(norm) ** 2 - squared, 0.0))
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None].astype(np.float32)]))


class _Rows:
    """Rows of a float16 ``.npy`` read without a lasting memory map: pages of a map count
    as the process's resident memory while it holds them, and a build (or an exact
    search) reads every row, a search over many queries most of them: 9 GB at a million
    entries of the reference size. Read this way they sit in the system's file cache
    instead, which is not the process's."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as stream:
            np.lib.format.read_magic(stream)  # version 1.0, as written by write_index
            self.shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            self.offset = stream.tell()
        self.path, self.row_bytes = path, self.shape[1] * np.dtype(dtype).itemsize
        self._kept: np.ndarray | None = None
        self.dtype = dtype

    def block(self, start: int, stop: int) -> np.ndarray:
        with open(self.path, "rb") as stream:
            stream.seek(self.offset + start * self.row_bytes)
            data = np.fromfile(stream, self.dtype, (stop - start) * self.shape[1])
        return data.reshape(stop - start, self.shape[1])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (ascending reads the file forward), gathered through a memory map:
        one gather costs a fraction of a microsecond a row where a read call per row costs
        tens. A file of up to :data:`KEEP_MAPPED_BYTES` stays mapped (at most that much
        resident; once its pages are in, gathers take no page faults); a larger one is
        mapped for the call and let go of after it, its pages leaving the process with
        the map (they stay in the system's file cache)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.empty((0, self.shape[1]), self.dtype)
        if self.offset + self.shape[0] * self.row_bytes <= KEEP_MAPPED_BYTES:
            if self._kept is None:
                self._kept = np.load(self.path, mmap_mode="r", allow_pickle=False)
            return np.asarray(self._kept[rows])
        with open(self.path, "rb") as stream:
            mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            view = np.frombuffer(mapped, self.dtype, self.shape[0] * self.shape[1], self.offset)
            out = view.reshape(self.shape)[rows]  # a copy: nothing keeps the map open
            del view
        finally:
            mapped.close()
        return out

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: slice) -> np.ndarray:
        """A block of rows, ``rows[start:stop]`` (the exact search's chunks)."""
        start, stop, _ = rows.indices(len(self))
        return self.block(start, max(start, stop))


def selection(dim: int, kept: np.ndarray) -> np.ndarray:
    """The projection ``[dim + 1, len(kept) + 1]`` of an entry vector (:func:`entry_vectors`)
    onto features ``kept`` and the last component."""
    projection = np.zeros((dim + 1, len(kept) + 1), np.float32)
    projection[kept, np.arange(len(kept))] = 1.0
    projection[dim, len(kept)] = 1.0
    return projection


def build_faiss(
    rows: _Rows, weights: np.ndarray, spec: str, nprobe: int, seed: int = 0, kept: np.ndarray | None = None,
) -> tuple[Any, np.ndarray | None, float]:
    """A FAISS index of ``spec`` over the entry vectors of ``rows``, the projection
    applied first, and the length the vectors are lifted to (0: a flat inner-product
    index, no lift; :func:`lift`). Fitted and trained on at most :data:`TRAIN_ROWS` rows
    drawn at random, then filled a chunk at a time so that only a chunk is ever float32
    in memory.

    With ``kept`` (index version 2 on), the vectors are the linearised head on those
    features only (``[b, sum(w * b**2)]`` over ``kept``; the projection selects them), not
    a PCA of all: a PCA keeps the directions the features vary along, not those the head
    weighs, and its shortlists missed much of the head's top 10 where the selection kept
    nearly all (benchmarks/README.md, search). A query needs no change: the selection drops the
    other features of its vector."""
    faiss = need_faiss()
    count, dim = rows.shape
    chosen = np.sort(np.random.default_rng(seed).choice(count, min(count, TRAIN_ROWS), replace=False))
    if kept is not None and len(kept) < dim:
        weights = np.where(np.isin(np.arange(dim), kept), weights, 0.0).astype(np.float32)
        projection = selection(dim, kept)
        sample = np.ascontiguousarray(entry_vectors(rows.take(chosen)[:, kept], weights[kept], None))
    else:
        # All the features (write_index selects some from PCA_DIMS on): an inverted file's
        # vectors padded to a length FAISS scans quickly.
        sample = entry_vectors(rows.take(chosen), weights, None)
        projection = padding(sample.shape[1]) if spec != "Flat" else None
        if projection is not None:
            sample = np.ascontiguousarray(sample @ projection)

    def chunks():
        for start in range(0, count, ADD_CHUNK):
            yield entry_vectors(rows.block(start, min(count, start + ADD_CHUNK)), weights, projection)

    norm = 0.0
    if spec != "Flat":  # an inverted file: L2 on lifted vectors, the longest one's length first
        norm = max(float(np.sqrt(np.einsum("ij,ij->i", v, v).max())) for v in chunks())
        index = faiss.index_factory(sample.shape[1] + 1, spec, faiss.METRIC_L2)
        index.train(lift(sample, norm))
    else:
        index = faiss.index_factory(sample.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    del sample
    for vectors in chunks():
        index.add(lift(vectors, norm) if norm else vectors)
    set_nprobe(index, nprobe)
    return index, projection, norm


def set_nprobe(index: Any, nprobe: int) -> None:
    if nprobe:
        need_faiss().extract_index_ivf(index).nprobe = nprobe


def narrow_spec(sample: np.ndarray, weights: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The features the compact copy keeps (ascending) and their ``[2, d]`` offset and
    step: the ``dims`` of largest ``|weight| x spread`` over ``sample`` (how much each
    moves the linearised head between entries), each quantised to 256 levels over its
    range in ``sample`` (values past it are clipped: they are far from most entries)."""
    sample = np.asarray(sample, dtype=np.float32)
    importance = np.abs(weights) * sample.std(axis=0)
    kept = np.sort(np.argsort(-importance, kind="stable")[: min(dims, sample.shape[1])]).astype(np.int64)
    low, high = sample[:, kept].min(axis=0), sample[:, kept].max(axis=0)
    step = np.where(high > low, (high - low) / 255.0, 1.0)
    return kept, np.stack([low, step]).astype(np.float32)


def narrow_codes(features: np.ndarray, kept: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The compact copy's rows ``[n, d]`` uint8 of ``features`` (:func:`narrow_spec`)."""
    values = (np.asarray(features[:, kept], dtype=np.float32) - scale[0]) / scale[1]
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# FAISS shortlists this many times the candidates the head re-ranks, or
# SHORTLIST_PER_ROOT x sqrt(entries) where that is more (shortlist_size); the linearised
# head, in |a - b| on the entries' features, picks the candidates among them
# (AnnIndex.candidates). The shortlist that holds the head's top 10 grows with the index,
# as near-duplicates do, about as its square root (benchmarks/README.md, search).
SHORTLIST = 8
SHORTLIST_PER_ROOT = 4


def shortlist_size(count: int, wanted: int) -> int:
    """How many entries of ``count`` FAISS shortlists for ``wanted`` candidates."""
    return min(count, max(wanted * SHORTLIST, math.ceil(SHORTLIST_PER_ROOT * math.sqrt(count))))
# Below this many queries at once FAISS searches on one thread. FAISS parallelises a
# search over its queries, so a few queries gain nothing from more threads, while its
# OpenMP threads, left spinning after the search, take the cores from the head's
# onnxruntime threads that run next (and onnxruntime's from FAISS), which made a single
# query several times slower (benchmarks/README.md, search). The
# setting is FAISS's, for the whole process: searches from several Python threads at once
# may see each other's.
FAISS_ONE_THREAD_BELOW = 64


def faiss_search(index: Any, vectors: np.ndarray, wanted: int) -> np.ndarray:
    """The ids ``[n, wanted]`` (-1 where fewer are found) of the largest inner products."""
    faiss = need_faiss()
    threads = faiss.omp_get_max_threads()
    if len(vectors) < FAISS_ONE_THREAD_BELOW:
        faiss.omp_set_num_threads(1)
    try:
        return index.search(vectors, wanted)[1]
    finally:
        faiss.omp_set_num_threads(threads)


# --------------------------------------------------------------------------- writing


def write_index(
    out: str | os.PathLike[str],
    chunks: Iterable[np.ndarray],
    count: int,
    dim: int,
    paths: Sequence[str | os.PathLike[str]],
    classes: Sequence[str],
    scorer: Any,
    *,
    overwrite: bool = False,
) -> AnnIndex:
    """Write an index folder from ``chunks`` of features (``[n, dim]`` each, ``count``
    rows in all, in the order of ``paths``): features first, to a float16 file on disk,
    so that no more than a chunk is held in memory; then the FAISS index built from that
    file; the manifest last, into a temporary folder renamed into place."""
    from . import __version__

    out = Path(out)
    faiss = need_faiss()  # before any work: the install line, not a failure at the end
    if not (len(paths) == len(classes) == count):
        raise ValueError(f"{count} features, {len(paths)} paths and {len(classes)} classes")
    model = Path(scorer.path)
    folder = out.parent
    names = sorted(set(classes))
    with _io.atomic_directory(out, overwrite) as tmp:
        start = 0
        with open(tmp / FEATURES, "wb") as stream:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False, "shape": (count, dim)}
            np.lib.format.write_array_header_1_0(stream, header)
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.ndim != 2 or chunk.shape[1] != dim or start + len(chunk) > count:
                    raise ValueError(f"a chunk of shape {chunk.shape} after {start} rows of [{count}, {dim}]")
                np.ascontiguousarray(chunk, dtype=np.float16).tofile(stream)
                start += len(chunk)
        if start != count:
            raise ValueError(f"{start} feature rows given, {count} expected")
        spec, nprobe = index_spec(count, dim)
        rows = _Rows(tmp / FEATURES)
        sample = rows.take(np.sort(np.random.default_rng(1).choice(count, min(count, 2048), replace=False)))
        weights = head_weights(scorer, sample)
        # PCA_DIMS - 2 features: with the squared term and the lift (entry_vectors, lift)
        # FAISS's vectors are PCA_DIMS long, a multiple of FAISS_LENGTH_MULTIPLE (tested).
        shortlisted = narrow_spec(sample, weights, PCA_DIMS - 2)[0] if dim >= PCA_DIMS else None
        index, projection, norm = build_faiss(rows, weights, spec, nprobe, kept=shortlisted)
        kept, scale = narrow_spec(sample, weights, NARROW_DIMS)
        with open(tmp / NARROW, "wb") as stream:
            header = {"descr": "|u1", "fortran_order": False, "shape": (count, len(kept))}
            np.lib.format.write_array_header_1_0(stream, header)
            for begin in range(0, count, ADD_CHUNK):
                narrow_codes(rows.block(begin, min(count, begin + ADD_CHUNK)), kept, scale).tofile(stream)
        np.save(tmp / NARROW_DIMS_FILE, kept)
        np.save(tmp / NARROW_SCALE, scale)
        np.save(tmp / WEIGHTS, weights)
        np.save(tmp / PROJECTION, np.zeros((0, 0), np.float32) if projection is None else projection)
        faiss.write_index(index, str(tmp / FAISS_INDEX))
        encoded = [_io.relative_path(p, folder).encode("utf-8") for p in paths]
        (tmp / PATHS).write_bytes(b"".join(encoded))
        np.save(tmp / OFFSETS, np.concatenate([[0], np.cumsum([len(e) for e in encoded], dtype=np.int64)]))
        code = {name: i for i, name in enumerate(names)}
        np.save(tmp / CLASSES, np.array([code[c] for c in classes], dtype=np.int32))
        manifest = {
            "format": ANN_FORMAT,
            "version": ANN_VERSION,
            "dsxsd_version": __version__,
            "faiss_version": faiss.__version__,
            "count": count,
            "feature_dim": dim,
            "feature_dtype": "float16",
            "candidates_by": "inner product of the head linearised in (a - b)**2 on the features projection.npy selects (head_weights.npy)",
            "narrowed_by": "the head linearised in |a - b| on narrow.u8.npy (narrow.dims.npy, narrow.scale.npy)",
            "faiss_index": spec,
            "nprobe": nprobe,
            # > 0: entry vectors lifted to this length, searched by L2 (ann.lift)
            "lift_norm": norm,
            "model": _io.relative_path(model, folder),
            "model_sha256": _io.sha256_file(model) if model.is_file() else None,
            "image_size": int(scorer.image_size),
            "classes": names,
            "files": {name: (tmp / name).stat().st_size for name in FILES},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return load(out)


# --------------------------------------------------------------------------- reading


class _Paths(Sequence[str]):
    """The entries' absolute paths, decoded one at a time from the memory-mapped file."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, root: Path) -> None:
        self._blob, self._offsets, self._root = blob, offsets, str(root)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start, end = self._offsets[i : i + 2]
        # str joins, not pathlib: a search decodes k paths a query
        return os.path.normpath(os.path.join(self._root, self._blob[int(start) : int(end)].tobytes().decode("utf-8")))


class _Classes(Sequence[str]):
    def __init__(self, codes: np.ndarray, names: Sequence[str]) -> None:
        self._codes, self._names = codes, names

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._names[int(self._codes[i])]


@dataclass(frozen=True)
class AnnIndex:
    """An approximate index, opened: ``features`` are float16 and memory-mapped,
    ``paths`` and ``classes`` are read on demand; the FAISS index loads on first
    :meth:`faiss_index`."""

    file: Path
    manifest: dict
    features: np.ndarray  # [N, D] float16, memory-mapped
    paths: Sequence[str]
    classes: Sequence[str]
    model: Path
    model_sha256: str | None
    image_size: int
    weights: np.ndarray  # [D] float32: the linearised head (head_weights)
    projection: np.ndarray | None  # [D + 1, P] float32 (a selection or zero padding), or None
    narrow_dims: np.ndarray | None = None  # [d] int64: the compact copy's features (None: version 1)
    narrow_scale: np.ndarray | None = None  # [2, d] float32: their offsets and steps

    def query_vectors(self, features: np.ndarray) -> np.ndarray:
        """What FAISS is asked for a query's features (:func:`query_vectors`; a 0 appended
        where the entries are lifted, :func:`lift`)."""
        vectors = query_vectors(features, self.weights, self.projection)
        if self.manifest.get("lift_norm", 0):
            vectors = np.ascontiguousarray(np.hstack([vectors, np.zeros((len(vectors), 1), np.float32)]))
        return vectors

    def shortlist(self, features: np.ndarray, wanted: int, nprobe: int | None = None) -> list[np.ndarray]:
        """For each query's features ``[n, D]``, the ids (ascending) of the
        :func:`shortlist_size` entries FAISS finds first: all the queries in one FAISS
        search."""
        found = faiss_search(self.faiss_index(nprobe), self.query_vectors(features), shortlist_size(len(self), wanted))
        return [np.unique(row[row >= 0]) for row in found]  # ascending: ties keep index order

    def candidates(
        self, features: np.ndarray, shortlists: Sequence[np.ndarray], wanted: int,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query's features ``[n, D]``, the ``wanted`` entries of its
        :meth:`shortlist` that the linearised head scores highest: their ids (ascending)
        and float32 features ``[wanted, D]``.

        FAISS orders by the linearised head in ``(a - b)**2`` (what an inner product
        can hold, :func:`entry_vectors`); the narrowing uses it in ``|a - b|`` itself:
        where the head's top 10 is among many near-duplicates, the first needs many times
        as many entries as the second to hold it (benchmarks/README.md, search). It reads
        the shortlist's rows of the compact copy (:func:`narrow_spec`), then the full
        rows of the candidates only, each in one sorted gather for all the queries; an
        index of version 1 has no compact copy, and its narrowing reads full rows."""
        ids = list(shortlists)
        if self.narrow_dims is None:
            table, dims, scale, weights = self.rows, slice(None), None, self.weights
        else:
            table, dims, scale = self.narrow_reader().take, self.narrow_dims, self.narrow_scale
            weights = self.weights[dims]
        gathered, parts = _gather(table, ids)
        chosen = []
        for query, these, at in zip(features, ids, parts):
            if len(these) > wanted:
                mine = gathered[at]
                if scale is None:
                    linear = np.abs(mine - query[dims]) @ weights
                else:
                    # |offset + step * code - a| = step * |code - (a - offset) / step|: the
                    # codes made float32 once and nothing else made of the whole block,
                    # which a shortlist of thousands of rows pays for several times over
                    mine = mine.astype(np.float32)
                    mine -= (query[dims] - scale[0]) / scale[1]
                    linear = np.abs(mine, out=mine) @ (weights * scale[1])
                keep = np.sort(np.argsort(-linear, kind="stable")[:wanted])
                chosen.append((these[keep], None if scale is not None else mine[keep]))
            else:
                chosen.append((these, None if scale is not None else gathered[at]))
        if scale is None:
            return chosen
        full, parts = _gather(self.rows, [these for these, _ in chosen])
        return [(these, full[at]) for (these, _), at in zip(chosen, parts)]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The float32 features of entries ``ids`` (ascending: the file is read forward),
        read from the file, not the memory map (:class:`_Rows`)."""
        return self.reader().take(ids).astype(np.float32)

    def narrow_reader(self) -> _Rows:
        """The compact copy (version 2 on), read as :meth:`reader` reads the features."""
        return self._opened(NARROW)

    def reader(self) -> _Rows:
        """The features, read by plain file reads (:class:`_Rows`): what a search reads."""
        return self._opened(FEATURES)

    def _opened(self, name: str) -> _Rows:
        # One reader per file for the index's life, kept beside the frozen fields.
        readers = self.__dict__.setdefault("_readers", {})
        if name not in readers:
            readers[name] = _Rows(self.file / name)
        return readers[name]

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def faiss_index(self, nprobe: int | None = None) -> Any:
        faiss = need_faiss()
        cached = self.__dict__.get("_faiss")
        if cached is None:
            path = self.file / FAISS_INDEX
            try:
                cached = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise DsxsdError(f"FAISS cannot read it ({first_line(exc)}): embed again", file=path) from None
            dims = self.features.shape[1] + 1 if self.projection is None else self.projection.shape[1]
            dims += 1 if self.manifest.get("lift_norm", 0) else 0
            if cached.ntotal != len(self) or cached.d != dims:
                raise DsxsdError(
                    f"holds {cached.ntotal} vectors of {cached.d}, the manifest says "
                    f"{len(self)} of {dims}: embed again",
                    file=path,
                )
            object.__setattr__(self, "_faiss", cached)
        set_nprobe(cached, self.manifest["nprobe"] if nprobe is None else nprobe)
        return cached


def _gather(table: Any, ids: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
    """The rows of every query's ``ids`` (each ascending) by ``table`` (rows of ascending
    ids), read once in file order, and where each query's lie among them."""
    if len(ids) == 1:  # ascending and distinct already: no second copy
        return table(ids[0]), [slice(None)]
    rows, where = np.unique(np.concatenate(ids), return_inverse=True)
    return table(rows), np.split(where, np.cumsum([len(i) for i in ids])[:-1])


def is_ann_index(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_dir()


def load(path: str | os.PathLike[str]) -> AnnIndex:
    """Open an index folder, checking what can be checked without reading it all: the
    manifest's format and version, and each file's size against the manifest's (a file
    cut short by a full disk or an interrupted copy)."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DsxsdError(f"a folder without {MANIFEST}: not a dsxsd index (made by 'dsxsd embed')", file=folder)
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != ANN_FORMAT:
            raise ValueError
        version = int(manifest["version"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise DsxsdError("not a dsxsd index manifest", file=manifest_path) from None
    if version > ANN_VERSION:
        raise DsxsdError(
            f"index version {version} (dsxsd {manifest.get('dsxsd_version', '?')}) is newer than this "
            f"dsxsd reads: upgrade dsxsd or embed again",
            file=folder,
        )
    try:
        # version 1 (before the compact copy) is read as it was: its step 2 reads full rows
        sizes = {name: int(manifest["files"][name]) for name in (FILES_V1 if version < 2 else FILES)}
        count, dim = int(manifest["count"]), int(manifest["feature_dim"])
        names = [str(c) for c in manifest["classes"]]
        image_size = int(manifest["image_size"])
        model = folder.parent / str(manifest["model"])
        int(manifest["nprobe"])
        if not float(manifest.get("lift_norm", 0.0)) >= 0.0:
            raise ValueError("lift_norm")
    except (KeyError, TypeError, ValueError) as exc:
        raise DsxsdError(f"index manifest without a valid {exc.args[0] if exc.args else 'entry'}", file=manifest_path) from None
    for name, size in sizes.items():
        file = folder / name
        actual = file.stat().st_size if file.is_file() else None
        if actual != size:
            found = "missing" if actual is None else f"{actual:,} bytes where the manifest says {size:,}"
            raise DsxsdError(f"truncated or changed ({found}): embed again", file=file)
    try:
        features = np.load(folder / FEATURES, mmap_mode="r", allow_pickle=False)
        offsets = np.load(folder / OFFSETS, mmap_mode="r", allow_pickle=False)
        codes = np.load(folder / CLASSES, mmap_mode="r", allow_pickle=False)
        blob = np.memmap(folder / PATHS, dtype=np.uint8, mode="r") if sizes[PATHS] else np.zeros(0, np.uint8)
        weights = np.load(folder / WEIGHTS, allow_pickle=False)
        projection = np.load(folder / PROJECTION, allow_pickle=False)
        narrow = kept = scale = None
        if version >= 2:
            narrow = np.load(folder / NARROW, mmap_mode="r", allow_pickle=False)
            kept = np.load(folder / NARROW_DIMS_FILE, allow_pickle=False)
            scale = np.load(folder / NARROW_SCALE, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DsxsdError(f"an index file cannot be read ({first_line(exc)}): embed again", file=folder) from None
    if (
        features.shape != (count, dim) or features.dtype != np.float16 or offsets.shape != (count + 1,)
        or codes.shape != (count,) or weights.shape != (dim,) or projection.ndim != 2
        or (projection.size and projection.shape[0] != dim + 1)
        or (narrow is not None and (
            narrow.dtype != np.uint8 or narrow.shape != (count, len(kept)) or kept.ndim != 1
            or scale.shape != (2, len(kept)) or not np.all((kept >= 0) & (kept < dim))
        ))
    ):
        raise DsxsdError("index files disagree with the manifest in shape: embed again", file=folder)
    return AnnIndex(
        folder,
        manifest,
        features,
        # plain arrays over the same maps: a memmap's indexing costs microseconds a call
        _Paths(np.asarray(blob), np.asarray(offsets), folder.parent),
        _Classes(np.asarray(codes), names),
        model.resolve(),
        manifest.get("model_sha256"),
        image_size,
        weights.astype(np.float32),
        projection.astype(np.float32) if projection.size else None,
        None if kept is None else kept.astype(np.int64),
        None if scale is None else scale.astype(np.float32),
    )


def check_model_identity(index: AnnIndex) -> None:
    """Refuse to search with the model the index names when that file is no longer the
    model the index was made with (trained again, replaced): its features would be
    another model's."""
    if index.model_sha256 is not None and index.model.is_file() and _io.sha256_file(index.model) != index.model_sha256:
        raise ModelFileError(
            f"the index was made with another model than the one now at {index.model} "
            "(its sha256 differs): embed again, or pass --model",
            file=index.file,
        )


__all__ = [
    "ANN_FORMAT",
    "ANN_MIN_ENTRIES",
    "ANN_VERSION",
    "AnnIndex",
    "DEFAULT_CANDIDATES",
    "index_spec",
    "load",
    "write_index",
]
