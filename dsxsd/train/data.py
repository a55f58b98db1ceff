"""The input pipeline: a pairs manifest into batches of ``((left, right), label)``.

Pairs share images (an image of a class with many pairs appears in dozens of them), so the
pipeline works on the distinct images, not on the pairs: every distinct image is decoded
once, in the pass that checks it, into uint8 rows kept in memory or in a store on disk
(:mod:`dsxsd.train.store`; or decoded again each epoch, ``cache="none"``), and a batch is
built by gathering rows. A pair costs an index lookup, not a file read and a decode.

Decoding and resizing are one function (:func:`decode_and_resize`) shared by training and
by :func:`load_images`, so a model sees the same pixels at prediction time as in training.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from .._images import RESIZE_MODES
from .._preflight import CACHE_MODES, augment_policy, default_cache_limit
from ..errors import (
    HostileInputError, ImageDecodeError, ManifestError, MissingImageError, require_path,
)
from ..pairs import read_pairs
from . import _headers, store
from .store import Rows
from .augment import augment_batch, augment_uint8  # augment_batch stays importable from here

AUTOTUNE = tf.data.AUTOTUNE
# How many offending paths an error lists before "and N more".
LIST_FIRST = 5
# Images per write while a split's images are decoded into memory or a store.
DECODE_BATCH = 256


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
    return _decode_bytes_and_resize(read_file(path), image_size, resize)


def _decode_bytes_and_resize(contents: tf.Tensor, image_size: int, resize: str) -> tf.Tensor:
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
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
    images = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    decode_checked([(paths, images)], image_size=image_size, resize=resize)
    return images.astype(np.float32)


# ---------------------------------------------------------------------- checking files


def check_images(paths: Sequence[str], source: str | os.PathLike[str] | None = None, rows: dict[str, int] | None = None) -> None:
    """Refuse, before any training step, images that are missing, hostile or undecodable.

    Every distinct file is checked: it exists, the size its header gives is not a
    decompression bomb (over Pillow's pixel limit, ``PIL.Image.MAX_IMAGE_PIXELS``), and
    TensorFlow decodes it (the decoder training uses). One error lists how many are bad and the first few, naming ``source``
    (the manifest) and each path's row, so a user fixes them all in one go.
    """
    decode_checked([(list(paths), None)], source, rows)


def require_files(paths: Sequence[str], source: str | os.PathLike[str] | None = None, rows: dict[str, int] | None = None) -> None:
    """Refuse missing images (listed as :func:`check_images` lists them): a look at each
    file, nothing read."""
    missing = [p for p in dict.fromkeys(paths) if not os.path.isfile(p)]
    if missing:
        raise _listing(MissingImageError, missing, "missing", source, rows)


def decode_checked(
    groups: Sequence[tuple[Sequence[str], np.ndarray | store.StoreWriter | None]],
    source: str | os.PathLike[str] | None = None,
    rows: dict[str, int] | None = None,
    *,
    image_size: int | None = None,
    resize: str = "stretch",
    check: bool = True,
) -> list[int]:
    """:func:`check_images` and the decoding of the images into their cache, in one pass.

    ``groups``: ``(paths, into)`` pairs; each image of ``paths`` is decoded once, resized
    (:func:`decode_and_resize`) and written in order into ``into`` (an array [N, S, S, 3] or
    a :class:`store.StoreWriter`), or, where ``into`` is ``None``, decoded only to see that
    it decodes. With ``check`` the files are checked as :func:`check_images` says first
    (missing files, then each header: :func:`_header_problem`), and the files refused there
    are never decoded; either way the images that fail to decode are listed in one error.
    Returns how many images each group decoded.
    """
    distinct = list(dict.fromkeys(p for paths, _ in groups for p in paths))
    problems: dict[str, str] = {}
    if check:
        require_files(distinct, source, rows)
        problems = _header_problems(distinct)
    broken = [p for p, problem in problems.items() if problem == "broken"]
    counts = []
    for paths, into in groups:
        broken += _decode_into(list(paths), into, image_size, resize, set(problems))
        counts.append(len(paths))
    order = {p: i for i, p in enumerate(distinct)}
    bombs = [p for p, problem in problems.items() if problem == "bomb"]
    if bombs:
        raise _listing(HostileInputError, bombs, f"over {_pixel_limit()} pixels (decompression bomb?)", source, rows)
    if broken:
        raise _listing(ImageDecodeError, sorted(set(broken), key=order.__getitem__), "cannot be decoded", source, rows)
    return counts


def _header_problems(paths: list[str]) -> dict[str, str]:
    """The files of ``paths`` refused by their header (:func:`_header_problem`), in order.
    One thread: a look is mostly Python (16 us a file here), and threads contending for
    the Python lock made it 6-8 times slower."""
    return {p: problem for p in paths if (problem := _header_problem(p))}


def _decode_into(paths: list[str], into, image_size: int | None, resize: str, refused: set[str]) -> list[str]:
    """Decode ``paths`` in parallel and in order, writing each batch of images into
    ``into`` (none: decode only); return the paths that failed to decode. The files in
    ``refused`` are not decoded: a tiny image is decoded in their place, never written."""
    if not paths:
        return []

    def decode(i, path, refuse):
        # No tf.cond: a condition in the map costs a tenth of a decode.
        contents = tf.where(refuse, _tiny_jpeg(), read_file(path))
        if into is None:  # the check alone: no resize, no pixels kept
            return i, refuse, tf.shape(tf.io.decode_image(contents, channels=3, expand_animations=False))
        return i, refuse, _decode_bytes_and_resize(contents, image_size, resize)

    ds = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths, [p in refused for p in paths]))
        .map(decode, num_parallel_calls=AUTOTUNE)
        .ignore_errors()  # a failed image drops out; its index is missing below
        .batch(DECODE_BATCH)
        .prefetch(1)
    )
    decoded = np.zeros(len(paths), bool)
    written = 0
    for index, refuse, images in ds.as_numpy_iterator():
        decoded[index[~refuse]] = True
        if into is None or written != index[0] or index[-1] != written + len(index) - 1 or refuse.any():
            continue  # after a failure nothing more is written: the error comes instead
        if isinstance(into, np.ndarray):
            into[written : written + len(index)] = images
        else:
            into.write(written, images)
        written += len(index)
    return [p for p, ok in zip(paths, decoded) if not ok and p not in refused]


@functools.cache
def _tiny_jpeg() -> bytes:
    """A 1 x 1 JPEG: what is decoded in a refused file's place."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, "JPEG")
    return out.getvalue()


def _pixel_limit() -> int:
    """Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``); no limit where it is None."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS or np.iinfo(np.int64).max


def _header_problem(path: str) -> str | None:
    """``"bomb"`` past Pillow's pixel limit, ``"broken"`` where it is no image, else None.

    The header's size decides (:func:`dsxsd.train._headers.pixels`, a few small reads);
    Pillow opens the files it does not bound and those it puts past the limit, to tell a
    bomb from bytes that only look like a header."""
    try:
        stated = _headers.pixels(path)
    except OSError:
        return None  # unreadable: the decoder says so, listed with the files it cannot decode
    if stated is not None and stated <= _pixel_limit():
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            return "bomb" if im.width * im.height > _pixel_limit() else ("broken" if stated else None)
    except Image.DecompressionBombError:
        return "bomb"
    except Exception:  # noqa: BLE001 - anything Pillow refuses is "cannot be decoded"
        return "broken"


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
    cache: str | os.PathLike[str] | None = "auto",
    cache_limit: int | None = None,
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
    ``train`` only). ``cache`` (:func:`split_images`): ``"memory"`` decodes the split's
    images once for the whole run, a folder keeps them in a store on disk across runs,
    ``"auto"`` is memory up to ``cache_limit`` bytes and a store in a temporary folder past
    it, ``None``/``"none"`` decodes each distinct image once per epoch. ``repeat`` makes
    it endless (for ``steps_per_epoch``). ``augment``: ``"basic"`` (or ``True``) or
    ``"crops"``, flipping as ``augment_flips`` says (:mod:`dsxsd.train.augment`). ``check``
    refuses missing/undecodable images up front, in the pass that decodes them into the
    cache.
    """
    table = read_manifest(manifest)
    pairs = pair_table(table, split, manifest)
    images = split_images(pairs, image_size=image_size, resize=resize, cache=cache, cache_limit=cache_limit,
                          cache_key=split, check=check, source=manifest)
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
        images=images,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
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
    cache: str | os.PathLike[str] | None = "auto",
    cache_limit: int | None = None,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    cache_key: str = "",
    start: int = 0,
    images: Rows | None = None,
) -> tf.data.Dataset:
    """The pipeline behind :func:`make_dataset`, from a :class:`PairTable`.

    The split's decoded images [N, S, S, 3] uint8 are ``images`` (:func:`split_images`,
    made here from ``cache`` when not given); each pass over the pairs shuffles the pair indices (a fresh, seeded permutation per
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
    if images is None:
        images = split_images(pairs, image_size=image_size, resize=resize, cache=cache, cache_limit=cache_limit,
                              cache_key=cache_key, check=False)
    rows, take = _rows(images, image_size, resize, pairs.paths)
    return _pair_batches(
        pairs, rows, take=take, batch_size=batch_size, augment=augment, augment_flips=augment_flips, shuffle=shuffle,
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
        pairs, tf.data.Dataset.from_tensors(features), take=_take_tensor, batch_size=batch_size, augment=False, shuffle=shuffle,
        resample_negatives=resample_negatives, resample_positives=resample_positives, seed=seed, repeat=repeat,
        drop_remainder=drop_remainder, start=start,
    )


# ---------------------------------------------------------------------- memory or disk


def prepare(
    splits: dict[str, list[str]],
    *,
    image_size: int,
    resize: str,
    cache: str | os.PathLike[str] = "auto",
    cache_limit: int | None = None,
    folder: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    rows: dict[str, int] | None = None,
    check: bool = True,
    check_only: tuple[str, ...] = (),
) -> dict[str, Rows]:
    """Each split's decoded images (``splits``: key -> distinct paths), in one decode pass
    that also checks them (:func:`decode_checked`); each :class:`Rows` counts the images it
    decoded. Where they live is :mod:`dsxsd.train.store`'s; deciding it and decoding into
    it is this module's, so the store imports nothing from the pipeline.

    ``cache``: ``"memory"`` holds them in memory; ``"disk"`` in a store in ``folder``;
    another path is that folder; ``"auto"`` in memory while the splits, in order, fit
    ``cache_limit`` bytes together (default: :func:`dsxsd._preflight.default_cache_limit`),
    each split past it in a store; ``"none"`` keeps nothing (each pass decodes again; the
    images are decoded here only to check them). What the limit leaves beside the splits
    in memory bounds the stores' pages a process keeps mapped (``Rows.mapped_budget``). A
    finished store of the same images and settings is reused: its images are neither
    decoded nor checked again. The splits named in ``check_only`` (a manifest's test
    split) are decoded to check them, not kept.
    """
    mode = str(cache)
    budget = default_cache_limit() if cache_limit is None else int(cache_limit)
    shape = (image_size, image_size, 3)
    result: dict[str, Rows] = {}
    groups: list[tuple[list[str], object]] = []
    group_keys: list[str] = []
    writers: dict[str, store.StoreWriter] = {}
    with contextlib.ExitStack() as stack:
        for key, paths in splits.items():
            nbytes = len(paths) * int(np.prod(shape))
            kind = mode if mode in ("memory", "disk", "none") else "disk"
            if mode == "auto":
                kind = "memory" if nbytes <= budget else "disk"
            if key in check_only:
                continue
            if kind == "memory":
                budget -= nbytes
                result[key] = store.in_memory(len(paths), shape)
                into = result[key].array
            elif kind == "none":
                result[key] = Rows("none")
                into = None
                if not check:
                    continue
            else:
                where = Path(cache) if mode not in CACHE_MODES else folder
                if where is None:
                    raise ValueError(f"cache={mode!r} needs a folder for the image store")
                Path(where).mkdir(parents=True, exist_ok=True)
                data_file, meta_file = store.store_files(Path(where), key, paths, image_size, resize)
                found = store.open_store(data_file, meta_file, len(paths), shape)
                if found is not None:
                    result[key] = found
                    continue
                into = writers[key] = stack.enter_context(store.StoreWriter(data_file, meta_file, len(paths), shape))
            groups.append((paths, into))
            group_keys.append(key)
        if check:
            kept = {p for paths, _ in groups for p in paths}
            for key in check_only:
                result[key] = Rows("none")
                groups.append(([p for p in splits.get(key, []) if p not in kept], None))
                group_keys.append(key)
        counts = decode_checked(groups, source, rows, image_size=image_size, resize=resize, check=check)
        for key, writer in writers.items():
            writer.finish()
            result[key] = writer.rows()
    for key, count in zip(group_keys, counts):
        result[key].decoded = count
    # What the limit leaves beside the splits in memory is the stores' mapped pages', shared.
    stores = [rows for rows in result.values() if rows.kind == "disk"]
    for rows in stores:
        rows.mapped_budget = max(budget, 0) // len(stores)
    return result


def split_images(
    pairs: PairTable, *, image_size: int, resize: str = "stretch", cache: str | os.PathLike[str] | None = "auto",
    cache_key: str = "", cache_limit: int | None = None, check: bool = True,
    source: str | os.PathLike[str] | None = None,
) -> Rows:
    """The split's distinct images, uint8 [N, S, S, 3] in the order of ``pairs.paths``,
    decoded once, in the pass that checks them (:func:`decode_checked`); see
    :func:`prepare` for where ``cache`` keeps them. ``"auto"`` and ``"disk"``
    keep a store in a temporary folder of this process's own, removed when it exits."""
    folder = _temporary_store_folder() if str(cache) in ("auto", "disk") else None
    return prepare(
        {cache_key: pairs.paths}, image_size=image_size, resize=resize, cache="none" if cache is None else cache,
        cache_limit=cache_limit, folder=folder, source=source, rows=pairs.rows, check=check,
    )[cache_key]


@functools.lru_cache(maxsize=None)
def _temporary_store_folder() -> str:
    # Not a fixed shared folder: another user's would not be writable, and nothing would
    # ever remove stores of many gigabytes.
    folder = tempfile.mkdtemp(prefix="dsxsd-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder

def _rows(images: Rows, image_size: int, resize: str, paths: list[str]):
    """What :func:`_pair_batches` gathers from: a dataset of one element holding a row per
    image, and the function that takes a batch's left and right rows from it.

    The plain version is a tensor of the rows and ``tf.gather``: the images decoded every
    pass (``cache="none"``), or held in memory (shared with the numpy array they were
    decoded into, not copied). A disk store is larger than memory, so it cannot be one
    tensor: a batch's rows are read by one numpy call (the Python lock taken once per
    batch and released while numpy copies), in batch order (:meth:`Rows.read`) where the
    page cache can hold the store, else in ascending order (:meth:`Rows.read_sorted`, the
    fewest reads from disk) and put back in batch order by ``tf.gather``; the choice is
    :func:`dsxsd.train.store.reads_in_batch_order`'s. The same rows either way: the same
    batches.
    """
    if images.kind == "none":
        decoded = (
            tf.data.Dataset.from_tensor_slices(paths)
            .map(lambda p: decode_and_resize(p, image_size, resize), num_parallel_calls=AUTOTUNE)
            .batch(max(len(paths), 1))
        )
        return decoded, _take_tensor
    if images.kind == "memory":
        return tf.data.Dataset.from_tensors(_as_tensor(images.array)), _take_tensor
    shape = images.array.shape[1:]

    def take_in_batch_order(_rows, left, right):
        rows = tf.numpy_function(images.read, [left, right], [tf.uint8, tf.uint8], stateful=False)
        for side in rows:
            side.set_shape([None, *shape])
        return tuple(rows)

    def take_sorted(_rows, left, right):
        both = tf.concat([left, right], 0)
        order = tf.argsort(both, stable=True)
        rows = tf.numpy_function(images.read_sorted, [tf.gather(both, order)], tf.uint8, stateful=False)
        rows.set_shape([None, *shape])
        # Back in batch order by tf.gather, which copies without the Python lock.
        where = tf.math.invert_permutation(order)
        return tf.gather(rows, where[: tf.shape(left)[0]]), tf.gather(rows, where[tf.shape(left)[0] :])

    take = take_in_batch_order if store.reads_in_batch_order(images) else take_sorted
    return tf.data.Dataset.from_tensors(tf.zeros([0], tf.uint8)), take


def _as_tensor(array: np.ndarray) -> tf.Tensor:
    """``array`` as a CPU tensor, sharing its memory where it is aligned as TensorFlow needs
    (:func:`dsxsd.train.store.in_memory`), else a copy."""
    if array.size and array.flags.c_contiguous and array.ctypes.data % store.ALIGN == 0:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    with tf.device("/cpu:0"):
        return tf.constant(array)


def _take_tensor(rows: tf.Tensor, left: tf.Tensor, right: tf.Tensor):
    return tf.gather(rows, left), tf.gather(rows, right)


def _pair_batches(
    pairs: PairTable, images: tf.data.Dataset, *, take, batch_size: int, augment: bool | str, shuffle: bool,
    resample_negatives: bool, resample_positives: bool, seed: int, repeat: bool, drop_remainder: bool, start: int,
    augment_flips: bool | None = None,
) -> tf.data.Dataset:
    """The batches of :func:`pairs_dataset` and :func:`features_dataset`, gathered from
    ``images``: one element holding a row per distinct image (an image, or its features),
    by ``take(element, left_indices, right_indices)`` (see :func:`_rows`)."""
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
        a, b = take(rows, tf.gather(left, idx), tf.gather(rights, idx))
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




__all__ = [
    "PairTable",
    "augment_batch",
    "check_images",
    "decode_and_resize",
    "decode_checked",
    "load_images",
    "make_dataset",
    "features_dataset",
    "pair_table",
    "pairs_dataset",
    "prepare",
    "read_manifest",
    "require_files",
    "split_images",
]
