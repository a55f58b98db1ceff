"""Exported models without TensorFlow: what an export says about itself, and an exported
``.onnx`` run by onnxruntime.

``dsxsd export`` (:mod:`dsxsd.train.exporting`) writes a model that takes raw 0-255 RGB
images, ``float32 [N, S, S, 3]``; preprocessing is inside it. What a consumer needs
besides the weights is an :class:`ExportInfo`: the input size, how images were resized in
training, the calibrated threshold, dsxsd's version and the digest of the run's
``config.json``. An ONNX file carries it as metadata properties; a SavedModel or a
LiteRT file carries it in a JSON file beside it (:func:`info_file`).

Every ONNX export holds three graphs over the same weights, so one file serves whoever
loads it:

========================  ==============================  ==========================
inputs                    outputs                         for
========================  ==============================  ==========================
``left``, ``right``       ``score`` [N, 1]                ``--part siamese``: a pair
``image``                 ``features`` [N, D]             ``--part tower``: an index
``left_features``,        ``head_score`` [N, 1]           dsxsd: search, many pairs
``right_features``
========================  ==============================  ==========================

The part's own inputs are required and its output comes first; the others are optional
(ONNX inputs with an empty default), so ``session.run(None, {"left": a, "right": b})[0]``
is the score and a consumer never sees the rest. dsxsd itself embeds each image once
(``image``) and scores pairs of features (the head), whichever part it is given.

Images are decoded (JPEG with simplejpeg, the rest with Pillow) and resized to the pixels
TensorFlow gave the model in training (:func:`dsxsd._images.model_inputs`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._images import RESIZE_MODES, model_inputs
from ._preflight import EXPORT_PARTS, info_file
from .errors import MissingDependencyError, ModelFileError, first_line, require_path
from .inference import Scorer, read_threshold

EXPORT_FORMAT = "dsxsd.export"
EXPORT_VERSION = 1
INPUT = "float32 [N, S, S, 3]: raw 0-255 RGB, resized to S x S as in training; preprocessing is inside the model"
# Graph inputs and outputs of every ONNX export (the table above).
PAIR_INPUTS = ("left", "right")
IMAGE_INPUT = "image"
FEATURE_INPUTS = ("left_features", "right_features")
PAIR_OUTPUT = "score"
FEATURES_OUTPUT = "features"
HEAD_OUTPUT = "head_score"
PRIMARY = {"siamese": (PAIR_INPUTS, PAIR_OUTPUT), "tower": ((IMAGE_INPUT,), FEATURES_OUTPUT)}


@dataclass(frozen=True)
class ExportInfo:
    """What an exported model says about itself.

    >>> info = ExportInfo("siamese", 105, "stretch", 4608, 0.62, "0.1.0", "ab12", "best.keras")
    >>> ExportInfo.from_properties(info.as_properties(), "m.onnx") == info
    True
    """

    part: str
    image_size: int
    resize: str
    feature_dim: int
    threshold: float | None
    dsxsd_version: str
    config_sha256: str | None
    source_model: str
    input: str = INPUT

    def __post_init__(self) -> None:
        if self.part not in EXPORT_PARTS:
            raise ValueError(f"part must be one of {EXPORT_PARTS}, got {self.part!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        for name in ("image_size", "feature_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")

    def as_dict(self) -> dict[str, Any]:
        """The JSON written beside a SavedModel or a LiteRT file."""
        return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, **asdict(self)}

    def as_properties(self) -> dict[str, str]:
        """ONNX metadata properties (strings only; a missing threshold is left out)."""
        return {k: str(v) for k, v in self.as_dict().items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], file: str | os.PathLike[str]) -> ExportInfo:
        """Read back :meth:`as_dict`; anything else is a :class:`ModelFileError` naming
        ``file``."""
        if values.get("format") != EXPORT_FORMAT:
            raise ModelFileError(
                f"not a dsxsd export (no {EXPORT_FORMAT!r} metadata): make one with dsxsd export",
                file=file,
            )
        try:
            version = int(values["version"])
            if version > EXPORT_VERSION:
                raise ModelFileError(f"export version {version} is newer than this dsxsd reads", file=file)
            threshold = values.get("threshold")
            config = values.get("config_sha256")
            return cls(
                part=str(values["part"]),
                image_size=int(values["image_size"]),
                resize=str(values["resize"]),
                feature_dim=int(values["feature_dim"]),
                threshold=None if threshold is None else float(threshold),
                dsxsd_version=str(values["dsxsd_version"]),
                config_sha256=None if config is None else str(config),
                source_model=str(values["source_model"]),
            )
        except KeyError as exc:
            raise ModelFileError(f"dsxsd export metadata without {exc.args[0]!r}", file=file) from None
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"bad dsxsd export metadata: {exc}", file=file) from None

    @classmethod
    def from_properties(cls, properties: Mapping[str, str], file: str | os.PathLike[str]) -> ExportInfo:
        """Read back :meth:`as_properties`."""
        return cls.from_dict(properties, file)


def read_info(export: str | os.PathLike[str]) -> ExportInfo:
    """The :class:`ExportInfo` of any export: an ONNX file's metadata, else the JSON
    beside it."""
    export = require_path(export)
    if export.suffix.lower() == ".onnx":
        return _onnx_session(export)[1]
    beside = info_file(export)
    if not beside.is_file():
        raise ModelFileError(f"no {beside.name} beside it: not a dsxsd export", file=export)
    try:
        values = json.loads(beside.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"not valid JSON ({exc})", file=beside) from None
    if not isinstance(values, dict):
        raise ModelFileError("not a dsxsd export description (expected a JSON object)", file=beside)
    return ExportInfo.from_dict(values, beside)


# --------------------------------------------------------------------------- onnxruntime


def _onnx_session(path: Path) -> tuple[Any, ExportInfo]:
    """An onnxruntime session of ``path`` and its :class:`ExportInfo`."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            'running an .onnx model needs onnxruntime, which is not installed: pip install "dsxsd[serve]"'
        ) from None
    if not path.is_file():
        raise ModelFileError("not a file", file=path)
    options = onnxruntime.SessionOptions()
    # Errors only: onnxruntime warns that the optional inputs of the table above are not
    # constants, which is what they are meant to be.
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own kinds (InvalidProtobuf, Fail, ...)
        raise ModelFileError(f"onnxruntime cannot load it: {first_line(exc)}", file=path) from None
    info = ExportInfo.from_properties(session.get_modelmeta().custom_metadata_map, path)
    inputs = {i.name: list(i.shape[1:]) for i in (*session.get_inputs(), *session.get_overridable_initializers())}
    outputs = {o.name for o in session.get_outputs()}
    needed_inputs = {IMAGE_INPUT, *FEATURE_INPUTS, *PRIMARY[info.part][0]}
    missing = sorted((needed_inputs - inputs.keys()) | ({FEATURES_OUTPUT, HEAD_OUTPUT} - outputs))
    if missing:
        raise ModelFileError(f"a dsxsd export without {', '.join(missing)}: export it again", file=path)
    size, dim = info.image_size, info.feature_dim
    if inputs[IMAGE_INPUT] != [size, size, 3] or any(inputs[name] != [dim] for name in FEATURE_INPUTS):
        raise ModelFileError(
            f"its metadata says {size}x{size} images and {dim} features, its graph takes "
            f"{inputs[IMAGE_INPUT]} and {inputs[FEATURE_INPUTS[0]]}: export it again",
            file=path,
        )
    return session, info


class OnnxScorer(Scorer):
    """An exported ``.onnx`` run by onnxruntime, images read with simplejpeg and Pillow:
    no TensorFlow.

    >>> scorer = OnnxScorer.from_file("export/siamese.onnx")   # doctest: +SKIP
    >>> scorer.info.threshold                                  # doctest: +SKIP
    0.62
    """

    def __init__(self, session: Any, info: ExportInfo, path: Path) -> None:
        self.session = session
        self.info = info
        self.path = path
        self.image_size = info.image_size
        self.resize = info.resize
        self.feature_dim = info.feature_dim
        # A threshold dsxsd evaluate calibrated on this very file wins over the one the
        # export carries from its run.
        measured = read_threshold(path.parent, path)
        self.threshold = info.threshold if measured is None else measured
        self.threshold_source = "export" if measured is None else "metrics.json"
        # The part's required inputs are fed an empty batch when dsxsd runs another graph.
        self._empty = {
            i.name: np.zeros((0, *[d if isinstance(d, int) else 1 for d in i.shape[1:]]), np.float32)
            for i in session.get_inputs()
        }

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> OnnxScorer:
        path = require_path(path)
        session, info = _onnx_session(path)
        return cls(session, info, path)

    def _run(self, output: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return self.session.run([output], {**self._empty, **feed})[0]
        except Exception as exc:  # onnxruntime's own kinds (InvalidArgument, Fail, ...)
            raise ModelFileError(f"onnxruntime failed: {first_line(exc)}", file=self.path) from None

    def embed_batch(self, paths: list[str]) -> np.ndarray:
        return self._run(FEATURES_OUTPUT, {IMAGE_INPUT: model_inputs(paths, self.image_size, self.resize)})

    def score_batch(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return self._run(HEAD_OUTPUT, dict(zip(FEATURE_INPUTS, (left, right))))


__all__ = [
    "EXPORT_FORMAT",
    "ExportInfo",
    "OnnxScorer",
    "info_file",
    "read_info",
]
