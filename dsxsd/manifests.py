"""Reading what make-pairs and training consume: crops manifests, class-folder trees and
pairs manifests.

Both manifests are CSV files whose rows are described by JSON Schemas
(``schemas/crops.schema.json``, ``schemas/pairs.schema.json``). Rows are checked here with
vectorised pandas operations rather than row by row with jsonschema, because a manifest of
a million rows must load in seconds; the schemas stay the documentation and the tests hold
the two in step. Every error names the manifest and the row as a spreadsheet shows it (the
header is row 1, so the first data row is row 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ManifestError, MissingImageError, require_path

CROPS_COLUMNS = ("path", "class", "source", "object_index", "xmin", "ymin", "xmax", "ymax")
PAIRS_COLUMNS = ("left", "right", "label", "left_class", "right_class", "split")
SPLITS = ("train", "val", "test")

#: Files a class folder may hold that count as images; compared case-insensitively.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# Data rows start at spreadsheet row 2: the header is row 1.
_FIRST_ROW = 2


class MissingManifestFileError(ManifestError, MissingImageError):
    """A file a manifest row names does not exist.

    Both a manifest problem (the row is wrong) and a missing image, so callers catching
    either :class:`ManifestError` or :class:`MissingImageError` see it.
    """


def read_csv_manifest(path: str | os.PathLike[str], required: tuple[str, ...]) -> pd.DataFrame:
    """Read a UTF-8 CSV manifest as strings, checking that the ``required`` columns exist.

    Every cell stays a string (a class called ``NA`` or ``null`` is a class, not a missing
    value), header names are stripped of surrounding white space, and wholly blank rows are
    dropped. The index holds each row's spreadsheet row number, so later checks can name it.
    """
    path = require_path(path)
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,  # keeps the row count in step with the file
            encoding="utf-8-sig",  # a byte-order mark from a spreadsheet is not a column name
        )
    except IsADirectoryError:
        raise ManifestError("is a folder, not a CSV manifest", file=path) from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8 text (byte {exc.start})", file=path) from None
    except pd.errors.EmptyDataError:
        raise ManifestError("empty file: no header row", file=path) from None
    except pd.errors.ParserError as exc:
        raise ManifestError(f"malformed CSV: {_parser_reason(exc)}", file=path) from None

    frame.columns = [str(name).strip() for name in frame.columns]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        found = ", ".join(frame.columns) or "none"
        raise ManifestError(
            f"missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (found: {found})",
            file=path,
            row=1,
        )
    frame.index = pd.RangeIndex(_FIRST_ROW, _FIRST_ROW + len(frame), name="row")
    blank = (frame == "").all(axis=1)
    if blank.any():
        frame = frame.loc[~blank]
    return frame


def _parser_reason(exc: Exception) -> str:
    # pandas says "Error tokenizing data. C error: Expected 3 fields in line 5, saw 4".
    text = str(exc).strip()
    return text.split("C error: ", 1)[-1]


def first_bad_row(frame: pd.DataFrame, bad: pd.Series | np.ndarray) -> int | None:
    """The spreadsheet row number of the first ``True`` in ``bad``, or None."""
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return None
    return int(frame.index[int(bad.argmax())])


def check_not_empty(frame: pd.DataFrame, column: str, path: str | os.PathLike[str]) -> None:
    # As object array: pandas' own string comparison is slower per cell.
    row = first_bad_row(frame, frame[column].to_numpy(dtype=object) == "")
    if row is not None:
        raise ManifestError("empty value", file=path, row=row, field=column)


def strip_values(values: pd.Series) -> pd.Series:
    """``values.str.strip()``, done once per distinct value: a manifest of a million rows
    holds a few thousand class names."""
    codes, uniques = pd.factorize(values)
    stripped = np.array([str(u).strip() for u in uniques] + [""], dtype=object)
    return pd.Series(stripped[codes], index=values.index, name=values.name)


def read_crops(path: str | os.PathLike[str], need_source: bool = False) -> pd.DataFrame:
    """Read a crops manifest (``dsxsd crop``'s ``crops.csv``), using only what pairing needs.

    Returns ``path`` and ``class`` columns (plus ``source`` when ``need_source``), indexed by
    spreadsheet row. Only ``path`` and ``class`` must exist, so a hand-made manifest of two
    columns works; images are neither opened nor stat-ed. Class names are stripped of
    surrounding white space (as everywhere in dsxsd). A path listed twice is refused: the
    same image under two rows would become a self-pair or a leak between splits.
    """
    required = ("path", "class", "source") if need_source else ("path", "class")
    frame = read_csv_manifest(path, required)
    frame = frame.loc[:, list(required)].copy()
    frame["class"] = strip_values(frame["class"])
    for column in required:
        check_not_empty(frame, column, path)
    repeated = frame["path"].duplicated()
    if repeated.any():
        row = first_bad_row(frame, repeated)
        value = frame.at[row, "path"]
        first = int(frame.index[(frame["path"] == value).to_numpy()][0])
        raise ManifestError(
            f"path {value!r} is listed again (first at row {first})", file=path, row=row,
            field="path",
        )
    return frame


def scan_class_folders(root: str | os.PathLike[str]) -> pd.DataFrame:
    """List ``root/<class>/<image>`` as ``path`` (relative to root, ``/``-separated) and
    ``class`` (the folder name): the Omniglot / ImageNet layout.

    Folders and files are sorted by name (code-point order), so the result never depends on
    the order the file system lists them in. Hidden entries, files directly in ``root`` and
    files whose extension is not an image extension are ignored.
    """
    root = require_path(root)
    if not root.is_dir():
        raise ManifestError("not a folder of class folders", file=root)
    paths: list[str] = []
    classes: list[str] = []
    with os.scandir(root) as entries:
        folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for folder in folders:
        name = folder.strip()
        if not name:
            continue
        with os.scandir(root / folder) as entries:
            files = sorted(
                e.name
                for e in entries
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                and e.is_file()
            )
        paths.extend(f"{folder}/{file}" for file in files)
        classes.extend([name] * len(files))
    if not paths:
        raise ManifestError(
            "no images in class folders (expected root/<class>/<image>, extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})",
            file=root,
        )
    return pd.DataFrame({"path": paths, "class": classes})


def read_pairs(path: str | os.PathLike[str], check_files: bool = False) -> pd.DataFrame:
    """Read and validate a pairs manifest (``dsxsd make-pairs``'s ``pairs.csv``).

    Checks the columns, that ``label`` is 0 or 1, that ``split`` is train, val or test, that
    no path or class is empty, and that ``label`` is 1 exactly when ``left_class`` equals
    ``right_class``. With ``check_files``, every image must exist (paths are relative to the
    manifest's folder). The first problem found is raised as a :class:`ManifestError` naming
    the file and row. Returns the rows with ``label`` as integers and a fresh 0-based index;
    extra columns are kept.
    """
    path = Path(path)
    frame = read_csv_manifest(path, PAIRS_COLUMNS)
    for column in ("left_class", "right_class"):
        frame[column] = strip_values(frame[column])
    for column in ("left", "right", "left_class", "right_class"):
        check_not_empty(frame, column, path)

    label_text = strip_values(frame["label"])
    row = first_bad_row(frame, ~label_text.isin(["0", "1"]))
    if row is not None:
        raise ManifestError(
            f"label must be 1 (same class) or 0 (different classes), not "
            f"{frame.at[row, 'label']!r}",
            file=path, row=row, field="label",
        )
    labels = (label_text == "1").to_numpy()

    split = strip_values(frame["split"])
    row = first_bad_row(frame, ~split.isin(SPLITS))
    if row is not None:
        raise ManifestError(
            f"split must be one of {', '.join(SPLITS)}, not {frame.at[row, 'split']!r}",
            file=path, row=row, field="split",
        )

    same = (frame["left_class"] == frame["right_class"]).to_numpy()
    row = first_bad_row(frame, same != labels)
    if row is not None:
        left, right = frame.at[row, "left_class"], frame.at[row, "right_class"]
        expected = 1 if left == right else 0
        raise ManifestError(
            f"label {int(labels[frame.index.get_loc(row)])} contradicts classes "
            f"{left!r} and {right!r} (label is 1 exactly when they match: expected {expected})",
            file=path, row=row, field="label",
        )

    if check_files:
        _check_files(frame, path)

    frame = frame.assign(label=labels.astype(np.int64), split=split)
    return frame.reset_index(drop=True)


def _check_files(frame: pd.DataFrame, manifest: Path) -> None:
    # Each image is looked up once however many pairs it is in; the rows are then scanned
    # in file order so that the error names the first row that refers to a missing file.
    base = manifest.parent
    left = frame["left"].to_numpy(dtype=object)
    right = frame["right"].to_numpy(dtype=object)
    names, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
    exists = np.fromiter(
        (os.path.isfile(base / name) for name in names), dtype=bool, count=len(names)
    )
    if exists.all():
        return
    missing_left = ~exists[inverse[: len(left)]]
    missing_right = ~exists[inverse[len(left) :]]
    row = first_bad_row(frame, missing_left | missing_right)
    column = "left" if missing_left[frame.index.get_loc(row)] else "right"
    raise MissingManifestFileError(
        f"image {frame.at[row, column]!r} not found (looked in {base})",
        file=manifest, row=row, field=column,
    )


__all__ = [
    "CROPS_COLUMNS",
    "PAIRS_COLUMNS",
    "SPLITS",
    "IMAGE_EXTENSIONS",
    "MissingManifestFileError",
    "read_csv_manifest",
    "read_crops",
    "strip_values",
    "scan_class_folders",
    "read_pairs",
]
