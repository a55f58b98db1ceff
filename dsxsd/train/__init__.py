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

import os
from typing import Any


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up notes off the user's terminal.

    At import TensorFlow logs, at INFO level, which CPU instructions it was built for and
    that oneDNN is on, each preceded by absl's "All log messages before
    absl::InitializeLog() is called..." line (once per native library that logs, so
    pairs of them). None of it is actionable. TF_CPP_MIN_LOG_LEVEL=2 keeps ERROR lines
    (real failures) and drops INFO and WARNING; it is read once, when TensorFlow's native
    code loads, so it must be set before the first ``import tensorflow`` (here: every
    path into TensorFlow in dsxsd goes through this package). A user's own setting wins,
    and DSXSD_DEBUG=1 (``dsxsd --verbose``) sets 0, TensorFlow's default, showing it all:
    said explicitly, because TensorFlow imports JAX where it is installed, and JAX sets 1.
    """
    debug = os.environ.get("DSXSD_DEBUG", "") not in ("", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")


_quiet_tensorflow()

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
