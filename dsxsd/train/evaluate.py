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

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io, metrics
from .._io import sha256_file
from .._metrics_file import MetricsFile, n_way_identity, pairs_identity
from .._preflight import CALIBRATION_SPLIT, check_one_shot, read_image_list, read_pairs_frame, require_split
from ..errors import ManifestError
from ..inference import Progress, Scorer, no_progress, score_pairs

def _round(value: float) -> float:
    # Kept at full precision: a rounded threshold could flip pairs scored next to it.
    return float(value)


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, float) else v for k, v in d.items()}


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
    progress: Progress = no_progress,
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
    scorer = model if isinstance(model, Scorer) else Scorer.load(model)
    folder = Path(out) if out is not None else scorer.path.parent
    record = MetricsFile(folder, scorer.path, overwrite)
    identity = pairs_identity(pairs, split, folder)
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
        pairs_sha256=sha256_file(pairs),
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
    progress: Progress = no_progress,
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
    scorer = model if isinstance(model, Scorer) else Scorer.load(model)
    folder = Path(out) if out is not None else scorer.path.parent
    record = MetricsFile(folder, scorer.path, overwrite)
    split = split if images.kind == "pairs" else None  # only a pairs manifest has splits
    identity = n_way_identity(n_way, source, split, folder)
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
    source_sha256 = sha256_file(Path(source)) if Path(source).is_file() else None
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
