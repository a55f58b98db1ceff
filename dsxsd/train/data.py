"""The input pipeline: a pairs manifest into batches of ``((left, right), label)``.

Pairs share images (an image of a class with many pairs appears in dozens of them), so the
pipeline works on the distinct images, not on the pairs: each epoch decodes every distinct
image once (or never again, with ``cache``), holds them as one uint8 tensor, and builds a
batch by gathering rows of it. A pair costs an index lookup, not a file read and a decode.

Decoding and resizing are one function (:func:`decode_and_resize`) shared by training and
by :func:`load_images`, so a model sees the same pixels at prediction time as in training.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from .._images import RESIZE_MODES
from .._preflight import augment_policy
from ..errors import (
    HostileInputError, ImageDecodeError, ManifestError, MissingImageError, require_path,
)
from ..pairs import read_pairs
from .augment import augment_batch, augment_uint8  # augment_batch stays importable from here

AUTOTUNE = tf.data.AUTOTUNE
# How many offending paths an error lists before "and N more".
LIST_FIRST = 5


# ---------------------------------------------------------------------------- one image


def read_file(path: tf.Tensor) -> tf.Tensor:
    """The file's bytes. A module-level function so tests can count reads."""
    return tf.io.read_file(path)


def decode_and_resize(path: tf.Tensor, image_size: int, resize: str = "stretch") -> tf.Tensor:
    """One image file -> uint8 [S, S, 3] RGB.

    JPEG, PNG, BMP and GIF (first frame); grayscale is repeated to three channels, alpha is
    dropped. ``stretch`` resizes to S x S ignoring the aspect ratio (the reference
    behaviour); ``letterbox`` keeps the aspect ratio and pads with black. Rounded back to
    uint8 so the cached images are a quarter of the float size.
    """
    image = tf.io.decode_image(read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if resize == "stretch":
        resized = tf.image.resize(image, [image_size, image_size], antialias=True)
    elif resize == "letterbox":
        resized = tf.image.resize_with_pad(image, image_size, image_size, antialias=True)
    else:
        raise ValueError(f"unknown resize mode {resize!r}; expected one of {RESIZE_MODES}")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def load_images(
    paths: Sequence[str | os.PathLike[str]], image_size: int, resize: str = "stretch"
) -> np.ndarray:
    """Images as float32 [N, S, S, 3] raw 0-255 RGB, decoded exactly as in training.

    Raises MissingImageError / ImageDecodeError naming the (first) bad file.
    """
    paths = [str(p) for p in paths]
    if not paths:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    check_images(paths)
    ds = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(lambda p: decode_and_resize(p, image_size, resize), num_parallel_calls=AUTOTUNE)
        .batch(256)
    )
    return np.concatenate([batch.numpy() for batch in ds]).astype(np.float32)


# ---------------------------------------------------------------------- checking files


def check_images(paths: Sequence[str], source: str | os.PathLike[str] | None = None, rows: dict[str, int] | None = None) -> None:
    """Refuse, before any training step, images that are missing, hostile or undecodable.

    Every distinct file is checked: it exists, its header opens with Pillow and is not a
    decompression bomb (Pillow's pixel limit), and TensorFlow decodes it (the decoder
    training uses). One error lists how many are bad and the first few, naming ``source``
    (the manifest) and each path's row, so a user fixes them all in one go.
    """
    from PIL import Image

    distinct = list(dict.fromkeys(paths))
    missing = [p for p in distinct if not os.path.isfile(p)]
    if missing:
        raise _listing(MissingImageError, missing, "missing", source, rows)
    bombs, broken = [], []
    for p in distinct:
        try:
            with Image.open(p) as im:
                if im.width * im.height > Image.MAX_IMAGE_PIXELS:
                    bombs.append(p)
        except Image.DecompressionBombError:
            bombs.append(p)
        except Exception:  # noqa: BLE001 - anything Pillow refuses is "cannot be decoded"
            broken.append(p)
    if bombs:
        raise _listing(HostileInputError, bombs, f"over {Image.MAX_IMAGE_PIXELS} pixels (decompression bomb?)", source, rows)
    pil_broken = set(broken)
    broken += _tf_undecodable([p for p in distinct if p not in pil_broken])
    if broken:
        order = {p: i for i, p in enumerate(distinct)}
        raise _listing(ImageDecodeError, sorted(broken, key=order.__getitem__), "cannot be decoded", source, rows)


def _tf_undecodable(paths: list[str]) -> list[str]:
    """Paths TensorFlow fails to decode: decode all in parallel, see which survive."""
    if not paths:
        return []
    ds = (
        tf.data.Dataset.from_tensor_slices(paths)
        .enumerate()
        .map(
            lambda i, p: (i, tf.shape(tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False))),
            num_parallel_calls=AUTOTUNE,
        )
        .ignore_errors()
        .map(lambda i, _: i)
        .batch(4096)
    )
    ok = set(np.concatenate([b.numpy() for b in ds] or [np.zeros(0, np.int64)]).tolist())
    return [p for i, p in enumerate(paths) if i not in ok]


def _listing(error, bad: list[str], what: str, source, rows: dict[str, int] | None) -> Exception:
    if source is None and len(bad) == 1:
        return error(f"image {what}", file=bad[0])
    shown = [f"{p} (row {rows[p]})" if rows and p in rows else p for p in bad[:LIST_FIRST]]
    more = f" and {len(bad) - LIST_FIRST} more" if len(bad) > LIST_FIRST else ""
    noun = "image" if len(bad) == 1 else "images"
    return error(f"{len(bad)} {noun} {what}: {', '.join(shown)}{more}", file=source)


# ------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class PairTable:
    """A split of a pairs manifest, as indices into its distinct images."""

    paths: list[str]  # distinct image paths, absolute
    left: np.ndarray  # int32 [P], index into paths
    right: np.ndarray  # int32 [P]
    labels: np.ndarray  # float32 [P], 1.0 = same class
    rows: dict[str, int]  # path -> first manifest row naming it (spreadsheet rows)
    # int32 [N], each image's class as an index into the split's sorted class names: what
    # resampled partners are drawn by (:func:`_partner_sampler`). None in a table built by
    # hand, which then cannot resample.
    classes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, drop_remainder: bool = False) -> int:
        """How many batches one pass over the pairs makes."""
        return len(self) // batch_size if drop_remainder else -(-len(self) // batch_size)


def read_manifest(manifest: str | os.PathLike[str]):
    """The pairs manifest, validated by :func:`dsxsd.read_pairs`, as a DataFrame with
    ``left``/``right`` made absolute (they are relative to the manifest's folder) and
    ``row`` added: the row as a spreadsheet shows it (header = row 1), for messages."""
    manifest = require_path(manifest)
    if not manifest.is_file():
        raise ManifestError("not a pairs manifest file", file=manifest)
    table = read_pairs(manifest).reset_index(drop=True).copy()
    root = manifest.resolve().parent
    for side in ("left", "right"):
        table[side] = [p if os.path.isabs(p) else os.path.normpath(root / p) for p in table[side].astype(str)]
    table["label"] = pd.to_numeric(table["label"]).astype(np.float32)
    table["split"] = table["split"].astype(str).str.strip()
    table["row"] = np.arange(2, len(table) + 2)
    return table


def pair_table(table, split: str, manifest: str | os.PathLike[str] | None = None) -> PairTable:
    """The rows of ``split`` as a :class:`PairTable`."""
    rows = table[table["split"] == split]
    if rows.empty:
        raise ManifestError(f"no pairs in split {split!r}", file=manifest)
    paths = list(dict.fromkeys(list(rows["left"]) + list(rows["right"])))
    index = {p: i for i, p in enumerate(paths)}
    first_row: dict[str, int] = {}
    for side in ("left", "right"):
        for p, r in zip(rows[side], rows["row"]):
            first_row[p] = min(first_row.get(p, r), r)
    return PairTable(
        paths=paths,
        left=np.array([index[p] for p in rows["left"]], np.int32),
        right=np.array([index[p] for p in rows["right"]], np.int32),
        labels=rows["label"].to_numpy(np.float32),
        rows=first_row,
        classes=_image_classes(rows, index, manifest),
    )


def _image_classes(rows, index: dict[str, int], manifest) -> np.ndarray:
    """Each image's class id: its class's place among the split's sorted class names.

    An image the manifest gives two classes is refused: its labels contradict each other
    (it would be "the same class" as images of both), and a partner drawn for it by class
    would be as wrong.
    """
    sides = pd.DataFrame({
        "path": np.concatenate([rows["left"].to_numpy(str), rows["right"].to_numpy(str)]),
        "cls": np.concatenate([rows["left_class"].to_numpy(str), rows["right_class"].to_numpy(str)]),
        "row": np.concatenate([rows["row"].to_numpy(), rows["row"].to_numpy()]),
    }).sort_values("row", kind="stable")
    first = sides.drop_duplicates("path").set_index("path")
    clash = sides[sides["cls"].to_numpy() != first["cls"].reindex(sides["path"]).to_numpy()]
    if not clash.empty:
        path, cls, row = clash.iloc[0][["path", "cls", "row"]]
        raise ManifestError(
            f"image {path} is class {cls!r} here but {first.at[path, 'cls']!r} in row {first.at[path, 'row']}",
            file=manifest, row=int(row),
        )
    names = first["cls"].to_numpy(str)
    classes = np.empty(len(index), np.int32)
    classes[[index[p] for p in first.index]] = np.searchsorted(np.unique(names), names)
    return classes


# -------------------------------------------------------------------------- the dataset


def make_dataset(
    manifest: str | os.PathLike[str],
    split: str,
    *,
    image_size: int = 105,
    batch_size: int = 32,
    resize: str = "stretch",
    augment: bool | str = False,
    augment_flips: bool | None = None,
    shuffle: bool | None = None,
    resample_negatives: bool = False,
    resample_positives: bool = False,
    cache: str | os.PathLike[str] | None = "memory",
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    check: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``((left, right), label)`` batches from one split.

    ``left``/``right`` uint8 [B, S, S, 3] RGB, ``label`` float32 [B] (1 = same class).
    The images stay uint8 because the model casts them itself (its first layer): a
    quarter of the bytes of float32 to write per batch and to copy to an accelerator,
    which measurably brings an epoch closer to the bare decode cost. ``shuffle`` defaults to on for ``train`` only; without it batches follow
    the manifest's row order. ``resample_negatives`` / ``resample_positives`` give each
    different-class / same-class pair a fresh right-hand partner from the split's own
    images every pass (see :func:`pairs_dataset`; :func:`dsxsd.train.fit` does it for
    ``train`` only). ``cache``: ``"memory"`` decodes the split's images once
    for the whole run, a folder keeps them on disk across runs, ``None``/``"none"``
    decodes each distinct image once per epoch. ``repeat`` makes it endless (for
    ``steps_per_epoch``). ``augment``: ``"basic"`` (or ``True``) or ``"crops"``, flipping
    as ``augment_flips`` says (:mod:`dsxsd.train.augment`). ``check`` refuses missing/undecodable images up front.
    """
    table = read_manifest(manifest)
    pairs = pair_table(table, split, manifest)
    if check:
        check_images(pairs.paths, manifest, pairs.rows)
    return pairs_dataset(
        pairs,
        image_size=image_size,
        batch_size=batch_size,
        resize=resize,
        augment=augment,
        augment_flips=augment_flips,
        shuffle=split == "train" if shuffle is None else shuffle,
        resample_negatives=resample_negatives,
        resample_positives=resample_positives,
        cache=cache,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        cache_key=f"{split}",
    )


def pairs_dataset(
    pairs: PairTable,
    *,
    image_size: int,
    batch_size: int,
    resize: str = "stretch",
    augment: bool | str = False,
    augment_flips: bool | None = None,
    shuffle: bool = False,
    resample_negatives: bool = False,
    resample_positives: bool = False,
    cache: str | os.PathLike[str] | None = "memory",
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    cache_key: str = "",
    start: int = 0,
) -> tf.data.Dataset:
    """The pipeline behind :func:`make_dataset`, from a :class:`PairTable`.

    One element holds the whole split's decoded images [N, S, S, 3] uint8
    (:func:`split_images`); each pass over the pairs shuffles the pair indices (a fresh, seeded permutation per
    pass), cuts them into batches, gathers each batch's images and augments them. With
    ``resample_negatives`` / ``resample_positives`` each pass also draws every
    different-class / same-class pair a new right-hand image (:func:`_partner_sampler`);
    the left images, the labels and the order stay what they would be without.

    With ``repeat`` the dataset is one endless stream of passes, and pass ``p``'s order,
    partners and augmentation are a function of ``(seed, p)`` alone; ``start`` begins the
    stream that many batches in. A resumed run passes the batches its finished epochs
    took, so it sees exactly the batches an uninterrupted run would have. Without
    ``repeat`` each iteration of the dataset (each epoch of a ``model.fit``) draws a new
    order and new partners.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; expected one of {RESIZE_MODES}")
    images = split_images(pairs, image_size=image_size, resize=resize, cache=cache, cache_key=cache_key)
    return _pair_batches(
        pairs, images, batch_size=batch_size, augment=augment, augment_flips=augment_flips, shuffle=shuffle,
        resample_negatives=resample_negatives, resample_positives=resample_positives, seed=seed, repeat=repeat,
        drop_remainder=drop_remainder, start=start,
    )


def features_dataset(
    pairs: PairTable,
    features,
    *,
    batch_size: int,
    shuffle: bool = False,
    resample_negatives: bool = False,
    resample_positives: bool = False,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    start: int = 0,
) -> tf.data.Dataset:
    """:func:`pairs_dataset`'s batches with each image replaced by its row of ``features``
    ([N, ...], one row per image of ``pairs.paths``): ``((left, right), label)``.

    The same settings give the same pairs, in the same order, with the same resampled
    partners, as :func:`pairs_dataset`'s: both gather from one tensor of the split's
    distinct images by the pairs' indices, and only what a row holds differs. What
    :func:`dsxsd.train.fit` trains a head on while the tower is frozen.
    """
    return _pair_batches(
        pairs, tf.data.Dataset.from_tensors(features), batch_size=batch_size, augment=False, shuffle=shuffle,
        resample_negatives=resample_negatives, resample_positives=resample_positives, seed=seed, repeat=repeat,
        drop_remainder=drop_remainder, start=start,
    )


def split_images(
    pairs: PairTable, *, image_size: int, resize: str = "stretch", cache: str | os.PathLike[str] | None = "memory",
    cache_key: str = "",
) -> tf.data.Dataset:
    """A dataset of one element: the split's distinct images, uint8 [N, S, S, 3] in the
    order of ``pairs.paths``, decoded once (and kept, see ``cache`` in :func:`make_dataset`)."""
    images = (
        tf.data.Dataset.from_tensor_slices(pairs.paths)
        .map(lambda p: decode_and_resize(p, image_size, resize), num_parallel_calls=AUTOTUNE)
        .batch(len(pairs.paths))
    )
    return _cached(images, cache, pairs, image_size, resize, cache_key)


def _pair_batches(
    pairs: PairTable, images: tf.data.Dataset, *, batch_size: int, augment: bool | str, shuffle: bool,
    resample_negatives: bool, resample_positives: bool, seed: int, repeat: bool, drop_remainder: bool, start: int,
    augment_flips: bool | None = None,
) -> tf.data.Dataset:
    """The batches of :func:`pairs_dataset` and :func:`features_dataset`, gathered from
    ``images``: one element holding a row per distinct image (an image, or its features)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if start and not repeat:
        raise ValueError("start needs repeat: only the endless stream has a position to start at")
    n_batches = pairs.batches(batch_size, drop_remainder)
    first_pass, skip = divmod(start, n_batches)
    if repeat:
        images = images.repeat()
        # Each pass's seed is drawn from (seed, pass number) alone: what the stream holds
        # at a position never depends on how often a process iterated it before.
        seeds = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max).map(
            lambda n: tf.random.stateless_uniform(
                [], tf.stack([tf.constant(seed, tf.int64), n]), minval=None, maxval=None, dtype=tf.int64
            )
        )
    else:
        # One seed per iteration, different each time the dataset is iterated.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    left = tf.constant(pairs.left)
    right = tf.constant(pairs.right)
    labels = tf.constant(pairs.labels)
    partners = _partner_sampler(pairs, resample_negatives, resample_positives)
    policy = augment_policy(augment)

    def one_epoch(rows: tf.Tensor, epoch_seed: tf.Tensor) -> tf.data.Dataset:
        order = tf.range(len(pairs), dtype=tf.int32)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([epoch_seed, tf.constant(seed, tf.int64)])
            )
        rights = right
        if partners is not None:
            rights = partners(tf.random.experimental.stateless_fold_in(
                tf.stack([epoch_seed, tf.constant(seed, tf.int64)]), 1))
        # The epoch's batch steps, each with the epoch's images and pairs. No function
        # runs in here: a map inside would be instantiated anew each epoch, after the
        # images are decoded, a delay before every epoch's first batch. The rows, order
        # and partners travel wrapped in an Optional, a handle: tf.data's cost per element
        # grows with the size of the tensors in it (figures: benchmarks/README.md).
        shared = tf.experimental.Optional.from_value((rows, order, rights))
        epoch = tf.data.Dataset.from_tensors((shared, epoch_seed)).repeat()
        return tf.data.Dataset.zip(epoch, tf.data.Dataset.range(n_batches))

    def gather(epoch, step: tf.Tensor):
        shared, epoch_seed = epoch
        rows, order, rights = shared.get_value()
        # A batch is a slice of the epoch's order: batching the order's scalars one by one
        # cost more per epoch than gathering the rows.
        idx = order[step * batch_size : (step + 1) * batch_size]
        a = tf.gather(rows, tf.gather(left, idx))
        b = tf.gather(rows, tf.gather(rights, idx))
        if policy != "none":
            a = augment_uint8(a, tf.stack([epoch_seed, 2 * step]), policy, augment_flips)
            b = augment_uint8(b, tf.stack([epoch_seed, 2 * step + 1]), policy, augment_flips)
        return (a, b), tf.gather(labels, idx)

    # Skipping the (handle, step) elements costs no gather: only the steps are counted off.
    ds = tf.data.Dataset.zip(images, seeds).flat_map(one_epoch).skip(skip).map(gather, num_parallel_calls=AUTOTUNE)
    if not repeat:
        # flat_map hides the length; stating it gives Keras its progress bar total and
        # spares the "ran out of data" warning at the end of the first epoch.
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    options = tf.data.Options()
    # Workers of a multi-worker run each see every image and take every n-th batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(AUTOTUNE)


def _partner_sampler(pairs: PairTable, negatives: bool, positives: bool):
    """A function from a pass's seed to that pass's right-hand image of every pair, or
    ``None`` when nothing is resampled.

    Why: a manifest fixes each image's partners, so on a small dataset the model sees the
    same few pairs every epoch and memorises them. Drawn afresh each pass, a
    different-class pair's partner is any image of another class and a same-class pair's
    any other image of its class (a pair with none to draw from keeps its partner). Partners come
    only from the split's own images, so splits stay leak-free.

    Vectorised, no Python per pair: ``by_class`` lists the images class by class, class
    ``c`` being the block ``start[c] : start[c] + count[c]``. A different-class partner is
    a uniform ``r`` in ``[0, n - count[c])`` stepped over c's block; a same-class one a
    uniform ``r`` in ``[0, count[c] - 1)`` stepped over the left image's own place in it.
    A pair left as it is draws too, from a span of one that lands on its own partner.
    """
    if not (negatives or positives):
        return None
    if pairs.classes is None:
        raise ValueError("resampling partners needs the PairTable's classes (pair_table gives them)")
    classes = pairs.classes.astype(np.int64)
    n = len(classes)
    by_class = np.argsort(classes, kind="stable")
    place = np.empty(n, np.int64)
    place[by_class] = np.arange(n)
    count = np.bincount(classes)
    start = np.cumsum(count) - count
    c = classes[pairs.left]
    negative = pairs.labels == 0
    # A pair with nothing to draw from (a class of one image; a split of one class) keeps its partner.
    drawn = np.where(negative, negatives & (n > count[c]), positives & (count[c] > 1))
    span = np.where(drawn, np.where(negative, n - count[c], count[c] - 1), 1)
    base = np.where(drawn, np.where(negative, 0, start[c]), place[pairs.right])
    step_at = np.where(drawn, np.where(negative, start[c], place[pairs.left] - start[c]), 1)
    step_by = np.where(drawn, np.where(negative, count[c], 1), 0)
    by_class, span, base, step_at, step_by = map(tf.constant, (by_class, span, base, step_at, step_by))

    def partners(pass_seed: tf.Tensor) -> tf.Tensor:
        # Full-range integers modulo the span: uniform but for a bias of span / 2**64.
        draw = tf.random.stateless_uniform([len(pairs)], pass_seed, minval=None, maxval=None, dtype=tf.int64)
        r = tf.math.floormod(draw, span)
        return tf.cast(tf.gather(by_class, base + r + tf.where(r >= step_at, step_by, 0)), tf.int32)

    return partners


def _cached(images: tf.data.Dataset, cache, pairs: PairTable, image_size: int, resize: str, key: str) -> tf.data.Dataset:
    if cache is None or str(cache) == "none":
        return images
    if str(cache) == "memory":
        return images.cache()
    folder = Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    # The file name is a digest of what was decoded and how, so a changed manifest or
    # image size never reads a stale cache.
    digest = hashlib.sha256("\n".join([str(image_size), resize, *pairs.paths]).encode()).hexdigest()[:16]
    prefix = folder / f"{key}-{digest}"
    if not Path(f"{prefix}.index").exists():
        # A run killed while writing the cache leaves a lock file that would block the
        # next run; with no finished cache there is nothing the lock protects.
        for lock in folder.glob(f"{prefix.name}*.lockfile"):
            lock.unlink(missing_ok=True)
    return images.cache(str(prefix))


__all__ = [
    "PairTable",
    "augment_batch",
    "check_images",
    "decode_and_resize",
    "load_images",
    "make_dataset",
    "features_dataset",
    "pair_table",
    "pairs_dataset",
    "read_manifest",
    "split_images",
]
