"""The wheel: it builds with the build backend's warnings as errors, so a deprecation in
pyproject.toml fails here rather than scrolling past in every ``pip install .``; it
carries the license; its extras never install a second TensorFlow distribution."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What building the wheel reads. Built from a copy so that build/ and dsxsd.egg-info never
# land in the checkout; a file the build comes to need and this list lacks fails the test.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "dsxsd", "schemas")

# setuptools' PEP 517 backend, called as pip calls it, without build isolation: no network.
BUILD = "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel's file names, METADATA lines and license text, built once."""
    tmp_path = tmp_path_factory.mktemp("wheel")
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
    (built,) = dist.glob("dsxsd-*.whl")
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        (info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        metadata = archive.read(f"{info}/METADATA").decode("utf-8").splitlines()
        license_text = archive.read(f"{info}/licenses/LICENSE")
    return names, metadata, license_text


def test_the_wheel_builds_without_warnings_and_carries_the_mit_license(wheel):
    names, metadata, license_text = wheel
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert not any(line.startswith("License:") for line in metadata)  # the deprecated field
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert "dsxsd/schemas/crops.schema.json" in names


# Distributions that install the tensorflow package (two at once overwrite each other).
TENSORFLOW_LIKE = ("tensorflow", "tf-nightly", "intel-tensorflow")
PLATFORMS = {
    "linux x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
    "linux aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"},
    "macOS arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
}


def requirements(metadata, extra, platform):
    """The requirements ``pip install "dsxsd[extra]"`` installs on ``platform``, by name."""
    from packaging.requirements import Requirement

    found = {}
    for line in metadata:
        if line.startswith("Requires-Dist: "):
            requirement = Requirement(line[len("Requires-Dist: "):])
            environment = {**PLATFORMS[platform], "extra": extra}
            if requirement.marker is None or requirement.marker.evaluate(environment):
                found.setdefault(requirement.name, []).append(requirement)
    return found


def tensorflows(found):
    return [r for name, rs in found.items() for r in rs if name.startswith(TENSORFLOW_LIKE)]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_every_extra_names_the_one_tensorflow_distribution(wheel, platform):
    """No extra installs a second TensorFlow beside an installed one: they all name
    ``tensorflow`` (the full wheel, which a GPU machine already has), never
    ``tensorflow-cpu`` or ``tf-nightly``; ``gpu`` adds its CUDA libraries on Linux."""
    _, metadata, _ = wheel
    assert tensorflows(requirements(metadata, "", platform)) == []  # the core install has none
    for extra in ("train", "gpu"):
        found = requirements(metadata, extra, platform)
        (tensorflow,) = tensorflows(found)  # exactly one, whatever the platform
        assert tensorflow.name == "tensorflow", (extra, str(tensorflow))
        assert tensorflow.specifier.contains("2.21.0") and not tensorflow.specifier.contains("3.0")
        assert "matplotlib" in found  # curves.png and evaluate's plots
        cuda = extra == "gpu" and platform.startswith("linux")
        assert tensorflow.extras == ({"and-cuda"} if cuda else set()), (extra, str(tensorflow))
    for extra in ("plot", "test"):
        assert tensorflows(requirements(metadata, extra, platform)) == []
