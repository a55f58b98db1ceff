"""The network is Keras 3 layers and keras.ops only, so a model saved under TensorFlow
loads and predicts the same under another Keras backend (PyTorch here: JAX is not
installable in CI). Each backend runs in its own interpreter: Keras fixes it at import."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="the torch backend check needs PyTorch (CI installs it)")

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
    model = tmp_path / "model.keras"
    assert _run("tensorflow", "save", model, tmp_path / "tf.npy") == "tensorflow"
    assert _run("torch", "load", model, tmp_path / "torch.npy") == "torch"
    tf_scores = np.load(tmp_path / "tf.npy")
    torch_scores = np.load(tmp_path / "torch.npy")
    assert tf_scores.shape == (4, 1)
    np.testing.assert_allclose(torch_scores, tf_scores, atol=1e-5)


def test_the_network_needs_no_tensorflow_under_another_backend(tmp_path):
    """A GPU machine with JAX or PyTorch but no TensorFlow can build, load and run the
    network: only the data pipeline and training import TensorFlow."""
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
    env = dict(os.environ, KERAS_BACKEND="torch")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["(2,", "1)", "the", "pipeline", "needs", "tensorflow"]
