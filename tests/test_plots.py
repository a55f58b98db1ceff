"""The figures dsxsd evaluate saves: nothing drawn over the data they are for."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from dsxsd import plots  # noqa: E402

RNG = np.random.default_rng(0)
LABELS = np.r_[np.ones(300, dtype=int), np.zeros(300, dtype=int)]
# Same pairs score high, different ones low, overlapping around 0.5: bars fill the
# middle and the top of the plot, where a legend inside the axes used to go.
SCORES = np.r_[RNG.beta(5, 2, 300), RNG.beta(2, 5, 300)]


def rendered(figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def test_scores_legend_lies_outside_the_axes_and_inside_the_figure():
    figure = plots.scores_figure(LABELS, SCORES, 0.47, title="Scores, test split")
    renderer = rendered(figure)
    (ax,) = figure.axes
    legends = [*figure.legends, *([ax.get_legend()] if ax.get_legend() else [])]
    assert len(legends) == 1
    legend = legends[0].get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))  # the data region
    box = figure.bbox
    assert box.x0 <= legend.x0 and legend.x1 <= box.x1 and box.y0 <= legend.y0 and legend.y1 <= box.y1
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert texts == ["same (300)", "different (300)", "threshold 0.470", "0.5"]


def test_figures_save_as_png(tmp_path):
    plots.save_png(plots.scores_figure(LABELS, SCORES, 0.5), tmp_path / "scores.png")
    plots.save_png(plots.roc_figure(LABELS, SCORES), tmp_path / "roc.png")
    for name in ("scores.png", "roc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
