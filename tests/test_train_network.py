"""The Siamese network: the reference architecture, scaling, VGG16 weights, saving."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from dsxsd.errors import MissingPathError, ModelFileError  # noqa: E402
from dsxsd.train import build_model, load_model, split_model  # noqa: E402
from dsxsd.train.network import HEAD_UNITS  # noqa: E402

VGG16_LAYERS = [
    "block1_conv1", "block1_conv2", "block1_pool",
    "block2_conv1", "block2_conv2", "block2_pool",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_pool",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool",
]  # fmt: skip


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.float32)


def test_reference_network_at_defaults():
    model = build_model()  # build only: nothing is trained
    assert model.count_params() == 17_075_009
    tower = model.get_layer("tower")
    assert [layer.name for layer in tower.layers] == ["image", "preprocess", *VGG16_LAYERS, "flatten"]
    assert tower.output.shape[-1] == 3 * 3 * 512 == 4608
    assert [l.name for l in model.layers[2:]] == ["tower", "l1_distance", "head_dense", "score"]
    convs = [l for l in tower.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert {(c.kernel_size, c.padding, c.activation.__name__) for c in convs} == {((3, 3), "same", "relu")}
    pools = [l for l in tower.layers if isinstance(l, keras.layers.MaxPooling2D)]
    assert {p.pool_size for p in pools} == {(2, 2)}
    assert model.get_layer("head_dense").units == HEAD_UNITS == 512
    assert model.get_layer("score").activation.__name__ == "sigmoid"
    assert [tuple(i.shape) for i in model.inputs] == [(None, 105, 105, 3)] * 2


def test_width_and_image_size_scale_the_tower():
    model = build_model(image_size=48, width=0.125)
    convs = [l for l in model.get_layer("tower").layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    assert model.get_layer("tower").output.shape[-1] == 1 * 1 * 64  # 48 -> 24 -> 12 -> 6 -> 3 -> 1
    with pytest.raises(ValueError, match="too small"):
        build_model(image_size=16, width=0.125)


def test_preprocessing_is_inside_the_model_and_takes_raw_pixels():
    model = build_model(image_size=32, width=0.125)
    x = images(4, 32)
    pre = model.get_layer("tower").get_layer("preprocess")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(pre(x)), x / 255.0, rtol=1e-6)
    # uint8 input gives the same scores as float32 input
    np.testing.assert_allclose(
        model.predict([x.astype(np.uint8), x[::-1].astype(np.uint8)], verbose=0),
        model.predict([x, x[::-1]], verbose=0),
        rtol=1e-5,
    )


def _vgg16(size: int):
    return keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))


def test_backbone_weights_from_a_keras3_weights_file(tmp_path):
    vgg = _vgg16(32)
    path = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    model = build_model(image_size=32, width=1.0, backbone_weights=path)
    tower = model.get_layer("tower")
    for name in ("block1_conv1", "block3_conv2", "block5_conv3"):
        np.testing.assert_array_equal(tower.get_layer(name).get_weights()[0], vgg.get_layer(name).get_weights()[0])
    # With VGG16 weights the tower uses VGG16's own preprocessing, so its features are
    # exactly VGG16's on preprocess_input'd images.
    x = images(3, 32)
    expected = vgg.predict(keras.applications.vgg16.preprocess_input(x.copy()), verbose=0).reshape(3, -1)
    np.testing.assert_allclose(tower.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_backbone_weights_from_a_legacy_h5_matched_by_layer_name(tmp_path):
    """The layout of keras.applications' download (vgg16_..._notop.h5): one group per
    layer, named after it, listed in the root's layer_names attribute."""
    pytest.importorskip("h5py")
    from train_support import write_legacy_vgg16_weights

    vgg = _vgg16(32)
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy_vgg16_weights(path, vgg, names_reversed=True)  # order must not matter
    tower = build_model(image_size=32, backbone_weights=path).get_layer("tower")
    np.testing.assert_array_equal(
        tower.get_layer("block4_conv1").get_weights()[0], vgg.get_layer("block4_conv1").get_weights()[0]
    )
    assert tower.get_layer("preprocess").mode == "caffe"


def test_backbone_weights_for_another_width_or_not_vgg_are_refused(tmp_path):
    path = tmp_path / "vgg.weights.h5"
    _vgg16(32).save_weights(path)
    with pytest.raises(ModelFileError, match=r"block1_conv1.*--width"):
        build_model(image_size=32, width=0.125, backbone_weights=path)
    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(other)
    with pytest.raises(ModelFileError, match="not a VGG16 weights file"):
        build_model(image_size=32, backbone_weights=other)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(ModelFileError, match="not an HDF5"):
        build_model(image_size=32, backbone_weights=garbage)
    with pytest.raises(MissingPathError, match="no such file or folder"):
        build_model(image_size=32, backbone_weights=tmp_path / "absent.h5")


def test_split_model_shares_weights_and_matches_the_full_model():
    model = build_model(image_size=32, width=0.125)
    tower, head = split_model(model)
    a, b = images(5, 32, 1), images(5, 32, 2)
    full = model.predict([a, b], verbose=0)
    np.testing.assert_allclose(head.predict([tower.predict(a, verbose=0), tower.predict(b, verbose=0)], verbose=0), full, rtol=1e-5)
    # shared, not copied: changing the model's head changes the split head
    score = model.get_layer("score")
    kernel, bias = score.get_weights()
    score.set_weights([kernel, bias + 3.0])
    features = tower.predict(a, verbose=0), tower.predict(b, verbose=0)
    np.testing.assert_allclose(head.predict(list(features), verbose=0), model.predict([a, b], verbose=0), rtol=1e-5)
    assert not np.allclose(model.predict([a, b], verbose=0), full)


def test_mixed_precision_keeps_the_sigmoid_and_preprocessing_in_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model(image_size=32, width=0.125)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("tower").get_layer("block1_conv1").compute_dtype == "float16"
    assert model.get_layer("tower").get_layer("preprocess").compute_dtype == "float32"
    assert model.get_layer("score").compute_dtype == "float32"
    assert model.predict([images(2, 32), images(2, 32, 1)], verbose=0).dtype == np.float32


def test_saved_model_loads_with_plain_keras_after_importing_dsxsd_train(tmp_path):
    model = build_model(image_size=32, width=0.125)
    path = tmp_path / "model.keras"
    model.save(path)
    x = images(3, 32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict([x, x[::-1]], verbose=0))
    # A fresh interpreter: without importing dsxsd.train Keras does not know the layers;
    # after it, keras.models.load_model needs no custom_objects.
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        try:
            keras.models.load_model({str(path)!r})
        except Exception:
            print("unknown-before-import")
        import dsxsd.train
        m = keras.models.load_model({str(path)!r})
        x = np.load({str(tmp_path / 'x.npy')!r})
        np.testing.assert_allclose(m.predict([x, x[::-1]], verbose=0), np.load({str(tmp_path / 'expected.npy')!r}), rtol=1e-6)
        print("loaded-ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["unknown-before-import", "loaded-ok"]


def test_load_model_refuses_missing_broken_and_foreign_files(tmp_path):
    with pytest.raises(MissingPathError, match="no such file or folder"):
        load_model(tmp_path / "absent.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match="cannot load this model file") as info:
        load_model(broken)
    assert "\n" not in str(info.value) and str(broken) in str(info.value)
    foreign = tmp_path / "foreign.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(foreign)
    with pytest.raises(ModelFileError, match="not a dsxsd Siamese model"):
        load_model(foreign)
    with pytest.raises(ModelFileError, match="not a dsxsd Siamese model"):
        split_model(keras.models.load_model(foreign))
    good = tmp_path / "run"
    good.mkdir()
    build_model(image_size=32, width=0.125).save(good / "model.keras")
    assert load_model(good).get_layer("tower") is not None  # a run folder works too


def test_the_network_module_uses_keras_only():
    """The model must run under any Keras backend: no TensorFlow inside it."""
    import ast
    import inspect

    from dsxsd.train import network

    tree = ast.parse(inspect.getsource(network))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "tensorflow" not in imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "tf" not in names
