"""Training and inference: the only package that imports TensorFlow.

Importing it registers dsxsd's Keras layers, so afterwards
``keras.models.load_model("run/model.keras")`` needs no ``custom_objects``.
Pair evaluation is ``dsxsd.train.evaluate.evaluate`` (a module of the same name would
shadow a re-exported function).
"""

from __future__ import annotations

from .data import load_images, make_dataset
from .evaluate import evaluate_n_way
from .fit import fit
from .infer import embed, predict, predict_pairs, search
from .network import build_model, load_model, split_model
from .run import read_run_config

__all__ = [
    "build_model",
    "embed",
    "evaluate_n_way",
    "fit",
    "load_images",
    "load_model",
    "make_dataset",
    "predict",
    "predict_pairs",
    "read_run_config",
    "search",
    "split_model",
]
