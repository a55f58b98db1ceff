"""Figures of a pair verifier's scores: the ROC curve and the score histograms that
``dsxsd evaluate`` saves as ``roc.png`` and ``scores.png``.

Each function returns a matplotlib :class:`~matplotlib.figure.Figure` built without
pyplot (no global backend state); :func:`save_png` writes one. matplotlib is imported
when a figure is made, so importing this module costs nothing. Labels and scores follow
:mod:`dsxsd.metrics`: 1 = same class, higher score = more alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _io, metrics
from .errors import MissingDependencyError


def _figure(layout: str = "tight"):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError('plots need matplotlib: pip install "dsxsd[train]"') from None
    return Figure(figsize=(5, 4.5), dpi=100, layout=layout)


def roc_figure(labels: Any, scores: Any, *, title: str = "ROC"):
    """The ROC curve with its AUC, the chance diagonal and the equal-error-rate point."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    fpr, tpr, _ = metrics.roc_curve(y, s)
    auc = metrics.roc_auc(y, s)
    eer, _ = metrics.equal_error_rate(y, s)
    fig = _figure()
    ax = fig.subplots()
    ax.plot(fpr, tpr, color="tab:blue", label=f"ROC (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.plot([eer], [1 - eer], "o", color="tab:red", label=f"EER {eer:.3f}")
    ax.set(
        xlabel="false positive rate (different pairs called same)",
        ylabel="true positive rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    # A useful model's curve hugs the top left, leaving the bottom right empty.
    ax.legend(loc="lower right")
    return fig


def scores_figure(labels: Any, scores: Any, threshold: float, *, title: str = "Scores"):
    """Histograms of the scores of same and different pairs, with the decision threshold
    and 0.5 marked. The legend sits below the plot: inside, wherever it went it could
    hide the bars or the lines that the picture is for."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    same, different = int(np.sum(y == 1)), int(np.sum(y == 0))
    # Constrained layout makes room for a legend placed "outside" the axes.
    fig = _figure(layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, color="tab:green", label=f"same ({same})")
    ax.hist(s[y == 0], bins=bins, alpha=0.6, color="tab:orange", label=f"different ({different})")
    ax.axvline(threshold, color="black", label=f"threshold {threshold:.3f}")
    ax.axvline(0.5, color="grey", linestyle=":", label="0.5")
    ax.set(xlabel="score (probability of same class)", ylabel="pairs", title=title)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    return fig


def save_png(figure, path) -> None:
    """Write ``figure`` to ``path`` atomically (the caller has checked for an existing
    file; rendering is by Agg, whatever backend pyplot would pick)."""
    with _io.atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png")


__all__ = ["roc_figure", "save_png", "scores_figure"]
