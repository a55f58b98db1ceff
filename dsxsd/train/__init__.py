"""Training and inference: the only package that imports TensorFlow.

Importing it registers dsxsd's Keras layers (:mod:`.network`, which needs Keras only), so
afterwards ``keras.models.load_model("run/model.keras")`` needs no ``custom_objects``.
Where TensorFlow is not installed (a GPU machine with JAX or PyTorch as the Keras backend)
the network still builds, loads and runs; the data pipeline, training, evaluation and
inference helpers, which need TensorFlow, then raise :class:`ImportError` when used.
Pair evaluation is ``dsxsd.train.evaluate.evaluate`` (a module of the same name would
shadow a re-exported function).
"""

from __future__ import annotations

from typing import Any

from ..environment import quiet_tensorflow

quiet_tensorflow()  # before anything here imports TensorFlow

from .network import build_model, load_model, split_model  # noqa: E402 - after the quieting

_NEED_TENSORFLOW = (
    "embed", "evaluate_n_way", "fit", "load_images", "make_dataset", "predict",
    "predict_pairs", "read_run_config", "search",
)

_missing_tensorflow: ImportError | None = None


def require_tensorflow() -> None:
    """Raise the :class:`ImportError` of TensorFlow where it is not installed (what the
    pipeline, training and inference need), so a caller can say how to install it."""
    if _missing_tensorflow is not None:
        raise _missing_tensorflow


try:
    from .data import load_images, make_dataset
    from .evaluate import evaluate_n_way
    from .fit import fit
    from .infer import embed, predict, predict_pairs, search
    from .run import read_run_config
except ImportError as exc:
    if not (exc.name or "").startswith("tensorflow"):
        raise  # a real bug, not a missing optional dependency
    _missing_tensorflow = exc

    def __getattr__(name: str) -> Any:
        if name in _NEED_TENSORFLOW:
            raise ImportError(
                f"dsxsd.train.{name} needs TensorFlow (pip install 'dsxsd[train]'); "
                "only the network runs without it"
            ) from _missing_tensorflow
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "require_tensorflow",
    "search",
    "split_model",
]
