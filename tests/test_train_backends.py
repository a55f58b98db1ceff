"""The network is Keras 3 layers and keras.ops only, so a model saved under one Keras
backend loads and predicts the same under another, and ``dsxsd train`` trains under JAX
as under TensorFlow, fed by the same tf.data pipeline. Each backend runs in its own
interpreter: Keras fixes it at import."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from train_support import IMAGE_SIZE, WIDTH, make_shapes_manifest

pytestmark = pytest.mark.tf

SCRIPT = """
import sys
import numpy as np
import keras
from dsxsd.train import network

rng = np.random.default_rng(0)
left, right = (rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32") for _ in range(2))
mode, model_path, scores_path = sys.argv[1:4]
if mode == "save":
    model = network.build_model(image_size=32, width=0.125)
    model.save(model_path)
else:
    model = keras.models.load_model(model_path)
scores = keras.ops.convert_to_numpy(model.predict([left, right], verbose=0))
np.save(scores_path, np.asarray(scores, dtype="float32"))
print(keras.backend.backend())
"""


def _run(backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, args)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_model_saved_under_tensorflow_predicts_the_same_under_torch(tmp_path):
    pytest.importorskip("torch", reason="the torch backend check needs PyTorch (CI installs it)")
    model = tmp_path / "model.keras"
    assert _run("tensorflow", "save", model, tmp_path / "tf.npy") == "tensorflow"
    assert _run("torch", "load", model, tmp_path / "torch.npy") == "torch"
    tf_scores = np.load(tmp_path / "tf.npy")
    torch_scores = np.load(tmp_path / "torch.npy")
    assert tf_scores.shape == (4, 1)
    np.testing.assert_allclose(torch_scores, tf_scores, atol=1e-5)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_network_needs_no_tensorflow_under_another_backend(tmp_path, backend):
    """A GPU machine with JAX or PyTorch but no TensorFlow can build, load and run the
    network: only the data pipeline and training import TensorFlow."""
    pytest.importorskip(backend, reason=f"the {backend} backend check needs {backend} (CI installs it)")
    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # any import of it fails\n"
        "import numpy as np, keras\n"
        "import dsxsd.train as train\n"
        "model = train.build_model(image_size=32, width=0.125)\n"
        "x = np.zeros((2, 32, 32, 3), 'uint8')\n"
        "print(model.predict([x, x], verbose=0).shape)\n"
        "try:\n"
        "    train.make_dataset\n"
        "except ImportError:\n"
        "    print('the pipeline needs tensorflow')\n"
    )
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["(2,", "1)", "the", "pipeline", "needs", "tensorflow"]


def dsxsd_command(backend, *args):
    """``dsxsd ARGS`` as a user runs it, under KERAS_BACKEND=backend."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", "from dsxsd.cli import main; main()", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("backend", ["torch", "nonsense"])
def test_train_refuses_a_backend_it_does_not_train_under_in_one_line(tmp_path, backend):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("left,right,label,left_class,right_class,split\n")
    done = dsxsd_command(backend, "train", manifest, "--out", tmp_path / "run")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: training runs under Keras' tensorflow or jax backend, not {backend!r}: "
        "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax\n"
    )
    assert not (tmp_path / "run").exists()


# 28 training pairs; 2 steps of 4 pairs an epoch
SETTINGS = dict(epochs=2, batch_size=4, lr=1e-3, seed=3, steps_per_epoch=2, width=WIDTH, image_size=IMAGE_SIZE)
CLI_SETTINGS = [arg for key, value in SETTINGS.items() for arg in (f"--{key.replace('_', '-')}", str(value))]

# Under JAX: a run stopped by Ctrl-C in epoch 2 and resumed by the same dsxsd train
# command, a run of the same settings that nothing stopped, a refused TF_CONFIG cluster,
# and the scores of the resumed run's model and of a TensorFlow-trained one.
JAX_SCRIPT = """
import json, sys
from pathlib import Path
import keras, numpy as np
from click.testing import CliRunner
from dsxsd.cli import main
from dsxsd.train import fit, load_model

manifest, root, settings, cli_settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]

class CtrlCInEpoch2(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt

try:
    fit(manifest, root / "jax", **settings, verbose=0, callbacks=[CtrlCInEpoch2()])
except KeyboardInterrupt:
    pass
runner = CliRunner()
resumed = runner.invoke(main, ["train", manifest, "--out", str(root / "jax"), *cli_settings])
cluster = json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}})
mirrored = runner.invoke(main, ["train", manifest, "--out", str(root / "mirrored"), *cli_settings],
                         env={"TF_CONFIG": cluster})
fit(manifest, root / "whole", **settings, verbose=0)
inputs = np.load(root / "inputs.npz")
for name in ("jax", "tf"):
    scores = load_model(root / name / "model.keras").predict([inputs["left"], inputs["right"]], verbose=0)
    np.save(root / f"{name}-scores-under-jax.npy", keras.ops.convert_to_numpy(scores))
print(json.dumps({"resumed": [resumed.exit_code, resumed.output], "mirrored": [mirrored.exit_code, mirrored.stderr]}))
"""


@pytest.fixture(scope="module")
def under_jax(tmp_path_factory):
    """JAX_SCRIPT's runs and scores in a folder, beside a TensorFlow-trained run ``tf``
    and the ``inputs.npz`` scored; returns the folder and the script's results."""
    pytest.importorskip("jax", reason="the jax backend check needs JAX (CI installs it)")
    pytest.importorskip("tensorflow")
    from dsxsd.train import fit

    root = tmp_path_factory.mktemp("backends")
    manifest = make_shapes_manifest(root / "data", per_class=8, positives=1)
    rng = np.random.default_rng(0)
    np.savez(root / "inputs.npz", **{side: rng.uniform(0, 255, (4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
                                     for side in ("left", "right")})
    fit(manifest, root / "tf", **{**SETTINGS, "epochs": 1}, verbose=0)
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(manifest), str(root), json.dumps(SETTINGS),
                           *CLI_SETTINGS], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads(done.stdout.strip().splitlines()[-1])


def test_train_under_jax_writes_the_run_folder(under_jax):
    root, results = under_jax
    run = root / "jax"
    assert results["resumed"][0] == 0, results["resumed"][1]
    assert "trained 2 epochs (resumed after epoch 1)" in results["resumed"][1]
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "jax" and "jax" in config["versions"]
    assert config["strategy"] == "default" and config["replicas"] == 1
    assert pd.read_csv(run / "history.csv").epoch.tolist() == [1, 2]
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert {p.name for p in run.iterdir()} >= {"model.keras", "best.keras", "curves.png", "checkpoints", "logs"}
    assert all(list((run / "logs" / split).glob("events.out.tfevents.*")) for split in ("train", "validation"))


def test_a_run_resumed_under_jax_equals_an_uninterrupted_one(under_jax):
    from dsxsd.train import load_model

    root, _ = under_jax
    assert (root / "jax" / "history.csv").read_text() == (root / "whole" / "history.csv").read_text()
    for got, want in zip(load_model(root / "jax" / "model.keras").get_weights(),
                         load_model(root / "whole" / "model.keras").get_weights()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("trained_under", ["jax", "tf"])
def test_a_model_trained_under_one_backend_scores_the_same_under_the_other(under_jax, trained_under):
    from dsxsd.train import load_model

    root, _ = under_jax
    inputs = np.load(root / "inputs.npz")
    here = load_model(root / trained_under / "model.keras").predict([inputs["left"], inputs["right"]], verbose=0)
    assert here.shape == (4, 1)
    np.testing.assert_allclose(np.load(root / f"{trained_under}-scores-under-jax.npy"), here, atol=1e-5)


def test_a_cluster_under_jax_is_one_usage_error(under_jax):
    # Each machine would train alone into the same run folder. (--strategy mirrored under
    # JAX trains on one device with a warning: tests/test_train_plan.py.)
    root, results = under_jax
    assert results["mirrored"] == [2, "error: a TF_CONFIG cluster needs KERAS_BACKEND=tensorflow: under the jax "
                                      "backend dsxsd trains on one device (unset TF_CONFIG)\n"]
    assert not (root / "mirrored").exists()


def test_a_run_started_under_jax_resumes_under_tensorflow(under_jax, tmp_path):
    """Allowed, and config.json then names the backend of the last command: a checkpoint
    is a .keras file, which loads the same under either backend."""
    from dsxsd.train import fit

    root, _ = under_jax
    run = tmp_path / "run"
    shutil.copytree(root / "jax", run)
    more = fit(root / "data" / "pairs.csv", run, **{**SETTINGS, "epochs": 3}, verbose=0)
    assert more["initial_epoch"] == 2 and pd.read_csv(run / "history.csv").epoch.tolist() == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["backend"] == "tensorflow"
