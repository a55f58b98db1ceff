"""Use a trained model, whichever form it takes: score pairs, embed images, search an index.

A Siamese model is a shared tower and a small head. Everything here embeds each image
once with the tower and then scores pairs of feature vectors with the head, vectorised:
scoring a manifest costs one tower pass per distinct image, and a search costs one tower
pass for the query however large the index. The head is the model's own (the L1 distance,
the dense layer and the sigmoid, sharing the trained weights), so these scores are the
model's scores, not a cosine-similarity stand-in.

A model is a :class:`Scorer`: a ``model.keras`` (or its run folder), run by Keras
(:mod:`dsxsd.train.infer`, which needs TensorFlow), or an exported ``.onnx``, run by
onnxruntime (:mod:`dsxsd.serve`, which does not). This module needs neither: it imports
the one the model asks for when the model is loaded.

Each function reads and checks its inputs (:mod:`dsxsd._preflight`) before it loads a
model, so a bad manifest fails in a moment rather than after a model has loaded.
"""

from __future__ import annotations

import abc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import _io
from ._io import relative_path
from ._preflight import (
    INDEX_FORMAT,
    INDEX_VERSION,
    Index,
    check_index_model,
    check_k,
    check_output_file,
    index_kind,
    load_index,
    open_index,
    read_image_list,
    read_pairs_frame,
)
from .errors import DsxsdError, ModelFileError, require_path

if TYPE_CHECKING:
    from .ann import AnnIndex

Progress = Callable[[int], None]
DEFAULT_THRESHOLD = 0.5
# The suffix of an exported model that onnxruntime runs (dsxsd export --format onnx).
ONNX_SUFFIX = ".onnx"


def no_progress(n: int = 1) -> None:
    """The progress callback that ignores its calls: the default where none is given."""
    return None


# --------------------------------------------------------------------------- the model


class Scorer(abc.ABC):
    """A trained Siamese model as a tower (images to feature vectors) and a head (pairs of
    feature vectors to the probability of "same class").

    ``image_size`` and ``resize`` are how the model was trained to see images;
    ``threshold`` is the run's calibrated decision threshold (``None`` when the run was
    never evaluated). Load one with :meth:`load`:

    >>> scorer = Scorer.load("export/siamese.onnx")          # doctest: +SKIP
    >>> features = scorer.embed(["a.jpg", "b.jpg"])           # doctest: +SKIP
    >>> float(scorer.score(features[0], features[1:])[0])     # doctest: +SKIP
    0.93
    """

    path: Path
    image_size: int
    resize: str
    threshold: float | None
    feature_dim: int
    # Where ``threshold`` was read, as predictions report it.
    threshold_source: str = "metrics.json"

    @staticmethod
    def load(path: str | os.PathLike[str]) -> Scorer:
        """An exported ``.onnx`` (:meth:`from_onnx`), else a ``model.keras`` or the run
        folder that holds one (:meth:`from_keras`)."""
        if Path(path).suffix.lower() == ONNX_SUFFIX:
            return Scorer.from_onnx(path)
        return Scorer.from_keras(path)

    @staticmethod
    def from_onnx(path: str | os.PathLike[str]) -> Scorer:
        """A model exported by ``dsxsd export --format onnx``, run by onnxruntime: needs
        the ``serve`` extra only (numpy, Pillow, onnxruntime), never TensorFlow."""
        from .serve import OnnxScorer

        return OnnxScorer.from_file(path)

    @staticmethod
    def from_keras(path: str | os.PathLike[str]) -> Scorer:
        """``model.keras`` (or its run folder), run by Keras: needs the ``train`` extra."""
        from .train.infer import load_scorer

        return load_scorer(path)

    def embed(
        self, paths: Sequence[str | os.PathLike[str]], batch_size: int = 64,
        progress: Progress = no_progress,
    ) -> np.ndarray:
        """Feature vectors ``[N, D]`` float32, one tower pass per image, in batches so that
        memory stays bounded however many images there are."""
        paths = [str(p) for p in paths]
        chunks = []
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            chunks.append(np.asarray(self.embed_batch(batch), dtype=np.float32))
            progress(len(batch))
        if not chunks:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        return np.concatenate(chunks)

    def score(self, left: np.ndarray, right: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Scores ``[N]`` of feature pairs through the head; ``left`` may be one vector
        ``[D]`` scored against every row of ``right`` (a search)."""
        right = np.asarray(right, dtype=np.float32)
        left = np.asarray(left, dtype=np.float32)
        if left.ndim == 1:
            left = np.broadcast_to(left, right.shape)
        scores = [
            np.asarray(
                self.score_batch(
                    np.ascontiguousarray(left[i : i + batch_size]),
                    np.ascontiguousarray(right[i : i + batch_size]),
                ),
                dtype=np.float64,
            ).reshape(-1)
            for i in range(0, len(right), batch_size)
        ]
        return np.concatenate(scores) if scores else np.zeros(0)

    @abc.abstractmethod
    def embed_batch(self, paths: list[str]) -> np.ndarray:
        """The tower's features ``[n, D]`` of a few image files, decoded and resized as in
        training."""

    @abc.abstractmethod
    def score_batch(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The head's scores ``[n]`` or ``[n, 1]`` of ``n`` pairs of feature vectors."""


def read_threshold(run_dir: str | os.PathLike[str], model: str | os.PathLike[str] | None = None) -> float | None:
    """The calibrated threshold in ``run_dir/metrics.json``, ``None`` without one, or when
    ``model`` is given and metrics.json was measured on another model (its
    ``model_sha256``): a threshold belongs to the model it was calibrated on, and a run
    folder holds two (``model.keras``, ``best.keras``)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text("utf-8"))
        value = metrics.get("threshold")
    except (ValueError, AttributeError):
        raise DsxsdError("not a dsxsd metrics file (expected a JSON object)", file=path) from None
    if value is None or (model is not None and not measured_on(metrics, model)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DsxsdError(f"threshold must be a number, got {value!r}", file=path, field="threshold")
    return float(value)


def measured_on(metrics: dict[str, Any], model: str | os.PathLike[str]) -> bool:
    """Whether a metrics.json (read) holds results of ``model``: its sha256 is the one
    recorded (a file without one, written by hand, is taken at its word). Hashing the
    model costs a fraction of a second at full size; a threshold of another model would
    give wrong verdicts without a word."""
    recorded = metrics.get("model_sha256")
    return recorded is None or recorded == _io.sha256_file(model)


# --------------------------------------------------------------------------- predict


@dataclass(frozen=True)
class Prediction:
    """A scored pair: ``same`` is ``score >= threshold``."""

    left: str
    right: str
    score: float
    threshold: float
    threshold_source: str  # "--threshold", "metrics.json", "export" (an .onnx) or "default"
    same: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _threshold(scorer: Scorer, threshold: float | None) -> tuple[float, str]:
    if threshold is not None:
        return float(threshold), "--threshold"
    if scorer.threshold is not None:
        return scorer.threshold, scorer.threshold_source
    return DEFAULT_THRESHOLD, "default"


def predict(
    model: str | os.PathLike[str] | Scorer,
    left: str | os.PathLike[str],
    right: str | os.PathLike[str],
    threshold: float | None = None,
) -> Prediction:
    """Score one pair of images: the probability that they show the same class, and the
    verdict at ``threshold`` (else the run's calibrated one, else 0.5)."""
    for image in (left, right):
        require_path(image)
    scorer = model if isinstance(model, Scorer) else Scorer.load(model)
    features = scorer.embed([left, right])
    score = float(scorer.score(features[:1], features[1:])[0])
    value, source = _threshold(scorer, threshold)
    return Prediction(str(left), str(right), score, value, source, score >= value)


@dataclass(frozen=True)
class PairScores:
    output: Path
    pairs: int
    images: int
    threshold: float
    threshold_source: str
    predicted_same: int


def predict_pairs(
    model: str | os.PathLike[str] | Scorer,
    pairs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    threshold: float | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> PairScores:
    """Score every pair of a pairs manifest (or of one ``split``) into a CSV.

    ``out`` has the manifest's columns, with ``left``/``right`` rewritten relative to
    ``out``'s folder (the dsxsd manifest convention), then ``score`` and ``predicted``
    (1 = same at the threshold). Each distinct image is embedded once.
    """
    out = check_output_file(out, overwrite)
    frame = read_pairs_frame(pairs, split)  # a bad manifest fails before a model loads
    scorer = model if isinstance(model, Scorer) else Scorer.load(model)
    scores, images = score_pairs(scorer, frame["left"], frame["right"], batch_size, progress)
    value, source = _threshold(scorer, threshold)
    frame["score"] = scores
    frame["predicted"] = (scores >= value).astype(int)
    for side in ("left", "right"):
        frame[side] = [relative_path(p, out.parent) for p in frame[side]]
    with _io.atomic_path(out, overwrite) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")
    return PairScores(out, len(frame), images, value, source, int(frame["predicted"].sum()))


def score_pairs(
    scorer: Scorer, left: Sequence[str], right: Sequence[str], batch_size: int = 64,
    progress: Progress = no_progress,
) -> tuple[np.ndarray, int]:
    """``(scores [N], number of distinct images)``: each image embedded once."""
    distinct = list(dict.fromkeys([*left, *right]))
    position = {path: i for i, path in enumerate(distinct)}
    features = scorer.embed(distinct, batch_size, progress)
    a = features[[position[p] for p in left]]
    b = features[[position[p] for p in right]]
    return scorer.score(a, b), len(distinct)


# --------------------------------------------------------------------------- embed and search


def embed(
    model: str | os.PathLike[str] | Scorer,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: Progress = no_progress,
    kind: str = "auto",
) -> Index | AnnIndex:
    """Embed every image of ``source`` (crops manifest, class-folder tree or pairs
    manifest) and store the index in ``out``.

    ``kind`` ``exact``: one ``.npz`` (strings as unicode arrays, so it loads with
    ``allow_pickle=False``), searched by scoring every entry with the head. ``ann``: a
    folder (:mod:`dsxsd.ann`), float16 features memory-mapped and a FAISS index of
    candidates that the head re-ranks; needs ``faiss`` (the serve extra). ``auto``: ``ann``
    when ``out`` is not named ``.npz``, else ``exact`` (with a :class:`dsxsd.SettingWarning`
    from :data:`dsxsd.ann.ANN_MIN_ENTRIES` images on). Returns the index, opened, for
    :func:`search`:

    >>> import dsxsd
    >>> index = dsxsd.embed("export/siamese.onnx", "crops/crops.csv", "index")   # doctest: +SKIP
    >>> len(index), index.manifest["faiss_index"]                                 # doctest: +SKIP
    (48210, 'Flat')
    """
    images = read_image_list(source, split)  # a bad source fails before a model loads
    kind = index_kind(kind, len(images.paths), out)
    out = check_output_file(out, overwrite)
    if kind == "ann":
        from .ann import need_faiss

        need_faiss()
    scorer = model if isinstance(model, Scorer) else Scorer.load(model)
    if kind == "ann":
        return _embed_ann(scorer, images.paths, images.classes, out, batch_size, overwrite, progress)
    features = scorer.embed(images.paths, batch_size, progress)
    folder = out.parent
    with _io.atomic_path(out, overwrite) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.savez leaves its name alone
            np.savez(
                handle,
                format=np.array(INDEX_FORMAT),
                version=np.array(INDEX_VERSION),
                features=features,
                paths=np.array([relative_path(p, folder) for p in images.paths], dtype=np.str_),
                classes=np.array(images.classes, dtype=np.str_),
                model=np.array(relative_path(scorer.path, folder)),
                image_size=np.array(scorer.image_size),
            )
    return Index(
        features,
        tuple(str(Path(p).resolve()) for p in images.paths),
        images.classes,
        scorer.path.resolve(),
        scorer.image_size,
        out,
    )


# Images embedded per step of an approximate index's writing: what is held in memory as
# float32 before it goes to the float16 file.
_EMBED_CHUNK = 4096


def _embed_ann(
    scorer: Scorer, paths: Sequence[Path], classes: Sequence[str], out: Path, batch_size: int,
    overwrite: bool, progress: Progress,
) -> AnnIndex:
    from .ann import write_index

    chunks = (
        scorer.embed(paths[start : start + _EMBED_CHUNK], batch_size, progress)
        for start in range(0, len(paths), _EMBED_CHUNK)
    )
    return write_index(out, chunks, len(paths), scorer.feature_dim, paths, classes, scorer, overwrite=overwrite)


@dataclass(frozen=True)
class Hit:
    rank: int
    path: str
    class_name: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "class": self.class_name, "score": self.score}


# Query images embedded and searched at once: bounds the query features in memory
# however many queries there are.
_QUERY_BLOCK = 1024
# Entries read for a group of queries' candidates at once, float32 (at 4,608 features,
# 75 MB), before the linearised head narrows them to what the head scores.
_ROWS_AT_ONCE = 4096
# Entries an exact search reads and makes float32 at once, for all of a block's queries
# (at 4,608 features, 150 MB).
_EXACT_CHUNK = 8192


def search_scorer(
    index: Index | AnnIndex, model: str | os.PathLike[str] | Scorer | None = None,
) -> Scorer:
    """The scorer that searches ``index``: ``model``, else the one that made the index
    (refused when it is gone or, for an approximate index, no longer the same file)."""
    from .ann import AnnIndex, check_model_identity

    if model is None:
        check_index_model(index)
        if isinstance(index, AnnIndex):
            check_model_identity(index)
    if isinstance(model, Scorer):
        scorer = model
    else:
        scorer = Scorer.load(model if model is not None else index.model)
    if scorer.feature_dim != index.features.shape[1]:
        raise ModelFileError(
            f"the model makes {scorer.feature_dim}-long features, the index holds "
            f"{index.features.shape[1]}-long ones: it was made with another model "
            f"({index.model})",
            file=scorer.path,
        )
    return scorer


def search(
    index: str | os.PathLike[str] | Index | AnnIndex,
    query: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    k: int = 5,
    model: str | os.PathLike[str] | Scorer | None = None,
    *,
    candidates: int | None = None,
    exact: bool = False,
    batch_size: int = 64,
) -> list[Hit] | list[list[Hit]]:
    """The ``k`` index entries most similar to ``query``, best first; for a list of
    queries, one such list per query, in their order.

    Queries are embedded once each, in batches. An exact index (``.npz``) is searched by
    the model's head scoring each query against every entry. An approximate index (a
    folder, :mod:`dsxsd.ann`) hands the head the ``candidates`` nearest entries of its
    FAISS index (default :data:`dsxsd.ann.DEFAULT_CANDIDATES`, at least ``k``) to
    re-rank; ``exact`` scores every entry instead. ``model`` defaults to the model the
    index was made with. Equal scores keep index order.

    ``index`` and ``model`` may be paths, read on each call, or an opened index (what
    :func:`embed` returns, or :func:`open_index`) and a :class:`Scorer`, read once: for
    many calls, open them once, or pass all the queries in one list.

    >>> import dsxsd
    >>> hits = dsxsd.search("index", "query.jpg", k=5)                        # doctest: +SKIP
    >>> hits[0].path, hits[0].class_name, round(hits[0].score, 2)              # doctest: +SKIP
    ('/data/crops/cat/0007.png', 'cat', 0.97)
    >>> index = dsxsd.inference.open_index("index")                           # doctest: +SKIP
    >>> scorer = dsxsd.Scorer.load("export/siamese.onnx")                      # doctest: +SKIP
    >>> per_query = dsxsd.search(index, ["a.jpg", "b.jpg"], k=5, model=scorer)  # doctest: +SKIP
    >>> [len(hits) for hits in per_query]                                      # doctest: +SKIP
    [5, 5]
    """
    single = isinstance(query, (str, os.PathLike))
    queries = [query] if single else list(query)
    for path in queries:
        require_path(path)
    from .ann import AnnIndex

    index = index if isinstance(index, (Index, AnnIndex)) else open_index(index)
    check_k(index, k)
    scorer = search_scorer(index, model)
    results = [hits for _, hits in search_blocks(index, scorer, queries, k, candidates, exact, batch_size)]
    return results[0] if single else results


def search_blocks(
    index: Index | AnnIndex,
    scorer: Scorer,
    queries: Sequence[str | os.PathLike[str]],
    k: int,
    candidates: int | None = None,
    exact: bool = False,
    batch_size: int = 64,
    progress: Progress = no_progress,
):
    """``(query, hits)`` for each query in order, computed a block of queries at a time
    (what ``dsxsd search --out`` writes as it goes)."""
    from .ann import DEFAULT_CANDIDATES, AnnIndex

    wanted = max(k, DEFAULT_CANDIDATES if candidates is None else candidates)
    approximate = isinstance(index, AnnIndex) and not exact and wanted < len(index)
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = queries[start : start + _QUERY_BLOCK]
        features = scorer.embed(block, batch_size, progress)
        if approximate:
            ranked = _rerank(index, scorer, features, k, wanted)
        else:
            ranked = _exact(index.reader() if isinstance(index, AnnIndex) else index.features, scorer, features, k)
        for path, (ids, scores) in zip(block, ranked):
            yield str(path), [
                Hit(rank, index.paths[i], index.classes[i], float(s))
                for rank, (i, s) in enumerate(zip(ids.tolist(), scores.tolist()), start=1)
            ]


def _exact(features: Any, scorer: Scorer, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The head's ``k`` best entries of ``features`` for each of ``queries``, scoring
    every entry: a chunk of entries at a time, each chunk made float32 once for all the
    queries (an approximate index's float16 features are never float32, nor in the
    process's memory, as a whole), keeping each query's best ``k`` so far. ``features``
    is an array or, for an approximate index, its reader (:meth:`AnnIndex.reader`)."""
    best = [(np.zeros(0, np.int64), np.zeros(0)) for _ in queries]
    for start in range(0, len(features), _EXACT_CHUNK):
        chunk = np.asarray(features[start : start + _EXACT_CHUNK], dtype=np.float32)
        ids = np.arange(start, start + len(chunk))
        for i, query in enumerate(queries):
            kept_ids, kept_scores = best[i]
            best[i] = _top(np.concatenate([kept_scores, scorer.score(query, chunk)]), np.concatenate([kept_ids, ids]), k)
    return best


def _top(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``scores`` (of entries ``ids``), equal scores in index order."""
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def _rerank(
    index: AnnIndex, scorer: Scorer, features: np.ndarray, k: int, wanted: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The head's ``k`` best of each query's ``wanted`` candidates
    (:meth:`dsxsd.ann.AnnIndex.candidates`), a group of queries' candidates scored in one
    head call. A query given fewer than ``k`` candidates (an inverted file's probed lists
    can hold fewer) is scored against every entry."""
    from .ann import shortlist_size

    ranked: list = []
    shortlists = index.shortlist(features, wanted)
    group = max(1, _ROWS_AT_ONCE // shortlist_size(len(index), wanted))
    for start in range(0, len(features), group):
        queries = features[start : start + group]
        found = index.candidates(queries, shortlists[start : start + group], wanted)
        counts = [len(ids) for ids, _ in found]
        left = np.repeat(queries, counts, axis=0)
        scores = np.split(scorer.score(left, np.concatenate([rows for _, rows in found])), np.cumsum(counts)[:-1])
        for query, (ids, _), theirs in zip(queries, found, scores):
            if len(ids) < k:
                ranked.extend(_exact(index.reader(), scorer, query[None], k))
            else:
                ranked.append(_top(theirs, ids, k))
    return ranked


__all__ = [
    "DEFAULT_THRESHOLD",
    "Hit",
    "Index",
    "PairScores",
    "Prediction",
    "Scorer",
    "embed",
    "load_index",
    "open_index",
    "predict",
    "predict_pairs",
    "read_threshold",
    "score_pairs",
    "search",
]
