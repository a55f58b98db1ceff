"""What ``fit`` and ``dsxsd info`` train with (dsxsd.environment.plan_training): auto
choices and their reasons, on this CPU and on GPUs faked through ``environment.devices``;
settings that cannot work here are one warning line and a fallback, never a traceback;
XLA on and off train alike; mirrored over two logical CPU devices trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from dsxsd import environment  # noqa: E402
from dsxsd.cli import main  # noqa: E402
from dsxsd.errors import UsageError  # noqa: E402
from dsxsd.train import fit  # noqa: E402
from train_support import IMAGE_SIZE, WIDTH, make_shapes_manifest  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_shapes_manifest(tmp_path_factory.mktemp("tiny"), per_class=8, positives=1)


@pytest.fixture
def cpu_only(monkeypatch, tmp_path):
    """No TF_CONFIG, no nvidia-smi, no NVIDIA driver, whatever runs the tests."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(environment, "NVIDIA_PROC", tmp_path / "no-driver")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def gpus(monkeypatch, count):
    """``count`` H100s, as ``environment.devices`` would list them under TensorFlow."""
    listed = [environment.Device("GPU", f"/device:GPU:{i}", "NVIDIA H100 80GB HBM3", "9.0") for i in range(count)]
    monkeypatch.setattr(environment, "devices", lambda backend=None: [*listed, environment.Device("CPU", "/device:CPU:0")])


def test_auto_on_this_cpu_is_one_device_float32_without_xla(cpu_only):
    plan = environment.plan_training()
    assert (plan.backend, plan.strategy, plan.precision, plan.jit, plan.devices) == ("tensorflow", "default", "float32", False, ())
    assert plan.warnings == ()
    assert set(plan.reasons) == {"strategy", "precision", "jit"}
    assert environment.plan_training(jit="on").jit is True  # asked for, and XLA is here
    assert environment.plan_training(jit=False).reasons["jit"] == "as asked"


def test_auto_on_gpus(cpu_only, monkeypatch):
    gpus(monkeypatch, 1)
    plan = environment.plan_training()
    assert (plan.strategy, plan.precision, plan.jit) == ("default", "mixed_float16", True)
    assert plan.reasons["jit"].startswith("a GPU") and plan.warnings == ()
    gpus(monkeypatch, 2)
    plan = environment.plan_training()
    assert (plan.strategy, plan.devices, plan.precision) == ("mirrored", ("/device:GPU:0", "/device:GPU:1"), "mixed_float16")
    assert plan.jit is False and "mirrored" in plan.reasons["jit"]  # Keras' XLA step cannot mirror
    assert environment.plan_training(strategy="default").jit is True


def test_under_jax_one_device_trains_and_a_cluster_is_refused(cpu_only, monkeypatch):
    gpus(monkeypatch, 2)
    plan = environment.plan_training("mirrored", backend="jax")
    assert (plan.strategy, plan.devices, plan.jit) == ("default", (), True)
    assert plan.warnings == ("--strategy mirrored is TensorFlow's (tf.distribute); under Keras' jax backend "
                             "training runs on one device (--strategy default)",)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}}))
    with pytest.raises(UsageError, match="a TF_CONFIG cluster needs KERAS_BACKEND=tensorflow"):
        environment.plan_training(backend="jax")


def test_multiworker_comes_from_tf_config(cpu_only, monkeypatch):
    with pytest.raises(UsageError, match="TF_CONFIG"):
        environment.plan_training(strategy="multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}))
    plan = environment.plan_training()
    assert (plan.strategy, plan.jit) == ("multiworker", False) and plan.reasons["strategy"] == "TF_CONFIG lists 2 workers"
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UsageError, match="TF_CONFIG is not valid JSON"):
        environment.plan_training()
    with pytest.raises(UsageError, match="unknown jit 'fast'"):
        environment.plan_training(jit="fast")


NO_XLA = "--jit on: this TensorFlow is built without XLA: training without XLA (--jit off)"
BAD_SETTINGS = {
    "mirrored without GPUs": (dict(strategy="mirrored"), "strategy", "default",
                              "--strategy mirrored needs two or more GPUs and this machine has no GPU: "
                              "training on one device (--strategy default)"),
    "mixed_float16 on a CPU": (dict(precision="mixed_float16"), "precision", "float32",
                               "--precision mixed_float16 needs a GPU (a CPU emulates float16, several times "
                               "slower): training in float32"),
    "jit on without XLA": (dict(jit="on"), "jit", False, NO_XLA),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_setting_that_cannot_work_here_is_one_warning_and_a_fallback(cpu_only, monkeypatch, case):
    asked, key, fallback, warning = BAD_SETTINGS[case]
    monkeypatch.setattr(environment, "xla_available", lambda backend=None: False)
    plan = environment.plan_training(**asked)
    assert getattr(plan, key) == fallback
    assert plan.warnings == (warning,)


def test_jit_on_under_a_mirrored_strategy_is_one_warning(cpu_only, monkeypatch):
    gpus(monkeypatch, 2)
    plan = environment.plan_training(strategy="mirrored", jit="on")
    assert (plan.strategy, plan.jit) == ("mirrored", False)
    assert plan.warnings == ("--jit on: Keras cannot compile a mirrored train step with XLA: training without XLA (--jit off)",)


def test_train_warns_in_one_line_each_and_trains_with_what_works(cpu_only, monkeypatch, tiny, tmp_path):
    """Each setting that cannot work is one ``warning:`` line, and so is a GPU TensorFlow
    does not see (an nvidia-smi on PATH lists one); the run trains, exit 0."""
    monkeypatch.setattr(environment, "xla_available", lambda backend=None: False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text('#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 81559, 550.54.15"\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", str(tiny), "--out", str(out), "--width", str(WIDTH), "--image-size", str(IMAGE_SIZE),
        "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8",
        "--strategy", "mirrored", "--precision", "mixed_float16", "--jit", "on", "--json",
    ])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: this machine has a GPU (NVIDIA H100 80GB HBM3) but TensorFlow sees none")
    assert lines[0].endswith('pip install "dsxsd[gpu]"')
    assert lines[1:] == [f"warning: {BAD_SETTINGS[case][3]}" for case in
                         ("mirrored without GPUs", "mixed_float16 on a CPU", "jit on without XLA")]
    summary = json.loads(result.stdout)
    assert (summary["strategy"], summary["precision"], summary["jit"]) == ("default", "float32", False)
    config = json.loads((out / "config.json").read_text())
    assert (config["strategy"], config["precision"], config["jit"], config["replicas"]) == ("default", "float32", False, 1)


def test_multiworker_without_tf_config_is_a_usage_error(cpu_only, tiny, tmp_path):
    result = CliRunner().invoke(main, ["train", str(tiny), "--out", str(tmp_path / "run"), "--strategy", "multiworker"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --strategy multiworker needs TF_CONFIG") and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


class CompiledWith(keras.callbacks.Callback):
    """What Keras compiled the train step with (it turns XLA off for a model it cannot compile)."""

    def on_train_begin(self, logs=None):
        self.jit_compile = self.model.jit_compile


@pytest.mark.slow
def test_xla_on_and_off_train_to_the_same_losses(cpu_only, tiny, tmp_path):
    # One step, one batch size: each shape is one XLA compilation, the slow part on a CPU.
    losses = {}
    for jit in ("on", "off"):
        seen = CompiledWith()
        summary = fit(tiny, tmp_path / jit, epochs=1, steps_per_epoch=1, batch_size=16, lr=1e-2, width=WIDTH,
                      image_size=IMAGE_SIZE, verbose=0, jit=jit, callbacks=[seen])
        assert summary["jit"] is seen.jit_compile is (jit == "on")
        assert json.loads((tmp_path / jit / "config.json").read_text())["jit"] is (jit == "on")
        losses[jit] = pd.read_csv(tmp_path / jit / "history.csv")[["loss", "val_loss"]].to_numpy()
    assert abs(losses["off"][0, 1] - 0.6931) > 1e-3  # the step moved the weights (20x the tolerance below)
    assert losses["on"] == pytest.approx(losses["off"], rel=1e-4)


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    # Two logical CPU devices, configured before TensorFlow's runtime starts.
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dsxsd.train import fit
    summary = fit(sys.argv[1], sys.argv[2], epochs=1, steps_per_epoch=2, batch_size=8, lr=1e-2, width=0.125,
                  image_size=32, strategy="mirrored", verbose=0)
    print(json.dumps(summary))
    """
)


@pytest.mark.slow
def test_mirrored_over_two_logical_cpu_devices_trains(tiny, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, "-c", MIRRORED, str(tiny), str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SettingWarning" not in done.stderr  # two devices to mirror: nothing to fall back from
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["strategy"], summary["replicas"], summary["jit"]) == ("mirrored", 2, False)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history.loss.notna().all() and history.val_loss.notna().all()
    assert (tmp_path / "run" / "model.keras").is_file()
