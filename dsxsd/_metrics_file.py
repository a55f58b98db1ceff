"""``metrics.json``, the record of a model's evaluations that ``dsxsd evaluate`` keeps
beside it: read, checked and written here, with no TensorFlow, so that ``dsxsd evaluate``
refuses to replace results (without ``--overwrite``) before the seconds TensorFlow takes
to import (dsxsd._preflight), and writes them after (dsxsd.train.evaluate).

The file describes one model: its sha256 is recorded, and results of an earlier model are
never mixed with the current one's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._io import relative_path, sha256_file, write_text
from .errors import OutputExistsError

METRICS_FORMAT = "dsxsd.metrics"
METRICS_VERSION = 2

# The fields that tell one result from another: a split of one pairs manifest, and N on
# one image source (with its split, for the images of a pairs manifest).
_IDENTITY = {"pairs": ("split", "pairs"), "n_way": ("n_way", "source", "split")}


def pairs_identity(pairs: str | os.PathLike[str], split: str, folder: Path) -> dict[str, Any]:
    """What tells the result on ``split`` of the manifest ``pairs`` from others."""
    return {"split": split, "pairs": relative_path(pairs, folder)}


def n_way_identity(
    n_way: int, source: str | os.PathLike[str], split: str | None, folder: Path
) -> dict[str, Any]:
    """What tells N-way results on ``source`` from others (``split``: of the images of a
    pairs manifest, else ``None``)."""
    return {"n_way": n_way, "source": relative_path(source, folder), "split": split}


def _describe(section: str, entry: dict[str, Any]) -> str:
    if section == "pairs":
        return f"split {entry['split']!r} of {entry['pairs']}"
    of_split = f" (split {entry['split']!r})" if entry.get("split") else ""
    return f"{entry['n_way']}-way one-shot on {entry['source']}{of_split}"


def _upgrade(data: dict[str, Any]) -> dict[str, Any] | None:
    """``data`` in the current layout; ``None`` where it is not a layout dsxsd wrote.

    Version 1 kept results in objects keyed by split and by N alone, so a second pairs
    manifest or crops manifest replaced the first one's results. Each of its entries
    already names its source, so they become the lists of version 2 as they are.
    """
    if data.get("version", 1) == 1:
        data = dict(data, version=METRICS_VERSION)
        for section in _IDENTITY:
            old = data.get(section, {})
            data[section] = list(old.values()) if isinstance(old, dict) else old
        for entry in data["n_way"]:
            if isinstance(entry, dict):
                entry.setdefault("source_sha256", None)
    if data.get("version") != METRICS_VERSION:
        return None
    for section in _IDENTITY:
        entries = data.get(section, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return None
    return data


class MetricsFile:
    """``metrics.json``: read what is there, check an entry may be (re)written, write
    atomically.

    ``pairs`` and ``n_way`` are lists of entries; an entry is replaced only by one with
    the same identity (``_IDENTITY``), so results on different data add up.
    """

    def __init__(self, folder: Path, model: Path, overwrite: bool) -> None:
        self.path = folder / "metrics.json"
        self.overwrite = overwrite
        self.model_sha256 = sha256_file(model)
        self.data: dict[str, Any] = {
            "format": METRICS_FORMAT,
            "version": METRICS_VERSION,
            "model": relative_path(model, folder),
            "model_sha256": self.model_sha256,
            "threshold": None,
            "threshold_calibration": None,
            "pairs": [],
            "n_way": [],
        }
        if self.path.exists():
            old = self._read()
            if old.get("model_sha256") == self.model_sha256:
                self.data.update({k: v for k, v in old.items() if k in self.data})
            elif not overwrite:
                raise OutputExistsError(
                    "holds results of another version of the model; pass --overwrite to "
                    "start it afresh",
                    file=self.path,
                )

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError):
            data = None
        ours = isinstance(data, dict) and data.get("format") == METRICS_FORMAT
        upgraded = _upgrade(data) if ours else None
        if upgraded is not None:
            return upgraded
        version = data.get("version") if ours else None
        if isinstance(version, int) and version > METRICS_VERSION:
            problem = f"was written by a newer dsxsd (metrics version {version})"
        else:
            problem = "exists and is not a dsxsd metrics file"
        if self.overwrite:
            return {}
        raise OutputExistsError(f"{problem}; pass --overwrite to replace it", file=self.path)

    def _position(self, section: str, entry: dict[str, Any]) -> int | None:
        key = [entry.get(field) for field in _IDENTITY[section]]
        for i, old in enumerate(self.data[section]):
            if [old.get(field) for field in _IDENTITY[section]] == key:
                return i
        return None

    def find(self, section: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The entry of ``section`` with the identity of ``entry``, if there is one."""
        i = self._position(section, entry)
        return None if i is None else self.data[section][i]

    def check(self, section: str, entry: dict[str, Any]) -> None:
        """Refuse, without ``overwrite``, to replace results with the identity of ``entry``."""
        if not self.overwrite and self.find(section, entry) is not None:
            raise OutputExistsError(
                f"already holds results for {_describe(section, entry)}; pass --overwrite "
                "to replace them",
                file=self.path,
            )

    def put(self, section: str, entry: dict[str, Any]) -> None:
        """Add ``entry``, in place of the one with the same identity if there is one."""
        i = self._position(section, entry)
        if i is None:
            self.data[section].append(entry)
        else:
            self.data[section][i] = entry

    def save(self) -> None:
        text = json.dumps(self.data, indent=2, ensure_ascii=False) + "\n"
        write_text(self.path, text, overwrite=True)  # checked in __init__/check()


__all__ = ["METRICS_FORMAT", "METRICS_VERSION", "MetricsFile", "n_way_identity", "pairs_identity"]
