"""Metrics for a verifier that scores pairs: ROC, AUC, equal error rate, a calibrated
threshold, and N-way one-shot accuracy.

Plain numpy, so that metrics can be computed (and tested) without TensorFlow and without
scikit-learn. Conventions, the same everywhere in dsxsd:

- ``labels`` are 1 for a "same class" pair and 0 for a "different" pair;
- ``scores`` are higher for "more alike" (the model's sigmoid output);
- a pair is predicted "same" when ``score >= threshold``.

Functions raise :class:`ValueError` on input they cannot give a meaningful number for (a
split holding only one label, an N larger than the number of classes); callers that know
the file turn it into a :class:`dsxsd.DsxsdError` naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np


def _check(labels: Any, scores: Any, need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        y, s = y.reshape(-1), s.reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if y.size == 0:
        raise ValueError("no pairs to score")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (different) or 1 (same)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    y = y.astype(np.int64)
    if need_both and (y.min() == y.max()):
        which = "same (1)" if y[0] == 1 else "different (0)"
        raise ValueError(f"all {y.size} pairs are {which}; need both labels")
    return y, s


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``, one point per distinct score, thresholds decreasing.

    The first point is ``(0, 0)`` at threshold ``+inf`` (nothing predicted "same"); the
    last is ``(1, 1)`` at the lowest score. Tied scores form one point, so the curve of a
    constant scorer is the diagonal, not a staircase that flatters it.
    """
    tp, fp, thresholds = _roc_counts(*_check(labels, scores))
    return fp / fp[-1], tp / tp[-1], thresholds


def _roc_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positive counts at each distinct threshold (first: +inf, none)."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    # The last index of each run of equal scores: a threshold includes all of a tie.
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.r_[0, np.cumsum(y[order])[ends]]
    fp = np.r_[0, ends + 1] - tp
    return tp, fp, np.r_[np.inf, s_sorted[ends]]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span (scipy's 'average')."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve: the probability that a random "same" pair scores higher
    than a random "different" one, a tie counting one half (Mann-Whitney U / (P N))."""
    y, s = _check(labels, scores)
    ranks = _average_ranks(s)
    positives = int(y.sum())
    negatives = y.size - positives
    u = ranks[y == 1].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def equal_error_rate(labels: Any, scores: Any) -> tuple[float, float]:
    """``(eer, threshold)``: the rate at which false accepts equal false rejects.

    Along the ROC curve the false negative rate ``1 - tpr`` falls while the false positive
    rate rises; the EER is where they cross, interpolated linearly between the two ROC
    points around the crossing. ``threshold`` is the one of the first point where the
    false positive rate has reached the false negative rate.
    """
    tp, fp, thresholds = _roc_counts(*_check(labels, scores))
    positives, negatives = tp[-1], fp[-1]
    fnr, fpr = (positives - tp) / positives, fp / negatives
    # The sign of fnr - fpr, in integers so that equal rates compare equal exactly.
    gap = (positives - tp) * negatives - fp * positives  # starts > 0, ends < 0, never rises
    i = int(np.flatnonzero(gap <= 0)[0])
    if gap[i] == 0:
        return float(fpr[i]), float(thresholds[i])
    alpha = (fnr[i - 1] - fpr[i - 1]) / ((fnr[i - 1] - fpr[i - 1]) - (fnr[i] - fpr[i]))
    eer = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    return float(eer), float(thresholds[i])


def best_threshold(labels: Any, scores: Any) -> tuple[float, float]:
    """``(threshold, accuracy)``: the threshold with the highest accuracy on these pairs.

    Any threshold between two neighbouring distinct scores gives the same predictions, so
    the midpoint is returned: it sits as far as possible from the pairs it was calibrated
    on. Where several gaps tie, the highest threshold wins (fewer false accepts). When the
    best is to call every pair "same" the threshold is the lowest score; when it is to
    call none "same", the next float above the highest score.
    """
    y, s = _check(labels, scores, need_both=False)
    tp, fp, thresholds = _roc_counts(y, s)
    distinct = thresholds[1:]  # decreasing
    negatives = y.size - int(y.sum())
    # Candidate k calls "same" the pairs scoring among the k highest distinct scores.
    correct = tp + (negatives - fp)
    k = int(np.argmax(correct))  # first max: the highest threshold among ties
    if k == 0:
        threshold = float(np.nextafter(distinct[0], np.inf))
    elif k == distinct.size:
        threshold = float(distinct[-1])
    else:
        threshold = float((distinct[k - 1] + distinct[k]) / 2.0)
        if threshold <= distinct[k]:  # neighbouring floats: no number lies between
            threshold = float(distinct[k - 1])
    return threshold, float(correct[k] / y.size)


@dataclass(frozen=True)
class BinaryMetrics:
    """Counts and rates of "same" (positive) predictions at one threshold.

    Precision is 0 when nothing is predicted "same", recall 0 when there is no "same"
    pair, F1 0 when both are 0 (scikit-learn's ``zero_division=0``).
    """

    threshold: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    tn: int
    fn: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def binary_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> BinaryMetrics:
    """Accuracy, precision, recall and F1 of predicting "same" when ``score >= threshold``."""
    y, s = _check(labels, scores, need_both=False)
    predicted = s >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        threshold=float(threshold),
        accuracy=(tp + tn) / y.size,
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


@dataclass(frozen=True)
class OneShotTrials:
    """The draws of an N-way one-shot test, all trials at once.

    ``queries[t]`` is the index of trial t's query image; ``supports[t]`` the indices of
    its N support images, one per class; ``answers[t]`` the position in ``supports[t]`` of
    the support of the query's class (a different image of the same class).
    """

    queries: np.ndarray  # [T] int
    supports: np.ndarray  # [T, N] int
    answers: np.ndarray  # [T] int


def one_shot_trials(
    classes: Sequence[Any], n_way: int, trials: int, seed: int | None = 0
) -> OneShotTrials:
    """Draw ``trials`` N-way one-shot trials over images labelled ``classes``.

    The protocol of Koch et al. (2015) on Omniglot: each trial picks a query class that
    has at least two images and N-1 other classes; the query and its class's support are
    two distinct images; each other class gives one image. The right answer sits at a
    random position, so a scorer that cannot tell images apart scores 1/N on average
    rather than being flattered by where the answer is put.
    """
    if n_way < 2:
        raise ValueError(f"N-way needs N >= 2, got {n_way}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    labels = np.asarray(classes)
    names, codes = np.unique(labels, return_inverse=True)
    if names.size < n_way:
        raise ValueError(f"{n_way}-way needs {n_way} classes, found {names.size}")
    members = [np.flatnonzero(codes == c) for c in range(names.size)]
    query_classes = np.array([c for c, m in enumerate(members) if m.size >= 2])
    if query_classes.size == 0:
        raise ValueError("one-shot trials need a class with at least two images")
    rng = np.random.default_rng(seed)
    queries = np.empty(trials, dtype=np.int64)
    supports = np.empty((trials, n_way), dtype=np.int64)
    answers = rng.integers(0, n_way, size=trials)
    for t in range(trials):
        true_class = int(rng.choice(query_classes))
        query, match = rng.choice(members[true_class], size=2, replace=False)
        others = np.delete(np.arange(names.size), true_class)
        picked = rng.choice(others, size=n_way - 1, replace=False)
        row = [int(rng.choice(members[c])) for c in picked]
        row.insert(int(answers[t]), int(match))
        queries[t] = query
        supports[t] = row
    return OneShotTrials(queries=queries, supports=supports, answers=answers)


@dataclass(frozen=True)
class OneShotResult:
    n_way: int
    trials: int
    correct: int
    accuracy: float
    chance: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def n_way_one_shot(
    classes: Sequence[Any],
    similarity: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_way: int = 20,
    trials: int = 400,
    seed: int | None = 0,
) -> OneShotResult:
    """N-way one-shot accuracy: how often the most similar support is of the query's class.

    ``similarity(queries, supports)`` gets index arrays ``[T]`` and ``[T, N]`` into
    ``classes`` and returns scores ``[T, N]``; it is called once, so a model can embed
    each image once and score every trial in one vectorised pass. On a tie the first of
    the tied supports (in random order) wins.
    """
    draw = one_shot_trials(classes, n_way, trials, seed)
    scores = np.asarray(similarity(draw.queries, draw.supports), dtype=np.float64)
    if scores.shape != draw.supports.shape:
        raise ValueError(
            f"similarity returned shape {scores.shape}, expected {draw.supports.shape}"
        )
    correct = int(np.sum(np.argmax(scores, axis=1) == draw.answers))
    return OneShotResult(
        n_way=n_way,
        trials=trials,
        correct=correct,
        accuracy=correct / trials,
        chance=1.0 / n_way,
    )


__all__ = [
    "BinaryMetrics",
    "OneShotResult",
    "OneShotTrials",
    "best_threshold",
    "binary_metrics",
    "equal_error_rate",
    "n_way_one_shot",
    "one_shot_trials",
    "roc_auc",
    "roc_curve",
]
