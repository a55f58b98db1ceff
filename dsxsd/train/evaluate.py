"""Honest evaluation of a trained model: metrics on held-out pairs, a threshold calibrated
on the validation split (never on the pairs it is reported on), and N-way one-shot
accuracy, the protocol of Koch et al. on Omniglot.

Results go into ``metrics.json`` beside the model (or in ``out``), one section per
evaluated split and per N-way setting, so evaluating the test split and then running a
20-way test add up rather than erase each other. The file describes one model: its
sha256 is recorded, and results of an earlier model are never mixed with the current
one's. Replacing results that are already there (the same split again, the same N, a
retrained model) needs ``overwrite=True`` (``--overwrite``), like every dsxsd output.

The top-level ``threshold`` is what ``dsxsd predict`` uses by default.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io, metrics
from ..errors import ManifestError, OutputExistsError
from .infer import Progress, Scorer, _nothing, _relative, load_scorer, read_image_list, read_pairs_frame, score_pairs

METRICS_FORMAT = "dsxsd.metrics"
METRICS_VERSION = 1
CALIBRATION_SPLIT = "val"


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


class MetricsFile:
    """``metrics.json``: read what is there, check a section may be (re)written, write
    atomically."""

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
            "pairs": {},
            "n_way": {},
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
        if not isinstance(data, dict) or data.get("format") != METRICS_FORMAT:
            if self.overwrite:
                return {}
            raise OutputExistsError(
                "exists and is not a dsxsd metrics file; pass --overwrite to replace it",
                file=self.path,
            )
        return data

    def check(self, section: str, key: str) -> None:
        if key in self.data[section] and not self.overwrite:
            what = f"split {key!r}" if section == "pairs" else f"{key}-way one-shot"
            raise OutputExistsError(
                f"already holds results for {what}; pass --overwrite to replace them",
                file=self.path,
            )

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


def _plot_names(split: str) -> tuple[str, str]:
    # The test split's plots get the plain names the README points at.
    if split == "test":
        return "roc.png", "scores.png"
    return f"roc-{split}.png", f"scores-{split}.png"


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
    scorer = model if isinstance(model, Scorer) else load_scorer(model)
    folder = Path(out) if out is not None else scorer.path.parent
    record = MetricsFile(folder, scorer, overwrite)
    record.check("pairs", split)
    plot_paths = [folder / name for name in _plot_names(split)] if plots else []
    for path in plot_paths:
        _io.check_output(path, overwrite)

    pairs = Path(pairs)
    frame = read_pairs_frame(pairs)
    if split not in set(frame["split"]):
        present = ", ".join(sorted(set(frame["split"]))) or "none"
        raise ManifestError(f"no pairs in split {split!r} (splits present: {present})", file=pairs)
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
        pairs=_relative(pairs, folder),
        pairs_sha256=_sha256(pairs),
        plots=[p.name for p in plot_paths],
    )
    if warning:
        section["warning"] = warning
    record.data["pairs"][split] = section
    record.data["threshold"] = _round(threshold)
    record.data["threshold_calibration"] = {
        "pairs": _relative(pairs, folder),
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
    scorer = model if isinstance(model, Scorer) else load_scorer(model)
    folder = Path(out) if out is not None else scorer.path.parent
    record = MetricsFile(folder, scorer, overwrite)
    record.check("n_way", str(n_way))
    images = read_image_list(source, split)
    split = split if images.kind == "pairs" else None  # only a pairs manifest has splits
    try:  # bad settings for this data fail before any image is embedded
        metrics.one_shot_trials(images.classes, n_way, 1, seed)
    except ValueError as exc:
        raise ManifestError(str(exc), file=source) from None
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
    section.update(source=_relative(source, folder), split=split)
    record.data["n_way"][str(n_way)] = section
    record.save()
    return evaluation


__all__ = [
    "MetricsFile",
    "OneShotEvaluation",
    "PairEvaluation",
    "evaluate",
    "evaluate_n_way",
]
