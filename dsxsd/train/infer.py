"""A ``model.keras`` as a :class:`dsxsd.inference.Scorer`, run by Keras.

The model is split into its tower and its head (:func:`.network.split_model`, sharing the
weights); images go through :func:`dsxsd.train.load_images` with the run's resize mode,
the code path training used, so any size or mode of image is scored as training saw it.

What uses a model (predict, embed, search) is in :mod:`dsxsd.inference`, which runs an
exported ``.onnx`` as well; it is re-exported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._preflight import ImageList, Index, load_index, read_image_list, read_pairs_frame
from ..errors import require_path
from ..inference import (
    Hit,
    PairScores,
    Prediction,
    Progress,
    Scorer,
    embed,
    predict,
    predict_pairs,
    read_threshold,
    score_pairs,
    search,
)


@dataclass
class KerasScorer(Scorer):
    """A loaded ``model.keras`` split into tower and head, with the settings it was
    trained with (``config.json`` and ``metrics.json`` beside it)."""

    model: Any
    tower: Any
    head: Any
    path: Path
    image_size: int
    resize: str = "stretch"
    threshold: float | None = None
    feature_dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.feature_dim = int(self.tower.output.shape[-1])

    def embed_batch(self, paths: list[str]) -> np.ndarray:
        from .data import load_images

        images = load_images(paths, self.image_size, resize=self.resize)
        return _numpy(self.tower(images, training=False), np.float32)

    def score_batch(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return _numpy(self.head([left, right], training=False), np.float64)


def _numpy(tensor: Any, dtype: Any) -> np.ndarray:
    # Models are called directly rather than through predict(): predict compiles a graph
    # per batch shape, which for one-off calls of varying size costs more than it saves.
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=dtype)


def load_scorer(path: str | os.PathLike[str]) -> KerasScorer:
    """Load ``model.keras`` (or a run folder holding one) with the run's settings.

    The image size is the model's input size; the resize mode comes from ``config.json``
    beside the model (``stretch`` without one); the threshold from ``metrics.json``.
    """
    from .network import load_model, split_model

    path = require_path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    model = load_model(path)
    tower, head = split_model(model)
    run_dir = model_path.parent
    return KerasScorer(
        model=model,
        tower=tower,
        head=head,
        path=model_path,
        image_size=int(tower.input.shape[1]),
        resize=run_resize(run_dir),
        threshold=read_threshold(run_dir, model_path),
    )


def run_resize(run_dir: Path) -> str:
    """The run's resize mode (``config.json``), so images are resized as in training."""
    if not (run_dir / "config.json").is_file():
        return "stretch"
    from .run import read_run_config

    return str(read_run_config(run_dir).get("resize", "stretch"))


__all__ = [
    "Hit",
    "ImageList",
    "Index",
    "KerasScorer",
    "PairScores",
    "Prediction",
    "Progress",
    "Scorer",
    "embed",
    "load_index",
    "load_scorer",
    "predict",
    "predict_pairs",
    "read_image_list",
    "read_pairs_frame",
    "read_threshold",
    "score_pairs",
    "search",
]
