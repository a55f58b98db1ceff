"""The wheel: it builds with the build backend's warnings as errors, so a deprecation in
pyproject.toml fails here rather than scrolling past in every ``pip install .``, and it
carries the license."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What building the wheel reads. Built from a copy so that build/ and dsxsd.egg-info never
# land in the checkout; a file the build comes to need and this list lacks fails the test.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "dsxsd", "schemas")

# setuptools' PEP 517 backend, called as pip calls it, without build isolation: no network.
BUILD = "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])"


def test_the_wheel_builds_without_warnings_and_carries_the_mit_license(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", BUILD, str(dist)],
        cwd=source,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (wheel,) = dist.glob("dsxsd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        metadata = archive.read(f"{info}/METADATA").decode("utf-8").splitlines()
        license_text = archive.read(f"{info}/licenses/LICENSE")
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert not any(line.startswith("License:") for line in metadata)  # the deprecated field
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert "dsxsd/schemas/crops.schema.json" in names
