"""dsxsd: from object annotations to a trained image-similarity model.

The public API. Importing it is fast and never imports TensorFlow (nor pandas): the
functions below load their modules on first use. Training lives in :mod:`dsxsd.train`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    DsxsdError,
    ErrorPolicy,
    HostileInputError,
    InvalidAnnotationError,
    InvalidValueError,
    MalformedFileError,
    ManifestError,
    MissingDependencyError,
    MissingFieldError,
    MissingImageError,
    MissingPathError,
    ModelFileError,
    OutputExistsError,
    OutputWriteError,
    RunInUseError,
    RunSaveError,
    SettingError,
    SettingWarning,
    UnknownFormatError,
    UsageError,
    WorkerProcessError,
)
from .formats import format_names, get_format, guess_format, read, write
from .annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation, SkippedFile

__version__ = "0.1.0"

# name -> module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "convert": "dsxsd.conversion",
    "ConvertReport": "dsxsd.conversion",
    "crop": "dsxsd.crops",
    "CropReport": "dsxsd.crops",
    "make_pairs": "dsxsd.pairs",
    "read_pairs": "dsxsd.pairs",
    "validate": "dsxsd.validation",
    "Problem": "dsxsd.validation",
    "list_images": "dsxsd.listing",
    "dataset_stats": "dsxsd.statistics",
    "draw": "dsxsd.drawing",
    # Using a model: TensorFlow loads only for a .keras model, never for an .onnx.
    "Scorer": "dsxsd.inference",
    # Searching: faiss loads with an approximate index, TensorFlow with a .keras model.
    "embed": "dsxsd.inference",
    "search": "dsxsd.inference",
    "Hit": "dsxsd.inference",
    "ExportInfo": "dsxsd.serve",
    # Exporting a model runs TensorFlow's converters: TensorFlow loads on first use.
    "export": "dsxsd.train.exporting",
}

if TYPE_CHECKING:
    from .conversion import ConvertReport, convert
    from .crops import CropReport, crop
    from .drawing import draw
    from .inference import Hit, Scorer, embed, search
    from .serve import ExportInfo
    from .train.exporting import export
    from .listing import list_images
    from .pairs import make_pairs, read_pairs
    from .statistics import dataset_stats
    from .validation import Problem, validate


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dsxsd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AnnotationSet",
    "BBox",
    "ConvertReport",
    "CropReport",
    "DsxsdError",
    "ErrorPolicy",
    "ExportInfo",
    "Hit",
    "HostileInputError",
    "ImageAnnotation",
    "InvalidAnnotationError",
    "InvalidValueError",
    "MalformedFileError",
    "ManifestError",
    "MissingDependencyError",
    "MissingFieldError",
    "MissingImageError",
    "MissingPathError",
    "ModelFileError",
    "ObjectAnnotation",
    "OutputExistsError",
    "OutputWriteError",
    "Problem",
    "RunInUseError",
    "RunSaveError",
    "Scorer",
    "SettingError",
    "SettingWarning",
    "SkippedFile",
    "UnknownFormatError",
    "UsageError",
    "WorkerProcessError",
    "convert",
    "crop",
    "dataset_stats",
    "draw",
    "embed",
    "export",
    "format_names",
    "get_format",
    "guess_format",
    "list_images",
    "make_pairs",
    "read",
    "read_pairs",
    "search",
    "validate",
    "write",
]
