"""``dsxsd export``: a trained model out of the run folder, as ONNX, SavedModel or LiteRT.

Every export takes raw 0-255 RGB, ``float32 [N, S, S, 3]`` (preprocessing is inside the
model), computes in float32 whatever precision it was trained in, and carries an
:class:`dsxsd.serve.ExportInfo` (input size, resize mode, threshold, versions): ONNX as
metadata properties, the others as ``<name>.json`` beside them.

The three formats come from TensorFlow's own converters, read top to bottom:

1. the ``.keras`` file is loaded and copied to float32 (:func:`float32_model`);
2. ``onnx``: tf2onnx converts a function of the three graphs :mod:`dsxsd.serve` describes
   (pair, image, features), then the graphs that are not the part's own get optional
   inputs (:func:`_finish_onnx`);
3. ``saved_model``: a Keras ``ExportArchive`` with a ``serve`` endpoint (the
   ``serving_default`` signature) of the part: ``left``, ``right`` -> ``score``, or
   ``image`` -> ``features``;
4. ``litert``: TensorFlow's LiteRT converter of that SavedModel.

Outputs are written as everything dsxsd writes: to a temporary beside the target, renamed
at the end, replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .. import __version__, _io
from .._preflight import check_export
from ..errors import DsxsdError, MissingDependencyError, first_line
from ..inference import read_threshold
from ..serve import (
    FEATURE_INPUTS, FEATURES_OUTPUT, HEAD_OUTPUT, IMAGE_INPUT, PAIR_INPUTS, PAIR_OUTPUT, PRIMARY,
    ExportInfo, info_file,
)
from .infer import run_resize
from .network import load_model, split_model

# The ONNX opset: 17 is what onnxruntime 1.14 and later run, and every op the network
# needs is in it.
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: the model (``path``) and, for SavedModel and LiteRT,
    the JSON beside it (``info_path``); ``warnings``: what the export had to assume or
    leave out (no config.json beside the model, a threshold of another model)."""

    path: Path
    info_path: Path | None
    format: str
    part: str
    source: Path
    info: ExportInfo
    warnings: tuple[str, ...] = ()


def export(
    run: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    part: str = "siamese",
    model: str = "best",
    overwrite: bool = False,
) -> ExportResult:
    """Export a trained model of ``run`` (a run folder, or a ``.keras`` file) to ``path``.

    ``format``: ``onnx`` (a ``.onnx`` file), ``saved_model`` (a folder) or ``litert`` (a
    ``.tflite`` file). ``part``: ``siamese`` scores a pair of images, ``tower`` maps an
    image to its feature vector. ``model``, for a run folder: ``best`` (``best.keras``, the
    best validation epoch) or ``final`` (``model.keras``).

    >>> export("run", "siamese.onnx")                                # doctest: +SKIP
    >>> export("run", "tower_saved_model", format="saved_model", part="tower")  # doctest: +SKIP
    """
    source = check_export(run, path, format, part, model, overwrite)
    path = Path(path)
    network = float32_model(load_model(source))
    tower, head = split_model(network)
    config = source.parent / "config.json"
    info = ExportInfo(
        part=part,
        image_size=int(tower.input.shape[1]),
        resize=run_resize(source.parent),
        feature_dim=int(tower.output.shape[-1]),
        threshold=read_threshold(source.parent, source),
        dsxsd_version=__version__,
        config_sha256=_io.sha256_file(config) if config.is_file() else None,
        source_model=source.name,
    )
    notes = []
    if not config.is_file():
        notes.append(f"no config.json beside {source}: the export assumes images were resized with stretch")
    if info.threshold is None and read_threshold(source.parent) is not None:
        notes.append(
            f"{source.parent / 'metrics.json'} holds the threshold of another model than "
            f"{source.name}, so the export carries none: export the model it was measured on "
            f"(--model), or evaluate {source} (--overwrite replaces the other model's results "
            "there) and export again"
        )
    if format == "onnx":
        with _io.atomic_path(path, overwrite) as tmp:
            tmp.write_bytes(onnx_bytes(network, tower, head, info, source))
        return ExportResult(path, None, format, part, source, info, tuple(notes))
    # The model is put in place first and its JSON last: a failure between the two leaves
    # a model that read_info refuses, never a new JSON describing an old model.
    beside = info_file(path)
    if format == "saved_model":
        with _io.atomic_path(beside, overwrite) as tmp_info, _io.atomic_directory(path, overwrite) as tmp:
            write_saved_model(network, tower, part, tmp)
            tmp_info.write_text(json.dumps(info.as_dict(), indent=2) + "\n", encoding="utf-8")
    else:
        with _io.atomic_path(beside, overwrite) as tmp_info, _io.atomic_path(path, overwrite) as tmp:
            tmp.write_bytes(litert_bytes(network, tower, part, source))
            tmp_info.write_text(json.dumps(info.as_dict(), indent=2) + "\n", encoding="utf-8")
    return ExportResult(path, beside, format, part, source, info, tuple(notes))


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` computing in float32: itself, or a copy with the same weights when it
    was trained in mixed precision (Keras' export wants float32, and a served model has
    no tensor cores to gain from float16)."""
    config = model.get_config()
    float32 = _float32_policies(config)
    if float32 == config:
        return model
    copy = keras.Model.from_config(float32)
    copy.set_weights(model.get_weights())
    left = [layer.name for layer in _layers(copy) if layer.compute_dtype != "float32"]
    if left:
        raise DsxsdError(f"cannot make the model compute in float32 for export (layers {', '.join(left[:3])})")
    return copy


def _float32_policies(config: Any) -> Any:
    """``config`` with every dtype policy (``mixed_float16``, ``mixed_bfloat16``) made
    ``float32``: a policy object's config, or a bare name as some Keras versions save it."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return {**config, "config": {**config.get("config", {}), "name": "float32"}}
        return {
            key: "float32" if key == "dtype" and str(value).startswith("mixed_") else _float32_policies(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer, those of nested models (the tower) included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_layers(layer))
    return found


def _image_spec(size: int, name: str) -> tf.TensorSpec:
    return tf.TensorSpec((None, size, size, 3), tf.float32, name=name)


# --------------------------------------------------------------------------- ONNX


def onnx_bytes(
    network: keras.Model, tower: keras.Model, head: keras.Model, info: ExportInfo, source: Path,
) -> bytes:
    """The ONNX model of ``info.part``, with the other graphs dsxsd uses (see
    :mod:`dsxsd.serve`), as bytes; a failure names ``source``, the ``.keras`` file."""
    try:
        import tf2onnx
    except ImportError:
        raise MissingDependencyError(
            'the ONNX export needs tf2onnx, which is not installed: pip install "dsxsd[train]"'
        ) from None
    try:
        # Keras' own ONNX export patches tf2onnx 1.17 for NumPy 2 (removed aliases such
        # as np.object); the patch is private to Keras, hence the guard.
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:
        pass
    else:
        with warnings.catch_warnings():  # its own check for np.object warns on NumPy 2
            warnings.simplefilter("ignore", FutureWarning)
            patch_tf2onnx()

    size, dim = info.image_size, info.feature_dim
    signature = [
        *(_image_spec(size, name) for name in (*PAIR_INPUTS, IMAGE_INPUT)),
        *(tf.TensorSpec((None, dim), tf.float32, name=name) for name in FEATURE_INPUTS),
    ]

    @tf.function(input_signature=signature)
    def graphs(left, right, image, left_features, right_features):
        return {
            PAIR_OUTPUT: network([left, right], training=False),
            FEATURES_OUTPUT: tower(image, training=False),
            HEAD_OUTPUT: head([left_features, right_features], training=False),
        }

    try:
        proto, _ = tf2onnx.convert.from_function(graphs, input_signature=signature, opset=ONNX_OPSET)
    except Exception as exc:  # tf2onnx raises what its handlers raise
        raise DsxsdError(f"tf2onnx could not convert the model: {first_line(exc)}", file=source) from None
    _finish_onnx(proto, info)
    return proto.SerializeToString()


def _finish_onnx(proto: Any, info: ExportInfo) -> None:
    """Make the part's inputs the required ones and its output the first; give the other
    graphs' inputs an empty default (optional ONNX inputs); add the metadata."""
    from onnx import helper, numpy_helper

    required, primary = PRIMARY[info.part]
    for graph_input in proto.graph.input:
        if graph_input.name not in required:
            dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:]
            empty = np.zeros((0, *dims), np.float32)
            proto.graph.initializer.append(numpy_helper.from_array(empty, graph_input.name))
    outputs = sorted(proto.graph.output, key=lambda o: o.name != primary)
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    helper.set_model_props(proto, info.as_properties())
    proto.producer_name = "dsxsd"
    proto.producer_version = __version__
    proto.doc_string = (
        f"dsxsd Siamese model, part {info.part}: inputs {', '.join(required)} -> {primary}. "
        f"Inputs: {info.input}."
    )


# --------------------------------------------------------------------------- SavedModel, LiteRT


def _serving_function(network: keras.Model, tower: keras.Model, part: str):
    """The part as a function of named inputs to a named output, and its signature."""
    size = int(tower.input.shape[1])
    if part == "siamese":
        def serve(left, right):
            return {PAIR_OUTPUT: network([left, right], training=False)}

        return serve, [_image_spec(size, name) for name in PAIR_INPUTS]

    def serve(image):
        return {FEATURES_OUTPUT: tower(image, training=False)}

    return serve, [_image_spec(size, IMAGE_INPUT)]


def write_saved_model(network: keras.Model, tower: keras.Model, part: str, folder: Path) -> None:
    """The part as a SavedModel in ``folder``: ``serving_default`` takes the named inputs."""
    serve, signature = _serving_function(network, tower, part)
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(name="serve", fn=serve, input_signature=signature)
    archive.write_out(str(folder), verbose=False)


def litert_bytes(network: keras.Model, tower: keras.Model, part: str, source: Path) -> bytes:
    """The part as a LiteRT (``.tflite``) flatbuffer, converted from its SavedModel; a
    failure names ``source``, the ``.keras`` file."""
    converter_class = getattr(getattr(tf, "lite", None), "TFLiteConverter", None)
    if converter_class is None:
        raise MissingDependencyError(
            "the LiteRT export needs TensorFlow's LiteRT converter (tf.lite.TFLiteConverter), "
            "which this TensorFlow does not have: install the full tensorflow wheel"
        )
    with tempfile.TemporaryDirectory(prefix="dsxsd-export-") as folder:
        write_saved_model(network, tower, part, Path(folder) / "saved_model")
        converter = converter_class.from_saved_model(str(Path(folder) / "saved_model"))
        try:
            return converter.convert()
        except Exception as exc:  # the converter's own kinds (ConverterError, ...)
            raise DsxsdError(f"the LiteRT converter failed: {first_line(exc)}", file=source) from None


__all__ = ["ExportResult", "export", "float32_model"]
