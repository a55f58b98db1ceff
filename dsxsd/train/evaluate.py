"""Honest evaluation of a trained model: metrics on held-out pairs, a threshold calibrated
on the validation split (never on the pairs it is reported on), and N-way one-shot
accuracy, the protocol of Koch et al. on Omniglot.

Results go into ``metrics.json`` beside the model (or in ``out``), one entry per
evaluated split of each pairs manifest and per N on each image source, so evaluating the
test split, then another manifest, then running a 20-way test add up rather than erase
each other. The file describes one model: its sha256 is recorded, and results of an
earlier model are never mixed with the current one's. Replacing results that are already
there (the same split of the same manifest, the same N on the same source, a retrained
model) needs ``overwrite=True`` (``--overwrite``), like every dsxsd output.

The top-level ``threshold`` is what ``dsxsd predict`` uses by default: the one calibrated
by the latest pairs evaluation (``threshold_calibration`` says on which manifest).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io, metrics
from .._preflight import CALIBRATION_SPLIT, check_one_shot, read_image_list, read_pairs_frame, require_split
from ..errors import ManifestError, OutputExistsError
from .infer import Progress, Scorer, _nothing, _relative, load_scorer, score_pairs

METRICS_FORMAT = "dsxsd.metrics"
METRICS_VERSION = 2


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _round(value: float) -> float:
    # Kept at full precision: a rounded threshold could flip pairs scored next to it.
    return float(value)


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, float) else v for k, v in d.items()}


# --------------------------------------------------------------------------- metrics.json


# The fields that tell one result from another: a split of one pairs manifest, and N on
# one image source (with its split, for the images of a pairs manifest).
_IDENTITY = {"pairs": ("split", "pairs"), "n_way": ("n_way", "source", "split")}


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

    def __init__(self, folder: Path, scorer: Scorer, overwrite: bool) -> None:
        self.path = folder / "metrics.json"
        self.overwrite = overwrite
        self.model_sha256 = _sha256(scorer.path)
        self.data: dict[str, Any] = {
            "format": METRICS_FORMAT,
            "version": METRICS_VERSION,
            "model": _relative(scorer.path, folder),
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
        _io.write_text(self.path, text, overwrite=True)  # checked in __init__/check()


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class PairEvaluation:
    """What ``dsxsd evaluate run pairs.csv`` reports (``as_dict`` is its metrics.json
    section)."""

    split: str
    same: int
    different: int
    at_half: metrics.BinaryMetrics
    threshold: float
    threshold_split: str
    threshold_accuracy: float  # on the calibration split
    at_threshold: metrics.BinaryMetrics
    roc_auc: float
    eer: float
    eer_threshold: float
    metrics_file: Path
    roc_png: Path | None
    scores_png: Path | None
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "count": {"same": self.same, "different": self.different},
            "at_0.5": _rounded(self.at_half.as_dict()),
            "threshold": _round(self.threshold),
            "threshold_split": self.threshold_split,
            "at_threshold": _rounded(self.at_threshold.as_dict()),
            "roc_auc": _round(self.roc_auc),
            "eer": _round(self.eer),
            "eer_threshold": _round(self.eer_threshold),
        }


def _plot_names(record: MetricsFile, entry: dict[str, Any]) -> list[str]:
    """The names of the ROC and scores plots of a pairs result.

    The test split's plots get the plain names the README points at, another split's
    carry its name. Results on a second manifest with the same split get the manifest's
    name added, so that each result keeps its own pictures; a result replaced keeps its.
    """
    old = record.find("pairs", entry)
    if old is not None and old.get("plots"):
        return list(old["plots"])
    taken = {name for e in record.data["pairs"] for name in e.get("plots", [])}
    split, stem = entry["split"], Path(entry["pairs"]).stem
    suffixes = itertools.chain(
        ["" if split == "test" else f"-{split}", f"-{split}-{stem}"],
        (f"-{split}-{stem}-{n}" for n in itertools.count(2)),
    )
    candidates = ([f"roc{suffix}.png", f"scores{suffix}.png"] for suffix in suffixes)
    return next(names for names in candidates if taken.isdisjoint(names))


def evaluate(
    model: str | os.PathLike[str] | Scorer,
    pairs: str | os.PathLike[str],
    split: str = "test",
    *,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    plots: bool = True,
    overwrite: bool = False,
    progress: Progress = _nothing,
) -> PairEvaluation:
    """Score the pairs of ``split`` and write metrics (and ``roc.png``, ``scores.png``).

    The decision threshold is the one that maximises accuracy on the ``val`` split of the
    same manifest; accuracy, precision, recall and F1 at it are then measured on
    ``split``. Without a ``val`` split the threshold is calibrated on ``split`` itself,
    and the result says it is optimistic. ``model`` is a run folder or a model file;
    results go beside it unless ``out`` is given.
    """
    pairs = Path(pairs)
    frame = read_pairs_frame(pairs)  # a bad manifest fails before the model loads
    require_split(frame, split, pairs)
    scorer = model if isinstance(model, Scorer) else load_scorer(model)
    folder = Path(out) if out is not None else scorer.path.parent
    record = MetricsFile(folder, scorer, overwrite)
    identity = {"split": split, "pairs": _relative(pairs, folder)}
    record.check("pairs", identity)
    plot_paths = [folder / name for name in _plot_names(record, identity)] if plots else []
    for path in plot_paths:
        _io.check_output(path, overwrite)

    calibration_split = CALIBRATION_SPLIT if CALIBRATION_SPLIT in set(frame["split"]) else split
    wanted = frame[frame["split"].isin({split, calibration_split})].reset_index(drop=True)
    scores, _ = score_pairs(scorer, wanted["left"], wanted["right"], batch_size, progress)
    labels = wanted["label"].to_numpy()
    mask = (wanted["split"] == split).to_numpy()
    y, s = labels[mask], scores[mask]
    try:
        auc = metrics.roc_auc(y, s)
        eer, eer_threshold = metrics.equal_error_rate(y, s)
    except ValueError as exc:
        raise ManifestError(f"split {split!r}: {exc}", file=pairs) from None
    calibration = (wanted["split"] == calibration_split).to_numpy()
    threshold, threshold_accuracy = metrics.best_threshold(labels[calibration], scores[calibration])
    warning = None
    if calibration_split != CALIBRATION_SPLIT:
        warning = (
            f"no {CALIBRATION_SPLIT!r} split: the threshold was calibrated on {split!r} "
            "itself, so the accuracy at it is optimistic"
        )
    result = PairEvaluation(
        split=split,
        same=int(y.sum()),
        different=int(y.size - y.sum()),
        at_half=metrics.binary_metrics(y, s, 0.5),
        threshold=threshold,
        threshold_split=calibration_split,
        threshold_accuracy=threshold_accuracy,
        at_threshold=metrics.binary_metrics(y, s, threshold),
        roc_auc=auc,
        eer=eer,
        eer_threshold=eer_threshold,
        metrics_file=record.path,
        roc_png=plot_paths[0] if plots else None,
        scores_png=plot_paths[1] if plots else None,
        warning=warning,
    )
    if plots:
        _save_plots(plot_paths, y, s, result)
    section = result.as_dict()
    section.update(
        pairs=identity["pairs"],
        pairs_sha256=_sha256(pairs),
        plots=[p.name for p in plot_paths],
    )
    if warning:
        section["warning"] = warning
    record.put("pairs", section)
    record.data["threshold"] = _round(threshold)
    record.data["threshold_calibration"] = {
        "pairs": identity["pairs"],
        "split": calibration_split,
        "count": int(calibration.sum()),
        "accuracy": _round(threshold_accuracy),
    }
    record.save()
    return result


def _save_plots(paths: list[Path], y: np.ndarray, s: np.ndarray, result: PairEvaluation) -> None:
    from .. import plots  # matplotlib, only when plots are asked for

    roc_png, scores_png = paths  # both checked before any scoring
    title = f"{result.split} split"
    plots.save_png(plots.roc_figure(y, s, title=f"ROC, {title} ({len(y)} pairs)"), roc_png)
    plots.save_png(plots.scores_figure(y, s, result.threshold, title=f"Scores, {title}"), scores_png)


# --------------------------------------------------------------------------- N-way one-shot


@dataclass(frozen=True)
class OneShotEvaluation:
    n_way: int
    trials: int
    correct: int
    accuracy: float
    chance: float
    images: int
    classes: int
    seed: int | None
    metrics_file: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_way": self.n_way,
            "trials": self.trials,
            "correct": self.correct,
            "accuracy": _round(self.accuracy),
            "chance": _round(self.chance),
            "images": self.images,
            "classes": self.classes,
            "seed": self.seed,
        }


def evaluate_n_way(
    model: str | os.PathLike[str] | Scorer,
    source: str | os.PathLike[str],
    n_way: int = 20,
    trials: int = 400,
    *,
    seed: int | None = 0,
    split: str | None = None,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: Progress = _nothing,
) -> OneShotEvaluation:
    """N-way one-shot accuracy over the images of ``source`` (a crops manifest, a
    class-folder tree, or the images of ``split`` of a pairs manifest).

    Each image is embedded once; every trial's N (query, support) pairs are then scored
    by the model's head in one vectorised pass. See :func:`dsxsd.metrics.one_shot_trials`
    for the protocol.
    """
    # Bad settings for this data fail before the model loads and any image is embedded.
    images = read_image_list(source, split)
    check_one_shot(images, n_way, seed)
    scorer = model if isinstance(model, Scorer) else load_scorer(model)
    folder = Path(out) if out is not None else scorer.path.parent
    record = MetricsFile(folder, scorer, overwrite)
    split = split if images.kind == "pairs" else None  # only a pairs manifest has splits
    identity = {"n_way": n_way, "source": _relative(source, folder), "split": split}
    record.check("n_way", identity)
    features = scorer.embed(images.paths, batch_size, progress)

    def similarity(queries: np.ndarray, supports: np.ndarray) -> np.ndarray:
        rows = max(1, 8192 // n_way)  # trials per head call
        out_scores = []
        for start in range(0, len(queries), rows):
            q, sup = queries[start : start + rows], supports[start : start + rows]
            left = np.repeat(features[q], n_way, axis=0)
            right = features[sup.reshape(-1)]
            out_scores.append(scorer.score(left, right).reshape(len(q), n_way))
        return np.concatenate(out_scores)

    result = metrics.n_way_one_shot(images.classes, similarity, n_way, trials, seed)
    evaluation = OneShotEvaluation(
        n_way=n_way,
        trials=trials,
        correct=result.correct,
        accuracy=result.accuracy,
        chance=result.chance,
        images=len(images.paths),
        classes=len(set(images.classes)),
        seed=seed,
        metrics_file=record.path,
    )
    section = evaluation.as_dict()
    # A class-folder tree has no one file to fingerprint.
    source_sha256 = _sha256(Path(source)) if Path(source).is_file() else None
    section.update(identity, source_sha256=source_sha256)
    record.put("n_way", section)
    record.save()
    return evaluation


__all__ = [
    "MetricsFile",
    "OneShotEvaluation",
    "PairEvaluation",
    "evaluate",
    "evaluate_n_way",
]
