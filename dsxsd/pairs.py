"""Positive and negative image pairs for a Siamese network, in leak-free splits.

``make_pairs`` turns a crops manifest (or a folder of class folders) into ``pairs.csv``:
``left,right,label,left_class,right_class,split``, label 1 = same class, 0 = different.

How it works, and why:

1. Images are assigned to train / val / test first, and pairs are drawn only inside one
   split, so no image (``split_by="source"``: no source image; ``"class"``: no class) is in
   two splits. ``item`` splits are stratified by class, so each class is spread over the
   splits in the requested proportions.
2. Positives: ``positives`` pairs per image, drawn inside its class. Negatives:
   ``negatives_per_positive`` times as many as the split's positives, between classes.
3. Sampling is vectorised and never enumerates the n^2 candidate pairs: where the wanted
   pairs are a small part of what exists (the usual case), random pairs are drawn, encoded
   as one int64 per unordered pair, de-duplicated with ``np.unique`` and the shortfall
   drawn again; where they are most of it (small classes), every candidate is listed
   (at most twice the output) and a random subset kept. Memory follows the output size.
4. Randomness comes from ``numpy.random.default_rng`` seeded through ``SeedSequence``, with
   separate streams for the split and for the pairs (so changing ``positives`` does not
   reshuffle the split); classes are ordered by name and sorts are stable. Nothing depends
   on hash randomisation or on the order a file system lists files in, so one seed gives
   the same bytes on any machine.

From a crops manifest only the manifest is read: images are never opened or stat-ed.
"""

from __future__ import annotations

import math
import os
import posixpath
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

from . import _io
from .errors import ManifestError, PairsOptionError, UsageError
from .manifests import (
    PAIRS_COLUMNS,
    SPLITS,
    read_crops,
    read_pairs,
    scan_class_folders,
    strip_values,
)
from .annotations import classes_by_count

SplitBy = Literal["item", "source", "class"]
SPLIT_BY = ("item", "source", "class")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)

# The rejection sampler draws this much more than it still needs, so that duplicates
# rarely leave a shortfall for another round.
_OVERSAMPLE = 1.25
_MAX_ROUNDS = 200
_CSV_CHUNK_ROWS = 1 << 18


# ------------------------------------------------------------------------------ options


def parse_split(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` or ``(0.8, 0.1, 0.1)`` -> train, val and test fractions.

    Three non-negative numbers summing to 1 (within 1e-6, then normalised exactly).
    """
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise UsageError(
            f"split {text!r}: give three fractions train,val,test such as 0.8,0.1,0.1"
        )
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"split {text!r}: {', '.join(parts)} are not all numbers") from None
    if not all(math.isfinite(n) and n >= 0 for n in numbers):
        raise UsageError(f"split {text!r}: fractions must be finite and >= 0")
    total = math.fsum(numbers)
    if abs(total - 1.0) > 1e-6:
        raise UsageError(f"split {text!r}: fractions sum to {total:g}, not 1")
    return tuple(n / total for n in numbers)  # type: ignore[return-value]


def _check_options(
    positives: int, negatives_per_positive: float, split_by: str, min_per_class: int, seed: int
) -> None:
    if isinstance(positives, bool) or not isinstance(positives, (int, np.integer)) or positives < 1:
        raise UsageError(f"positives must be a whole number >= 1, not {positives!r}")
    if not (math.isfinite(negatives_per_positive) and negatives_per_positive >= 0):
        raise UsageError(
            f"negatives_per_positive must be a finite number >= 0, not {negatives_per_positive!r}"
        )
    if split_by not in SPLIT_BY:
        raise UsageError(f"split_by must be one of {', '.join(SPLIT_BY)}, not {split_by!r}")
    if not isinstance(min_per_class, (int, np.integer)) or min_per_class < 1:
        raise UsageError(f"min_per_class must be a whole number >= 1, not {min_per_class!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a whole number >= 0, not {seed!r}")


# ------------------------------------------------------------------------------ the API


def make_pairs(
    source: str | os.PathLike[str] | pd.DataFrame,
    output: str | os.PathLike[str] | None = None,
    *,
    positives: int = 1,
    negatives_per_positive: float = 1.0,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    split_by: SplitBy = "item",
    min_per_class: int = 1,
    seed: int = 0,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Make the pairs manifest of a Siamese network; write it to ``output`` when given.

    ``source`` is a crops manifest (``crops.csv``), a folder of class folders
    (``root/<class>/<image>``), or a DataFrame with ``path`` and ``class`` columns (and
    ``source`` for ``split_by="source"``) whose paths are kept as they are. Paths in the
    result are relative to ``output``'s folder (without ``output``: to the manifest's or
    root folder), ``/``-separated.

    ``positives``: same-class pairs per image (fewer where a class has fewer distinct
    pairs). ``negatives_per_positive``: different-class pairs per positive, in each split
    (fewer only where a split has fewer distinct ones). ``split``: train,val,test
    fractions. ``split_by``: ``item`` (each image), ``source`` (every crop of a source image
    together) or ``class`` (disjoint classes, the one-shot protocol). Classes with fewer
    than ``min_per_class`` images are left out. A class with one image in a split gives
    negatives there but no positives.

    Returns the rows in ``PAIRS_COLUMNS`` order (label as int64); ``frame.attrs["summary"]``
    holds a JSON-ready summary: pairs per split and label, classes per split, classes
    skipped (most images first, ties by name), and single-image classes.
    """
    ratios = parse_split(split)
    _check_options(positives, negatives_per_positive, split_by, min_per_class, seed)
    if output is not None:
        _io.check_output(Path(output), overwrite)  # before the work, not after it

    crops, base = _load(source, need_source=split_by == "source")
    where = None if isinstance(source, pd.DataFrame) else Path(source)
    crops, skipped = _drop_small_classes(crops, min_per_class)
    if crops.empty:
        raise ManifestError(
            f"no class has at least {min_per_class} images (--min-per-class)", file=where
        )

    class_names, codes, order, item_split = _split_items(crops, ratios, split_by, seed)
    paths = crops["path"].to_numpy(dtype=object)[order]
    left, right, label, pair_split, stats = _sample_all(
        codes, item_split, positives, negatives_per_positive, _streams(seed)[1]
    )
    if len(label) == 0:
        raise ManifestError(
            "no pairs can be made: no class has two images in one split "
            "(a class needs at least two images for a positive pair)",
            file=where,
        )

    paths = _relative_paths(paths, base, output, isinstance(source, pd.DataFrame))
    path_column, class_column = _column_values(paths), _column_values(class_names)
    frame = pd.DataFrame(
        {
            "left": path_column.take(left),
            "right": path_column.take(right),
            "label": label.astype(np.int64),
            "left_class": class_column.take(codes[left]),
            "right_class": class_column.take(codes[right]),
            "split": _column_values(np.asarray(SPLITS, dtype=object)).take(pair_split),
        },
        columns=list(PAIRS_COLUMNS),
    )
    frame.attrs["summary"] = _summary(
        source, output, class_names, codes, item_split, stats, skipped,
        dict(
            positives=int(positives),
            negatives_per_positive=float(negatives_per_positive),
            split=dict(zip(SPLITS, ratios)),
            split_by=split_by,
            min_per_class=int(min_per_class),
            seed=int(seed),
        ),
    )
    if output is not None:
        _write_csv(Path(output), paths, class_names, codes, left, right, label, pair_split, overwrite)
    return frame


def split_crops(
    crops: pd.DataFrame,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    split_by: SplitBy = "item",
    seed: int = 0,
) -> pd.Series:
    """The split (``train``/``val``/``test``) of every row of ``crops``, exactly as
    :func:`make_pairs` assigns it for the same rows and seed (after ``min_per_class``)."""
    ratios = parse_split(split)
    _check_options(1, 1.0, split_by, 1, seed)
    crops = crops.assign(**{"class": strip_values(crops["class"].astype(str))})
    _, _, order, assigned = _split_items(crops, ratios, split_by, seed)
    result = np.empty(len(crops), dtype=np.int8)
    result[order] = assigned
    return pd.Series(np.asarray(SPLITS, dtype=object)[result], index=crops.index, name="split")


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the split and for the pairs: changing how many pairs
    are drawn never moves an image to another split."""
    split_stream, pair_stream = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(split_stream), np.random.default_rng(pair_stream)


def _split_items(
    crops: pd.DataFrame, ratios: tuple[float, float, float], split_by: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class names, then for the items grouped by class (manifest order inside a class):
    class codes, their rows in ``crops``, and their splits."""
    class_names, codes = _class_codes(crops["class"])
    order = np.argsort(codes, kind="stable")
    groups = None if split_by != "source" else crops["source"].to_numpy(dtype=object)[order]
    item_split = _assign_splits(
        codes[order], len(class_names), groups, ratios, split_by, _streams(seed)[0]
    )
    return class_names, codes[order], order, item_split


# ------------------------------------------------------------------------------ loading


def _load(source: Any, need_source: bool) -> tuple[pd.DataFrame, Path]:
    """The crops to pair (``path``, ``class`` and maybe ``source``) and the folder their
    paths are relative to."""
    if isinstance(source, pd.DataFrame):
        wanted = ["path", "class"] + (["source"] if need_source else [])
        absent = [c for c in wanted if c not in source.columns]
        if absent:
            raise UsageError(f"the crops DataFrame lacks column(s) {', '.join(absent)}")
        frame = source.loc[:, wanted].astype(str)
        frame["class"] = strip_values(frame["class"])
        frame = frame.reset_index(drop=True)
        repeated = frame["path"].duplicated()
        if repeated.any():
            raise ManifestError(
                f"path {frame['path'][repeated].iloc[0]!r} is listed twice in the crops table"
            )
        return frame, Path(".")
    path = Path(source)
    if path.is_dir():
        if need_source:
            raise UsageError(
                "split_by='source' needs a crops manifest with a source column; "
                f"{path} is a folder of class folders"
            )
        return scan_class_folders(path), path
    return read_crops(path, need_source=need_source), path.parent


def _drop_small_classes(crops: pd.DataFrame, min_per_class: int) -> tuple[pd.DataFrame, dict[str, int]]:
    counts = crops["class"].value_counts()
    small = counts[counts < min_per_class]
    if small.empty:
        return crops, {}
    sizes = {str(name): int(count) for name, count in small.items()}
    skipped = {name: sizes[name] for name in classes_by_count(sizes)}
    return crops.loc[~crops["class"].isin(small.index)], skipped


def _class_codes(classes: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    # sort=True orders class ids by name (code points), so ids never depend on row order
    # or hashing.
    codes, names = pd.factorize(classes, sort=True)
    return np.asarray(names, dtype=object), codes.astype(np.int64)


def _column_values(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values`` as the array pandas makes of them in a column (``str`` in pandas 3,
    ``object`` before), to ``take`` a column's cells from: pandas then checks the distinct
    values once instead of every cell of each column, which millions of pairs make slow."""
    return pd.Series(values, copy=False).array


def _relative_paths(paths: np.ndarray, base: Path, output: Any, keep: bool) -> np.ndarray:
    """Rewrite paths relative to ``base`` as paths relative to the folder of ``output``.

    One prefix is computed once and joined to every path (images are never stat-ed);
    absolute paths are made relative on their own.
    """
    if keep:
        return paths
    out_dir = base if output is None else Path(output).parent
    try:
        prefix = os.path.relpath(os.path.abspath(base), os.path.abspath(out_dir))
    except ValueError:  # another drive on Windows: no relative path exists
        prefix = os.path.abspath(base)
    prefix = prefix.replace(os.sep, "/")
    # One search of all the paths joined tells, at C speed, whether any could be absolute
    # or hold . or .. segments; only then is each path looked at on its own.
    joined = "\x00" + "\x00".join(paths) + "\x00"
    may_be_absolute = any(mark in joined for mark in ("\x00/", "\x00\\", ":"))
    may_be_untidy = any(
        mark in joined for mark in ("/./", "/../", "\x00./", "\x00../", "/.\x00", "/..\x00")
    )
    is_abs = np.zeros(len(paths), dtype=bool)
    if may_be_absolute:
        is_abs = np.fromiter((os.path.isabs(p) for p in paths), dtype=bool, count=len(paths))
    if not is_abs.any():
        # The usual case: every path relative, so none is selected or copied.
        return paths if prefix == "." else _prefixed(paths, prefix, may_be_untidy)
    result = paths.copy()
    if prefix != ".":
        result[~is_abs] = _prefixed(result[~is_abs], prefix, may_be_untidy)
    result[is_abs] = [_relative_to(p, out_dir) for p in result[is_abs]]
    return result


def _prefixed(relative: np.ndarray, prefix: str, may_be_untidy: bool) -> np.ndarray:
    """``prefix/path`` for every path, normalised where a path has . or .. segments."""
    prefixed = prefix + "/" + relative
    if may_be_untidy:
        untidy = np.fromiter((_has_dot_segment(p) for p in relative), dtype=bool, count=len(relative))
        prefixed[untidy] = [posixpath.normpath(p) for p in prefixed[untidy]]
    return prefixed


def _has_dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def _relative_to(path: str, folder: Path) -> str:
    try:
        return os.path.relpath(path, os.path.abspath(folder)).replace(os.sep, "/")
    except ValueError:
        return path


# ------------------------------------------------------------------------------ splits


def _assign_splits(
    codes: np.ndarray,
    n_classes: int,
    groups: np.ndarray | None,
    ratios: tuple[float, float, float],
    split_by: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of every item; ``codes`` is sorted."""
    bounds = np.cumsum(ratios[:2])
    if split_by == "item":
        # Systematic sampling inside each class: the class's items in random order sit at
        # positions (rank + u) / n for one random offset u, which fall into the splits in
        # the requested proportions give or take one item per class, on average exactly.
        n = len(codes)
        sizes = np.bincount(codes, minlength=n_classes)
        starts = np.cumsum(sizes) - sizes
        # One sort of class + a random fraction orders each class's items at random.
        shuffled = np.argsort(codes + rng.random(n), kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[shuffled] = np.arange(n) - starts[codes[shuffled]]
        offset = rng.random(n_classes)
        position = (rank + offset[codes]) / sizes[codes]
        return np.searchsorted(bounds, position, side="right").astype(np.int8)
    if split_by == "class":
        group_codes = codes
        n_groups = n_classes
    else:
        raw, _ = pd.factorize(pd.Series(groups, dtype=object), sort=True)
        group_codes = raw.astype(np.int64)
        n_groups = int(group_codes.max()) + 1
    # Whole groups in random order, each placed by the middle of the share of items it
    # takes, so the splits get the requested fraction of items as nearly as groups allow.
    weights = np.bincount(group_codes, minlength=n_groups).astype(np.float64)
    permuted = rng.permutation(n_groups)
    taken = np.cumsum(weights[permuted])
    middle = (taken - weights[permuted] / 2) / taken[-1]
    group_split = np.empty(n_groups, dtype=np.int8)
    group_split[permuted] = np.searchsorted(bounds, middle, side="right")
    return group_split[group_codes]


# ------------------------------------------------------------------------------ sampling


def _sample_all(
    codes: np.ndarray,
    item_split: np.ndarray,
    positives: int,
    negatives_per_positive: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, int]]]:
    """Pairs of every split as global item indices; rows grouped by split (train, val,
    test), in random order inside a split, sides in random order."""
    lefts, rights, labels, splits, stats = [], [], [], [], []
    for index in range(len(SPLITS)):
        items = np.flatnonzero(item_split == index)  # still sorted by class
        local = _compact(codes[items])
        pos_l, pos_r = _positive_pairs(local, positives, rng)
        wanted = math.floor(negatives_per_positive * len(pos_l) + 0.5)
        neg_l, neg_r = _negative_pairs(local, wanted, rng)
        left = np.concatenate([pos_l, neg_l])
        right = np.concatenate([pos_r, neg_r])
        label = np.concatenate([np.ones(len(pos_l), np.int8), np.zeros(len(neg_l), np.int8)])
        swap = rng.random(len(left)) < 0.5
        left, right = np.where(swap, right, left), np.where(swap, left, right)
        shuffle = rng.permutation(len(left))
        lefts.append(items[left[shuffle]])
        rights.append(items[right[shuffle]])
        labels.append(label[shuffle])
        splits.append(np.full(len(left), index, dtype=np.int8))
        stats.append({"positives": len(pos_l), "negatives": len(neg_l), "negatives_wanted": wanted})
    return (
        np.concatenate(lefts),
        np.concatenate(rights),
        np.concatenate(labels),
        np.concatenate(splits),
        stats,
    )


def _compact(codes: np.ndarray) -> np.ndarray:
    """Sorted class codes -> 0..k-1 in the same order."""
    if len(codes) == 0:
        return codes
    return np.concatenate([[0], np.cumsum(codes[1:] != codes[:-1])]).astype(np.int64)


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``[0..c0-1, 0..c1-1, ...]`` without a Python loop."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _positive_pairs(cls: np.ndarray, per_image: int, rng: np.random.Generator):
    """Same-class pairs: per class min(per_image * n, n(n-1)/2) distinct pairs."""
    if len(cls) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sizes = np.bincount(cls)
    starts = np.cumsum(sizes) - sizes
    space = sizes * (sizes - 1) // 2
    wanted = np.minimum(per_image * sizes, space)
    dense = 2 * wanted > space  # most of the class's pairs are wanted: list them all

    # Dense classes: every pair (i, j > i) of the class, then a random subset of each.
    items = np.flatnonzero(dense[cls])
    partners = starts[cls[items]] + sizes[cls[items]] - 1 - items
    d_left = np.repeat(items, partners)
    d_right = d_left + 1 + _ragged_arange(partners)
    d_cls = cls[d_left]
    keys = np.lexsort((rng.random(len(d_left)), d_cls))
    rank = np.arange(len(keys)) - np.searchsorted(d_cls[keys], d_cls[keys], side="left")
    keep = np.sort(keys[rank < wanted[d_cls[keys]]])
    d_left, d_right = d_left[keep], d_right[keep]

    # Sparse classes: each image draws its partners first, so every image is in at least
    # one positive, then the shortfall left by duplicates is drawn at random.
    sparse = ~dense & (wanted > 0)
    need = np.where(sparse, wanted, 0)

    def draw(group: np.ndarray, left: np.ndarray | None = None):
        if left is None:
            left = starts[group] + rng.integers(0, sizes[group], dtype=np.int64)
        step = 1 + rng.integers(0, sizes[group] - 1, dtype=np.int64)
        right = starts[group] + (left - starts[group] + step) % sizes[group]
        return left, right

    first_left = np.repeat(np.flatnonzero(sparse[cls]), per_image)
    first_group = cls[first_left]
    first = (*draw(first_group, first_left), first_group)
    s_left, s_right = _fill_unique(need, draw, len(cls), rng, first)
    return np.concatenate([d_left, s_left]), np.concatenate([d_right, s_right])


def _negative_pairs(cls: np.ndarray, wanted: int, rng: np.random.Generator):
    """Different-class pairs: ``wanted`` distinct ones, or all there are if fewer."""
    n = len(cls)
    empty = np.empty(0, np.int64), np.empty(0, np.int64)
    if n == 0 or wanted == 0:
        return empty
    sizes = np.bincount(cls)
    starts = np.cumsum(sizes) - sizes
    ends = starts + sizes
    space = (n * n - int((sizes.astype(np.int64) ** 2).sum())) // 2
    wanted = min(wanted, space)
    if wanted == 0:
        return empty
    if 2 * wanted > space:
        # Most of the different-class pairs are wanted: list them all (i, j in a later
        # class) and keep a random subset; space < 2 * wanted keeps this output-sized.
        partners = n - ends[cls]
        left = np.repeat(np.arange(n, dtype=np.int64), partners)
        right = ends[cls[left]] + _ragged_arange(partners)
        keep = np.sort(rng.permutation(len(left))[:wanted])
        return left[keep], right[keep]

    def draw(group: np.ndarray):
        left = rng.integers(0, n, size=len(group), dtype=np.int64)
        c = cls[left]
        # An index among the items outside class c, mapped past c's block.
        k = rng.integers(0, n - sizes[c], dtype=np.int64)
        right = k + (k >= starts[c]) * sizes[c]
        return left, right

    return _fill_unique(np.array([wanted], dtype=np.int64), draw, n, rng)


def _fill_unique(
    need: np.ndarray,
    draw: Callable[..., tuple[np.ndarray, np.ndarray]],
    n: int,
    rng: np.random.Generator,
    first: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling of distinct unordered pairs, ``need[g]`` of them for group g.

    Each round draws candidates for the groups still short, encodes each unordered pair as
    ``min * n + max``, drops pairs already taken or repeated in the round (``np.unique``),
    and keeps at most the shortfall of each group, in the order drawn. Callers use it only
    where at most half of a group's pairs are wanted, so each round fills most of the rest.
    """
    remaining = need.astype(np.int64).copy()
    taken = np.empty(0, np.int64)
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    candidates = first
    for _ in range(_MAX_ROUNDS):
        if not remaining.any():
            break
        if candidates is None:
            short = np.flatnonzero(remaining)
            count = np.ceil(remaining[short] * _OVERSAMPLE).astype(np.int64) + 2
            group = np.repeat(short, count)
            candidates = (*draw(group), group)
        left, right, group = candidates
        candidates = None
        keys = np.minimum(left, right) * n + np.maximum(left, right)
        _, first_seen = np.unique(keys, return_index=True)
        first_seen.sort()
        fresh = first_seen[~_is_in_sorted(keys[first_seen], taken)]
        by_group = np.argsort(group[fresh], kind="stable")
        sorted_groups = group[fresh][by_group]
        rank = np.arange(len(by_group)) - np.searchsorted(sorted_groups, sorted_groups, side="left")
        chosen = fresh[np.sort(by_group[rank < remaining[sorted_groups]])]
        lefts.append(left[chosen])
        rights.append(right[chosen])
        # Two sorted runs: the stable sort (timsort) merges them in linear time.
        taken = np.sort(np.concatenate([taken, np.sort(keys[chosen])]), kind="stable")
        remaining -= np.bincount(group[chosen], minlength=len(remaining))
    else:  # pragma: no cover - would need astronomically bad luck
        raise RuntimeError("pair sampling did not converge; please report this as a bug")
    if not lefts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(lefts), np.concatenate(rights)


def _is_in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    # np.isin would hash or sort both arrays every round; the taken keys are kept sorted,
    # so a binary search per candidate is enough.
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    where = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[where] == values


# ------------------------------------------------------------------------------ output


def _summary(
    source: Any,
    output: Any,
    class_names: np.ndarray,
    codes: np.ndarray,
    item_split: np.ndarray,
    stats: list[dict[str, int]],
    skipped: dict[str, int],
    options: dict[str, Any],
) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for index, name in enumerate(SPLITS):
        counts = np.bincount(codes[item_split == index], minlength=len(class_names))
        part = stats[index]
        splits[name] = {
            "images": int(counts.sum()),
            "classes": int((counts > 0).sum()),
            "pairs": part["positives"] + part["negatives"],
            "positives": part["positives"],
            "negatives": part["negatives"],
            "negatives_wanted": part["negatives_wanted"],
            # One image in this split: it gives negatives here, but no positives.
            "single_image_classes": [str(c) for c in class_names[counts == 1]],
        }
    positives = sum(s["positives"] for s in stats)
    negatives = sum(s["negatives"] for s in stats)
    return {
        "input": "<DataFrame>" if isinstance(source, pd.DataFrame) else str(source),
        "output": None if output is None else str(output),
        "images": int(len(codes)),
        "classes": int(len(class_names)),
        "pairs": positives + negatives,
        "positives": positives,
        "negatives": negatives,
        "options": options,
        "splits": splits,
        "skipped_classes": skipped,
    }


_NEEDS_QUOTES = (",", '"', "\r", "\n")


def _csv_field(value: str) -> str:
    # The quoting of Python's csv module (QUOTE_MINIMAL), applied once per distinct image
    # and class instead of once per cell: the rows are then plain concatenations.
    if any(c in value for c in _NEEDS_QUOTES):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv_fields(values: np.ndarray, suffix: str) -> np.ndarray:
    """``_csv_field(v) + suffix`` for every value; a million paths usually need no quotes
    at all, which one search of their concatenation tells at C speed."""
    joined = "\x00".join(values)
    if not any(c in joined for c in _NEEDS_QUOTES):
        return values + suffix
    return np.array([_csv_field(v) + suffix for v in values], dtype=object)


def _write_csv(
    path: Path,
    paths: np.ndarray,
    class_names: np.ndarray,
    codes: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    label: np.ndarray,
    pair_split: np.ndarray,
    overwrite: bool,
) -> None:
    """Write pairs.csv atomically, UTF-8 with ``\\n`` line ends.

    Built from per-image and per-class pieces rather than with ``DataFrame.to_csv``, which
    is several times slower on millions of rows; the bytes are what ``csv.writer`` writes.
    """
    path_part = _csv_fields(paths, ",")
    label_part = np.array(["0,", "1,"], dtype=object)
    class_part = _csv_fields(class_names, ",")
    tail = np.array(
        [_csv_field(c) + "," + s + "\n" for c in class_names for s in SPLITS], dtype=object
    )
    with _io.atomic_path(path, overwrite) as tmp, open(tmp, "wb") as out:
        out.write((",".join(PAIRS_COLUMNS) + "\n").encode("utf-8"))
        for start in range(0, len(label), _CSV_CHUNK_ROWS):
            window = slice(start, start + _CSV_CHUNK_ROWS)
            lw, rw = left[window], right[window]
            rows = zip(
                path_part[lw],
                path_part[rw],
                label_part[label[window]],
                class_part[codes[lw]],
                tail[codes[rw] * len(SPLITS) + pair_split[window]],
            )
            out.write("".join(map("".join, rows)).encode("utf-8"))


__all__ = [
    "DEFAULT_SPLIT",
    "PAIRS_COLUMNS",
    "SPLITS",
    "SPLIT_BY",
    "PairsOptionError",
    "make_pairs",
    "parse_split",
    "read_pairs",
    "split_crops",
]
