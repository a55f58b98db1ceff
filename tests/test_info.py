"""``dsxsd info``: what training would run on here and why, complete enough for a bug
report; a GPU TensorFlow does not see and two TensorFlow distributions are named with the
command that fixes them; it works without TensorFlow and under Keras' JAX backend."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd import environment
from dsxsd.cli import main

FAKE_NVIDIA_SMI = """#!/bin/sh
echo "NVIDIA H100 80GB HBM3, 81559, 550.54.15"
"""


@pytest.fixture
def no_gpu(monkeypatch, tmp_path):
    """This machine as CI has it, whatever the one running the tests has: no nvidia-smi
    on PATH, no NVIDIA driver."""
    monkeypatch.setattr(environment, "NVIDIA_PROC", tmp_path / "no-driver")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path, no_gpu):
    """An nvidia-smi on PATH that lists an H100, as on a GPU machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def info_json():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.tf
def test_info_json_on_this_cpu_machine(no_gpu):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    report = info_json()
    assert set(report) == {"dsxsd", "python", "platform", "environment", "tensorflow", "keras", "jax",
                           "gpu_driver", "onnxruntime", "plan", "xla", "warnings"}
    assert report["dsxsd"] == dsxsd.__version__
    assert report["python"]["version"] == platform.python_version()
    assert report["platform"]["machine"] == platform.machine() and report["platform"]["cpus"] == os.cpu_count()
    tensorflow = report["tensorflow"]
    assert tensorflow["installed"] and tensorflow["version"] == tf.__version__
    assert tensorflow["version"] in tensorflow["distributions"].values()  # tensorflow, or tensorflow-cpu here
    assert tensorflow["built_with_cuda"] == tf.test.is_built_with_cuda()
    assert tensorflow["build"]["is_cuda_build"] == tf.test.is_built_with_cuda()
    assert [d["kind"] for d in tensorflow["devices"]] == ["CPU"]
    assert report["keras"] == {"installed": True, "version": keras.__version__, "backend": "tensorflow", "error": None}
    assert report["gpu_driver"] == {"present": False, "nvidia_smi": False, "proc_driver_nvidia": False, "gpus": []}
    assert report["onnxruntime"]["installed"] is False or report["onnxruntime"]["providers"]
    plan = report["plan"]
    assert (plan["strategy"], plan["precision"], plan["jit"]) == ("default", "float32", False)
    assert plan["reasons"]["precision"].startswith("no GPU") and plan["reasons"]["jit"].startswith("no GPU")
    assert report["xla"] == {"available": True, "train_step": False, "tf_auto_clustering": None}
    assert report["warnings"] == []


@pytest.mark.tf
def test_info_says_what_train_would_pick_and_why(no_gpu):
    pytest.importorskip("tensorflow")
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert f"dsxsd        {dsxsd.__version__}" in result.output
    assert "train --strategy auto --precision auto --jit auto would use:" in result.output
    assert "  strategy   default: no GPU: one device, the CPU\n" in result.output
    assert "  precision  float32: no GPU" in result.output and "  jit        off: no GPU" in result.output
    assert "gpu driver   none\n" in result.output and "warning" not in result.output


@pytest.mark.tf
def test_a_gpu_tensorflow_does_not_see_is_named_with_the_install_line(fake_gpu):
    pytest.importorskip("tensorflow")
    report = info_json()
    assert report["gpu_driver"]["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "driver": "550.54.15"}]
    assert report["plan"]["strategy"] == "default"  # TensorFlow sees no GPU: it trains on the CPU
    (warning,) = report["warnings"]
    assert "has a GPU (NVIDIA H100 80GB HBM3) but TensorFlow sees none" in warning
    assert warning.endswith('pip install "dsxsd[gpu]"')
    text = CliRunner().invoke(main, ["info"]).output
    assert "gpu driver   NVIDIA H100 80GB HBM3 81559 MiB, driver 550.54.15" in text
    assert f"warning: {warning}\n" in text


@pytest.mark.tf
def test_two_tensorflow_distributions_are_named_with_the_command_that_fixes_them(no_gpu, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    (installed,) = environment.tensorflow_distributions()
    # A second distribution of the tensorflow package, as `pip install tf-nightly` leaves it.
    site = tmp_path / "site"
    info_dir = site / "tf_nightly-2.22.0.dev20260101.dist-info"
    info_dir.mkdir(parents=True)
    (info_dir / "METADATA").write_text("Metadata-Version: 2.1\nName: tf-nightly\nVersion: 2.22.0.dev20260101\n")
    (info_dir / "top_level.txt").write_text("tensorflow\n")
    monkeypatch.syspath_prepend(str(site))
    assert set(environment.tensorflow_distributions()) == {installed, "tf-nightly"}
    (warning,) = info_json()["warnings"]
    assert warning.startswith("2 TensorFlow distributions are installed (")
    assert "tf-nightly 2.22.0.dev20260101" in warning
    assert warning.endswith(f'pip uninstall -y {" ".join(sorted([installed, "tf-nightly"]))} && pip install "dsxsd[train]"')


def run_info(backend: str) -> tuple[dict, str]:
    """``dsxsd info --json`` and ``dsxsd info`` in one interpreter of their own (Keras
    fixes its backend at import), with ``import tensorflow`` failing as where it is not
    installed."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None
        from click.testing import CliRunner
        from dsxsd.cli import main
        SEPARATOR = "-- end of output --"
        for args in (["info", "--json"], ["info"]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0 and result.exception is None, result.output
            print(result.output + SEPARATOR, end="")
        """
    )
    env = {**os.environ, "PATH": "", "KERAS_BACKEND": backend}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    as_json, text, _ = done.stdout.split("-- end of output --")
    return json.loads(as_json), text


def test_without_tensorflow_info_says_it_is_absent_and_how_to_install_it():
    report, text = run_info("tensorflow")
    assert report["tensorflow"]["installed"] is False and report["tensorflow"]["install"] == 'pip install "dsxsd[train]"'
    assert report["keras"]["installed"] is False  # Keras 3 imports its backend, here the missing TensorFlow
    assert report["plan"] is None
    assert report["warnings"][0] == 'TensorFlow is not installed; dsxsd train needs it: pip install "dsxsd[train]"'
    assert 'tensorflow   not installed' in text and 'pip install "dsxsd[train]"' in text


@pytest.mark.tf  # needs JAX, which the full suite's environment has (not the core's)
def test_under_the_jax_backend_info_reports_jax_and_its_devices():
    """A GPU machine lent with JAX and no TensorFlow: info still plans the run."""
    jax = pytest.importorskip("jax", reason="the JAX backend needs jax installed")
    report, text = run_info("jax")
    assert report["keras"]["backend"] == "jax" and report["keras"]["installed"]
    assert report["jax"]["installed"] and report["jax"]["version"] == jax.__version__
    assert [d["name"] for d in report["jax"]["devices"]] == ["cpu:0"]
    plan = report["plan"]
    assert (plan["backend"], plan["strategy"], plan["precision"], plan["jit"]) == ("jax", "default", "float32", True)
    assert "tf.distribute" in plan["reasons"]["strategy"] and "JAX compiles" in plan["reasons"]["jit"]
    assert report["xla"]["available"] is True and report["xla"]["train_step"] is True
    assert report["tensorflow"]["installed"] is False
    assert f"jax          {jax.__version__}" in text and "  jit        on: JAX compiles" in text
