"""The JSON Schemas of the files dsxsd writes, loaded from the package or the source tree."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

_SOURCE_TREE = Path(__file__).resolve().parent.parent / "schemas"


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """``load_schema("annotations")`` -> the parsed ``annotations.schema.json``."""
    filename = f"{name}.schema.json"
    try:
        text = resources.files("dsxsd.schemas").joinpath(filename).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        text = (_SOURCE_TREE / filename).read_text("utf-8")
    return json.loads(text)


__all__ = ["load_schema"]
