"""The Siamese network: one VGG16 tower shared by two images, an L1 distance, a small head.

Built from Keras 3 layers and ``keras.ops`` only, so the same code and the same saved
``model.keras`` run under any Keras backend; only the input pipeline and distribution are
TensorFlow's. Preprocessing is a layer inside the tower, so a saved model takes raw 0-255
RGB images and nothing outside the model has to remember how it was trained.

At the defaults (105x105 inputs, width 1.0) the model is exactly the reference design:
VGG16 conv blocks 1-5 (14,714,688 weights), flatten to 3*3*512 = 4608 features, L1
distance, Dense(512, relu) (2,359,808) and Dense(1, sigmoid) (513): 17,075,009 in all.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

import keras
from keras import layers, ops

from .. import _preflight
from .._preflight import IMAGENET_WEIGHTS
from ..errors import ModelFileError, first_line, require_path

# Keras' VGG16 block layout: (number of convolutions, filters at width 1.0).
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
# The head's hidden layer is the reference's Dense(512). It is not scaled by --width: the
# width option exists to shrink the convolutional tower, which is where the cost is.
HEAD_UNITS = 512
# keras.applications.vgg16.preprocess_input ("caffe" mode): BGR means of ImageNet.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# Five 2x2 poolings: smaller inputs would pool a side down to zero.
MIN_IMAGE_SIZE = 32

# Keras' VGG16 no-top ImageNet weights, named, fetched and checked exactly as
# keras.applications.VGG16(weights="imagenet", include_top=False) does it, so that either
# finds the other's download in Keras' cache.
IMAGENET_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# An md5, as Keras checks it: a literal inside VGG16() there, not a constant to import.
IMAGENET_WEIGHTS_HASH = "6d6bbae143d832006294945121d1f1fc"
try:  # Keras' own constant, though its module is not public API.
    from keras.src.applications.vgg16 import WEIGHTS_PATH_NO_TOP as IMAGENET_WEIGHTS_URL
except ImportError:
    IMAGENET_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + IMAGENET_WEIGHTS_FILE


@keras.saving.register_keras_serializable(package="dsxsd")
class ImagePreprocess(layers.Layer):
    """Raw 0-255 RGB in, what the tower expects out.

    ``mode="unit"`` scales to [0, 1] (a tower trained from scratch); ``mode="caffe"`` is
    VGG16's own preprocessing (RGB to BGR, ImageNet mean subtracted, no scaling), which
    pretrained VGG16 weights need. Always computes in float32: under mixed precision the
    first convolution casts the result down, and the mean subtraction stays exact.
    """

    def __init__(self, mode: str = "unit", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in ("unit", "caffe"):
            raise ValueError(f"unknown preprocessing mode {mode!r}; expected 'unit' or 'caffe'")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        x = ops.flip(x, axis=-1)
        return x - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="dsxsd")
class L1Distance(layers.Layer):
    """|a - b| element-wise: the Siamese distance between two feature vectors."""

    def call(self, inputs):
        a, b = inputs
        return ops.abs(a - b)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def conv_widths(width: float) -> list[int]:
    """Filters of each VGG16 block at ``width`` (at least one filter per layer)."""
    return [max(1, int(round(filters * width))) for _, filters in VGG16_BLOCKS]


def build_tower(image_size: int = 105, width: float = 1.0, preprocessing: str = "unit") -> keras.Model:
    """One image [B, S, S, 3] raw 0-255 RGB -> its feature vector [B, D].

    Layer names are Keras' VGG16 names (``block1_conv1`` ... ``block5_pool``) so that a
    VGG16 weights file loads into it by name.
    """
    image = keras.Input((image_size, image_size, 3), name="image")
    x = ImagePreprocess(preprocessing, name="preprocess")(image)
    for block, ((convs, _), filters) in enumerate(zip(VGG16_BLOCKS, conv_widths(width)), start=1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{block}_conv{conv}"
            )(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    features = layers.Flatten(name="flatten")(x)
    return keras.Model(image, features, name="tower")


def build_model(
    image_size: int = 105,
    width: float = 1.0,
    backbone_weights: str | os.PathLike[str] | None = None,
    head_units: int = HEAD_UNITS,
) -> keras.Model:
    """The Siamese model: ``[left, right]`` raw 0-255 RGB -> P(same class) [B, 1].

    ``backbone_weights``: VGG16 weights for the tower (:func:`backbone_weights_file`): the
    string ``"imagenet"`` for Keras' ImageNet weights (width 1.0 only; downloaded into
    Keras' cache the first time), or a local Keras VGG16 no-top weights file (``.h5`` or
    ``.weights.h5``), loaded into the tower by layer name; the tower then uses VGG16's own
    preprocessing. Uses the current Keras dtype policy (mixed precision), except that
    the final sigmoid is always float32 so the probabilities and the loss stay stable.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {image_size} is too small: five 2x2 poolings need at least {MIN_IMAGE_SIZE}")
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    _preflight.check_backbone_weights(backbone_weights, width)
    preprocessing = "unit" if backbone_weights is None else "caffe"
    tower = build_tower(image_size, width, preprocessing)
    if backbone_weights is not None:
        load_backbone_weights(tower, backbone_weights_file(backbone_weights))

    left = keras.Input((image_size, image_size, 3), name="left")
    right = keras.Input((image_size, image_size, 3), name="right")
    distance = L1Distance(name="l1_distance")([tower(left), tower(right)])
    hidden = layers.Dense(head_units, activation="relu", name="head_dense")(distance)
    score = layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(hidden)
    return keras.Model([left, right], score, name="siamese")


def backbone_weights_file(backbone_weights: str | os.PathLike[str]) -> Path:
    """The weights file ``--backbone-weights`` names: for the string ``"imagenet"`` Keras'
    cached VGG16 no-top weights (:func:`imagenet_weights_file`), else the local file
    itself (a file named ``imagenet`` is ``./imagenet``)."""
    if isinstance(backbone_weights, str) and backbone_weights == IMAGENET_WEIGHTS:
        return imagenet_weights_file()
    return require_path(backbone_weights)


def imagenet_weights_file() -> Path:
    """Keras' VGG16 no-top ImageNet weights in Keras' cache (``$KERAS_HOME/models``, by
    default ``~/.keras/models``), fetched by Keras' own loader, ``keras.utils.get_file``,
    which uses a file already there whose hash is right and downloads it otherwise. The
    only network access in dsxsd, and only when asked for.

    A download that fails (offline, a proxy, a bad hash) raises
    :class:`~dsxsd.errors.ModelFileError`: which file to download, from where, and where
    to put it, or that a local file works as well.
    """
    try:
        # Keras prints its download and progress bar on stdout, which --json keeps for JSON.
        with contextlib.redirect_stdout(sys.stderr):
            path = keras.utils.get_file(
                IMAGENET_WEIGHTS_FILE, IMAGENET_WEIGHTS_URL, cache_subdir="models", file_hash=IMAGENET_WEIGHTS_HASH
            )
    except Exception as exc:  # Keras rewraps urllib's errors in a bare Exception
        # Keras' "URL fetch failure on <origin>: <code or None> -- <reason>": the origin is
        # said below.
        reason = re.sub(r"^URL fetch failure on \S+: (None -- )?", "", first_line(exc))
        raise ModelFileError(
            f"not in Keras' cache and the download failed ({reason}): download {IMAGENET_WEIGHTS_URL} "
            f"to {keras_cache_file(IMAGENET_WEIGHTS_FILE)}, or give a local copy: --backbone-weights path/to/file.h5",
            file=IMAGENET_WEIGHTS_FILE,
        ) from None
    return Path(path)


def keras_cache_file(name: str) -> Path:
    """Where ``keras.utils.get_file(name, cache_subdir="models")`` looks for ``name``:
    ``models/`` under Keras' home (KERAS_HOME as Keras read it at import, else
    ``~/.keras``), or under ``/tmp/.keras`` where that home is not writable, as get_file
    decides."""
    try:
        from keras.src.backend.config import keras_home  # private, but Keras' own answer

        home = keras_home()
    except ImportError:
        home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(home, "models", name)


def load_backbone_weights(tower: keras.Model, path: str | os.PathLike[str]) -> None:
    """Copy a Keras VGG16 no-top weights file into ``tower``'s conv layers by name.

    Reads the HDF5 file directly, because Keras 3's ``load_weights`` has no by-name mode:
    the legacy layout of the ``keras.applications`` downloads
    (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``: ``/<layer>/<layer>/kernel:0``)
    is matched by layer name; a Keras 3 ``.weights.h5`` of ``keras.applications.VGG16``
    (``/layers/conv2d_<n>/vars/0``) by convolution order. Shapes are checked so a file for
    another width fails with a clear message, not a broadcast error.
    """
    import h5py  # a Keras dependency

    path = require_path(path)
    if not path.is_file():
        raise ModelFileError("backbone weights: not a file", file=path)
    try:
        with h5py.File(path, "r") as f:
            found = _read_vgg_weights(f)
    except OSError as exc:
        raise ModelFileError(f"not an HDF5 weights file ({exc})", file=path) from None
    conv_layers = [layer for layer in tower.layers if isinstance(layer, layers.Conv2D)]
    missing = [layer.name for layer in conv_layers if layer.name not in found]
    if missing:
        raise ModelFileError(
            f"not a VGG16 weights file: no weights for {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more layers" if len(missing) > 3 else ""),
            file=path,
        )
    for layer in conv_layers:
        values = found[layer.name]
        expected = [tuple(v.shape) for v in layer.get_weights()]
        if [tuple(v.shape) for v in values] != expected:
            raise ModelFileError(
                f"layer {layer.name}: weights have shapes {[v.shape for v in values]}, the model "
                f"needs {expected} (a file for another --width?)",
                file=path,
            )
        layer.set_weights(values)


def _read_vgg_weights(f) -> dict[str, list]:
    """Layer name -> [kernel, bias] as numpy arrays, from either HDF5 layout."""
    if "layers" in f and "layer_names" not in f.attrs:
        return _read_keras3_weights(f["layers"])
    found: dict[str, list] = {}
    root = f["model_weights"] if "model_weights" in f else f  # a full legacy model file
    for name in root.attrs.get("layer_names", list(root.keys())):
        name = name.decode() if isinstance(name, bytes) else name
        group = root[name]
        weight_names = group.attrs.get("weight_names", [])
        values = [group[w.decode() if isinstance(w, bytes) else w][()] for w in weight_names]
        if len(values) == 2:
            found[name] = values
    return found


def _read_keras3_weights(layers_group) -> dict[str, list]:
    """Keras 3 ``.weights.h5`` files do not store layer names: a layer's group is named
    after its class and its rank among layers of that class (``conv2d``, ``conv2d_1``,
    ...). VGG16's 13 convolutions are therefore matched by that rank, which is VGG16's
    layer order, and given the VGG16 names."""
    ranked = []
    for key, group in layers_group.items():
        match = re.fullmatch(r"conv2d(?:_(\d+))?", key)
        if match and "vars" in group and len(group["vars"]) == 2:
            ranked.append((int(match.group(1) or 0), [group["vars"][str(i)][()] for i in range(2)]))
    ranked.sort(key=lambda item: item[0])
    names = [
        f"block{block}_conv{conv}"
        for block, (convs, _) in enumerate(VGG16_BLOCKS, start=1)
        for conv in range(1, convs + 1)
    ]
    return {name: values for name, (_, values) in zip(names, ranked)}


def split_model(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(tower, head)`` of a Siamese model, sharing its weights (nothing is copied).

    ``tower(images) -> features [N, D]``; ``head([features_a, features_b]) -> scores
    [N, 1]``. Search embeds an index once with the tower and scores a query against all N
    index features with one head call.
    """
    try:
        tower = model.get_layer("tower")
        distance, dense, score = (model.get_layer(n) for n in ("l1_distance", "head_dense", "score"))
    except ValueError as exc:
        raise ModelFileError(f"not a dsxsd Siamese model ({exc})") from None
    dim = tower.output.shape[-1]
    feat_a = keras.Input((dim,), name="left_features")
    feat_b = keras.Input((dim,), name="right_features")
    head = keras.Model([feat_a, feat_b], score(dense(distance([feat_a, feat_b]))), name="head")
    return tower, head


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a ``model.keras`` written by :func:`dsxsd.train.fit`.

    A missing file, a file Keras cannot read, or a Keras model that is not a dsxsd Siamese
    model raise :class:`~dsxsd.errors.ModelFileError` with one clear line.
    """
    path = require_path(path)
    if path.is_dir():
        path = path / "model.keras"  # a run folder
    if not path.is_file():
        raise ModelFileError("model file not found", file=path)
    try:
        model = keras.models.load_model(path)
    except Exception as exc:  # Keras raises many kinds (ValueError, OSError, zipfile...)
        raise ModelFileError(f"cannot load this model file: {first_line(exc)}", file=path) from None
    names = {layer.name for layer in getattr(model, "layers", [])}
    if not {"tower", "l1_distance", "score"} <= names:
        raise ModelFileError("a Keras model, but not a dsxsd Siamese model (no 'tower' layer)", file=path)
    return model


__all__ = [
    "HEAD_UNITS",
    "ImagePreprocess",
    "L1Distance",
    "build_model",
    "IMAGENET_WEIGHTS_FILE",
    "IMAGENET_WEIGHTS_HASH",
    "IMAGENET_WEIGHTS_URL",
    "backbone_weights_file",
    "build_tower",
    "conv_widths",
    "imagenet_weights_file",
    "load_backbone_weights",
    "load_model",
    "split_model",
]
