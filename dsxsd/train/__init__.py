"""Training and inference: the only package that imports TensorFlow.

Importing it registers dsxsd's Keras layers, so afterwards
``keras.models.load_model("run/model.keras")`` needs no ``custom_objects``.
"""

from __future__ import annotations

from .data import load_images, make_dataset
from .fit import fit
from .network import build_model, load_model, split_model
from .run import read_run_config

__all__ = [
    "build_model",
    "fit",
    "load_images",
    "load_model",
    "make_dataset",
    "read_run_config",
    "split_model",
]
