"""``--backbone-weights imagenet``: Keras' VGG16 weights through Keras' own loader and
cache, only when asked, at width 1.0 only; offline, one line saying what to do.

Nothing here reaches the network: Keras' download function is replaced by one that fails
as an offline machine does, and the weights are a generated file of VGG16's shapes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import urllib.error

import pytest
from click.testing import CliRunner

from dsxsd.cli import main


@pytest.mark.tf  # installed, so that the check is what stops the command; never imported
def test_imagenet_at_another_width_is_a_usage_error_before_tensorflow_loads(tmp_path):
    (tmp_path / "pairs.csv").write_text("left,right,label\n", encoding="utf-8")
    script = textwrap.dedent(
        """
        import sys
        from click.testing import CliRunner
        from dsxsd.cli import main
        result = CliRunner().invoke(main, ["train", sys.argv[1], "--out", sys.argv[2], "--width", "0.25",
                                           "--backbone-weights", "imagenet"])
        print(result.exit_code)
        print(result.stderr, end="")
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pairs.csv"), str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2",
        "error: --backbone-weights imagenet needs --width 1.0, not 0.25: Keras' ImageNet VGG16 weights "
        "exist at full width only",
        "[]",
    ]
    assert not (tmp_path / "run").exists()


def test_a_missing_local_weights_file_is_still_a_usage_error(tmp_path):
    (tmp_path / "pairs.csv").write_text("left,right,label\n", encoding="utf-8")
    missing = tmp_path / "imagenet.h5"
    result = CliRunner().invoke(
        main, ["train", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "run"), "--backbone-weights", str(missing)]
    )
    assert result.exit_code == 2
    assert result.stderr == f"error: {missing}: no such file or folder\n"


# --------------------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A VGG16 no-top weights file in the layout of Keras' download (one group per layer,
    ``/<layer>/<layer>/kernel:0``), random weights of the real full-width shapes, and the
    model they came from."""
    pytest.importorskip("tensorflow")
    import keras

    from train_support import write_legacy_vgg16_weights

    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return write_legacy_vgg16_weights(path, vgg), vgg


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Keras' home in a fresh folder (its cache empty) and a network that fails as an
    offline machine's does; returns the download attempts made."""
    pytest.importorskip("tensorflow")
    import keras.src.backend.config
    import keras.src.utils.file_utils

    home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(home))
    attempts = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.src.utils.file_utils, "urlretrieve", no_network)
    return attempts


@pytest.mark.tf
def test_the_file_name_origin_and_hash_are_keras_own():
    pytest.importorskip("tensorflow")
    import inspect

    import keras.src.applications.vgg16 as keras_vgg16

    from dsxsd.train import network

    assert network.IMAGENET_WEIGHTS_URL == keras_vgg16.WEIGHTS_PATH_NO_TOP
    assert network.IMAGENET_WEIGHTS_URL.endswith("/" + network.IMAGENET_WEIGHTS_FILE)
    source = inspect.getsource(keras_vgg16.VGG16)
    assert f'"{network.IMAGENET_WEIGHTS_FILE}"' in source
    assert f'file_hash="{network.IMAGENET_WEIGHTS_HASH}"' in source


@pytest.mark.tf
def test_imagenet_loads_the_file_keras_get_file_gives_at_any_image_size(monkeypatch, vgg16_file):
    import keras
    import numpy as np

    from dsxsd.train import build_model, network

    path, vgg = vgg16_file
    calls = []

    def get_file(*args, **kwargs):
        calls.append((args, kwargs))
        return str(path)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    tower = build_model(image_size=48, backbone_weights="imagenet").get_layer("tower")
    assert calls == [(
        ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", network.IMAGENET_WEIGHTS_URL),
        {"cache_subdir": "models", "file_hash": "6d6bbae143d832006294945121d1f1fc"},
    )]
    for name in ("block1_conv1", "block5_conv3"):
        for got, expected in zip(tower.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, expected)
    assert tower.get_layer("preprocess").mode == "caffe"
    assert tower.output.shape[-1] == 512  # 48 -> 1 after five poolings: the weights fit any size


@pytest.mark.tf
def test_imagenet_is_refused_at_another_width_by_the_api_too(tmp_path):
    pytest.importorskip("tensorflow")
    from dsxsd.errors import UsageError
    from dsxsd.train import build_model, fit

    with pytest.raises(UsageError, match=r"needs --width 1.0, not 0.125"):
        build_model(image_size=32, width=0.125, backbone_weights="imagenet")
    with pytest.raises(UsageError, match=r"needs --width 1.0, not 0.5"):
        fit(tmp_path / "absent.csv", tmp_path / "run", width=0.5, backbone_weights="imagenet")
    assert not (tmp_path / "run").exists()


@pytest.mark.tf
def test_offline_one_line_says_what_to_download_and_where_and_the_file_put_there_trains_and_resumes(
    tmp_path, monkeypatch, offline, vgg16_file
):
    from dsxsd.train import network
    from train_support import make_shapes_manifest

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    run = tmp_path / "run"
    args = ["train", str(manifest), "--out", str(run), "--backbone-weights", "imagenet", "--image-size", "32",
            "--batch-size", "4", "--steps-per-epoch", "1", "--json"]
    cached = tmp_path / "keras-home" / "models" / network.IMAGENET_WEIGHTS_FILE

    result = CliRunner().invoke(main, [*args, "--epochs", "1"])
    # A data error, not a usage one: the command is right, and runs as it is once online.
    assert result.exit_code == 1, result.output
    assert result.stdout == ""  # Keras' "Downloading data from ..." went to stderr, not into --json's stdout
    assert result.stderr.splitlines()[-1] == (
        f"error: {network.IMAGENET_WEIGHTS_FILE}: not in Keras' cache and the download failed "
        f"([Errno -3] Temporary failure in name resolution): download {network.IMAGENET_WEIGHTS_URL} to "
        f"{cached}, or give a local copy: --backbone-weights path/to/file.h5"
    )
    assert "Traceback" not in result.output
    assert offline == [network.IMAGENET_WEIGHTS_URL]
    assert not run.exists()

    # Put where the line says, the file is used from Keras' cache, with no download.
    path, _ = vgg16_file
    cached.write_bytes(path.read_bytes())
    monkeypatch.setattr(network, "IMAGENET_WEIGHTS_HASH", hashlib.md5(path.read_bytes()).hexdigest())
    first = CliRunner().invoke(main, [*args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["epochs"] == 1
    assert offline == [network.IMAGENET_WEIGHTS_URL]  # still the one failed attempt
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["backbone_weights"] == "imagenet"
    assert config["backbone_weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert config["preprocessing"] == "caffe" and config["width"] == 1.0

    again = CliRunner().invoke(main, [*args, "--epochs", "2"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["resumed"] and summary["initial_epoch"] == 1 and summary["epochs"] == 2
    assert offline == [network.IMAGENET_WEIGHTS_URL]
