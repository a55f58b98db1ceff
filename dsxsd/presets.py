"""Named training recipes: ``dsxsd train --preset NAME`` and ``fit(preset=NAME)``.

A preset fills in every training setting the caller did not give; a setting given
explicitly always wins. ``reference`` is the reference network and recipe (the defaults
of ``dsxsd train``). ``cpu`` is what a laptop should run on a small real dataset (a few
hundred to a few thousand images per class): a CPU-sized tower, a learning rate for
training from scratch, and fresh partners for the training images every epoch, which is
what stops a small dataset being memorised. Its values were chosen by measurement
(``benchmarks/bench_quality.py``; the figures are in ``benchmarks/README.md``).

Nothing here needs TensorFlow: the command line resolves a preset before it loads.

>>> resolve("cpu", {"width": 0.25})["width"], resolve("cpu", {})["lr"]
(0.25, 0.001)
>>> resolve(None, {})["width"]
1.0
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import UsageError

# The settings a preset may fill, with the reference recipe's values. ``lr`` None is
# the optimizer's own default (1e-4 for adam, 1e-2 for sgd).
REFERENCE: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 32,
    "lr": None,
    "width": 1.0,
    "image_size": 105,
    "augment": "none",
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "resample_negatives": False,
    "resample_positives": False,
}

PRESETS: dict[str, dict[str, Any]] = {
    "reference": {},
    "cpu": {
        "epochs": 10,
        "width": 0.125,
        "image_size": 64,
        "lr": 1e-3,
        "resample_negatives": True,
        "resample_positives": True,
    },
}


def resolve(preset: str | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every preset-able setting: ``given``'s where not ``None``, else the preset's, else
    the reference's. ``preset`` ``None`` is ``reference``."""
    name = preset or "reference"
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    unknown = set(given) - set(REFERENCE)
    if unknown:
        raise ValueError(f"not preset settings: {', '.join(sorted(unknown))}")
    return {
        key: given[key] if given.get(key) is not None else PRESETS[name].get(key, default)
        for key, default in REFERENCE.items()
    }


def describe(preset: str) -> str:
    """One line of what ``preset`` sets, for the start of a run."""
    words = {True: "on", False: "off"}
    settings = ", ".join(
        f"{key.replace('_', ' ')} {words.get(value, value) if isinstance(value, bool) else value}"
        for key, value in PRESETS[preset].items()
    )
    return f"preset {preset}: {settings or 'the reference recipe'} (options given explicitly win)"


__all__ = ["PRESETS", "REFERENCE", "describe", "resolve"]
