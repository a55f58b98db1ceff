"""dsxsd export: every format and part loads back in its own runtime and gives Keras'
outputs; the export carries what a consumer needs; bad input is one line, nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main
from use_support import IMAGE_SIZE, make_run, workspace  # noqa: F401

pytestmark = pytest.mark.tf

THRESHOLD = 0.625


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def run(workspace, tmp_path) -> Path:
    """A finished run: model.keras, best.keras (another model, so that --model shows),
    config.json and a metrics.json with a calibrated threshold."""
    folder = tmp_path / "run"
    shutil.copytree(workspace.run, folder)
    make_run(tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / "model.keras", folder / "best.keras")
    (folder / "metrics.json").write_text(json.dumps({"threshold": THRESHOLD}), encoding="utf-8")
    return folder


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def keras_outputs(model_file: Path, a: np.ndarray, b: np.ndarray):
    """(scores [N, 1], features of a [N, D]) as Keras computes them."""
    from dsxsd.train.network import load_model, split_model

    model = load_model(model_file)
    tower, _ = split_model(model)
    return np.asarray(model([a, b])), np.asarray(tower(a))


# --------------------------------------------------------------------------- each format


def test_onnx_siamese_scores_equal_keras_and_carry_the_metadata(run, tmp_path):
    import onnxruntime

    out = tmp_path / "siamese.onnx"
    result = dsxsd.export(run, out)
    a, b = images(6, 0), images(6, 1)
    expected, _ = keras_outputs(run / "best.keras", a, b)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    # What a consumer sees: the pair in, the score first out.
    assert [i.name for i in session.get_inputs()] == ["left", "right"]
    assert session.get_outputs()[0].name == "score"
    scores = session.run(None, {"left": a, "right": b})[0]
    assert scores.shape == (6, 1)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert not np.allclose(expected, keras_outputs(run / "model.keras", a, b)[0], atol=1e-3)

    meta = session.get_modelmeta().custom_metadata_map
    config_digest = hashlib.sha256((run / "config.json").read_bytes()).hexdigest()
    assert meta["format"] == "dsxsd.export"
    assert meta["part"] == "siamese"
    assert meta["image_size"] == str(IMAGE_SIZE)
    assert meta["resize"] == "stretch"
    assert float(meta["threshold"]) == THRESHOLD
    assert meta["dsxsd_version"] == dsxsd.__version__
    assert meta["config_sha256"] == config_digest
    assert meta["source_model"] == "best.keras"
    assert "raw 0-255 RGB" in meta["input"]
    assert result.info == dsxsd.ExportInfo.from_properties(meta, out)
    assert result.info_path is None and sorted(p.name for p in tmp_path.iterdir()) == ["other", "run", "siamese.onnx"]


def test_onnx_tower_features_equal_keras(run, tmp_path):
    import onnxruntime

    out = tmp_path / "tower.onnx"
    dsxsd.export(run, out, part="tower", model="final")
    a = images(5, 2)
    _, expected = keras_outputs(run / "model.keras", a, a)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_outputs()[0].name == "features"
    features = session.run(None, {"image": a})[0]
    np.testing.assert_allclose(features, expected, atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert (meta["part"], meta["source_model"], int(meta["feature_dim"])) == ("tower", "model.keras", expected.shape[1])


@pytest.mark.parametrize("part", ["siamese", "tower"])
def test_saved_model_loads_back_with_tensorflow(run, tmp_path, part):
    import tensorflow as tf

    out = tmp_path / f"{part}_saved_model"
    result = dsxsd.export(run, out, format="saved_model", part=part)
    a, b = images(4, 3), images(4, 4)
    scores, features = keras_outputs(run / "best.keras", a, b)
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    if part == "siamese":
        got, expected = serve(left=a, right=b)["score"].numpy(), scores
    else:
        got, expected = serve(image=a)["features"].numpy(), features
    np.testing.assert_allclose(got, expected, atol=1e-5)
    beside = tmp_path / f"{part}_saved_model.json"
    assert result.info_path == beside
    info = json.loads(beside.read_text("utf-8"))
    assert (info["format"], info["part"], info["image_size"], info["threshold"]) == (
        "dsxsd.export", part, IMAGE_SIZE, THRESHOLD,
    )
    from dsxsd.serve import read_info

    assert read_info(out) == result.info


@pytest.mark.parametrize("part", ["siamese", "tower"])
def test_litert_runs_in_the_interpreter(run, tmp_path, part):
    import tensorflow as tf

    out = tmp_path / f"{part}.tflite"
    result = dsxsd.export(run, out, format="litert", part=part)
    a, b = images(3, 5), images(3, 6)
    scores, features = keras_outputs(run / "best.keras", a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that LiteRT moved
        interpreter = tf.lite.Interpreter(model_path=str(out))
    runner = interpreter.get_signature_runner()
    if part == "siamese":
        got, expected = runner(left=a, right=b)["score"], scores
    else:
        got, expected = runner(image=a)["features"], features
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert json.loads((tmp_path / f"{part}.tflite.json").read_text("utf-8"))["part"] == part
    assert result.info.threshold == THRESHOLD


def test_a_mixed_precision_model_exports_in_float32(tmp_path):
    import keras

    from dsxsd.train.exporting import float32_model
    from dsxsd.train.network import build_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = build_model(image_size=IMAGE_SIZE, width=0.125)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("tower").get_layer("block1_conv1").compute_dtype == "float16"
    copy = float32_model(mixed)
    assert {layer.compute_dtype for layer in copy.get_layer("tower").layers[1:]} == {"float32"}
    a, b = images(4, 7), images(4, 8)
    np.testing.assert_allclose(np.asarray(copy([a, b])), np.asarray(mixed([a, b])), atol=1e-2)
    run = tmp_path / "run"
    run.mkdir()
    mixed.save(run / "best.keras")
    out = tmp_path / "m.onnx"
    result = dsxsd.export(run, out)
    assert result.warnings == (f"no config.json beside {run / 'best.keras'}: the export assumes images were resized with stretch",)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"left": a, "right": b})[0], np.asarray(copy([a, b])), atol=1e-5)


def test_a_threshold_measured_on_the_other_model_is_not_carried(run, tmp_path):
    # metrics.json as `dsxsd evaluate run/` writes it: of model.keras, named by its sha256
    digest = hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    metrics = {"format": "dsxsd.metrics", "model": "model.keras", "model_sha256": digest, "threshold": THRESHOLD}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    result = invoke("export", run, "--out", tmp_path / "best.onnx")  # best.keras, by default
    assert result.exit_code == 0
    assert f"warning: {run / 'metrics.json'} holds the threshold of another model than best.keras, " in result.output
    assert dsxsd.serve.read_info(tmp_path / "best.onnx").threshold is None
    assert dsxsd.Scorer.load(run / "best.keras").threshold is None  # nor does predict use it
    assert dsxsd.Scorer.load(run).threshold == THRESHOLD
    result = invoke("export", run, "--model", "final", "--out", tmp_path / "final.onnx")
    assert result.exit_code == 0 and "warning" not in result.output
    assert dsxsd.serve.read_info(tmp_path / "final.onnx").threshold == THRESHOLD


# --------------------------------------------------------------------------- the command


def test_cli_export_summary_and_json(run, tmp_path):
    out = tmp_path / "s.onnx"
    result = invoke("export", run, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"exported {run / 'best.keras'} (siamese, {IMAGE_SIZE}x{IMAGE_SIZE} inputs, threshold "
        f"{THRESHOLD:.4f}) as onnx: wrote {out}\n"
    )
    result = invoke("export", run, "--format", "litert", "--part", "tower", "--out", tmp_path / "t.tflite", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["files"] == [str(tmp_path / "t.tflite"), str(tmp_path / "t.tflite.json")]
    assert (summary["format"], summary["part"], summary["info"]["threshold"]) == ("litert", "tower", THRESHOLD)
    assert summary["warnings"] == []


def test_overwrite_rules(run, tmp_path):
    out = tmp_path / "s.onnx"
    out.write_bytes(b"keep me")
    result = invoke("export", run, "--out", out)
    assert result.exit_code == 2
    assert result.output == f"error: {out}: already exists; pass --overwrite to replace it\n"
    assert out.read_bytes() == b"keep me"
    # beside a SavedModel, its JSON counts as the output too
    (tmp_path / "sm.json").write_text("{}")
    result = invoke("export", run, "--format", "saved_model", "--out", tmp_path / "sm")
    assert result.exit_code == 2 and "sm.json: already exists" in result.output
    assert not (tmp_path / "sm").exists()
    assert invoke("export", run, "--out", out, "--overwrite").exit_code == 0
    assert out.read_bytes()[:4] != b"keep"


@pytest.mark.parametrize(
    "setup, args, code, message",
    [
        (lambda run: shutil.rmtree(run) or run.mkdir(), [], 1, "{run}: no best.keras in this folder: not a trained run folder"),
        (lambda run: (run / "best.keras").unlink(), [], 1, "{run}: no best.keras in this folder (it has model.keras: --model final)"),
        (None, ["--format", "tflite"], 2, "'tflite' is not one of 'onnx', 'saved_model', 'litert'"),
        (None, ["--part", "head"], 2, "'head' is not one of 'siamese', 'tower'"),
        (None, ["--model", "last"], 2, "'last' is not one of 'best', 'final'"),
    ],
)
def test_bad_input_is_one_line(run, tmp_path, setup, args, code, message):
    if setup is not None:
        setup(run)
    out = tmp_path / "x.onnx"
    result = invoke("export", run, "--out", out, *args)
    assert result.exit_code == code
    assert message.format(run=run) in result.output
    assert len(result.output.strip().splitlines()) <= 2  # the error, and click's help hint
    assert not out.exists()


def test_an_onnx_export_must_be_named_onnx(run, tmp_path):
    result = invoke("export", run, "--out", tmp_path / "model.bin")
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'model.bin'}: an ONNX export's name must end in .onnx\n"


def test_api_refuses_unknown_format_and_part(run, tmp_path):
    with pytest.raises(dsxsd.UsageError, match="unknown export format 'coreml'"):
        dsxsd.export(run, tmp_path / "x.onnx", format="coreml")
    with pytest.raises(dsxsd.UsageError, match="unknown part 'head'"):
        dsxsd.export(run, tmp_path / "x.onnx", part="head")


def test_litert_without_its_converter_writes_nothing(run, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.delattr(tf.lite, "TFLiteConverter")
    out = tmp_path / "exports" / "s.tflite"
    out.parent.mkdir()
    result = invoke("export", run, "--format", "litert", "--out", out)
    assert result.exit_code == 2
    assert result.output == (
        "error: the LiteRT export needs TensorFlow's LiteRT converter (tf.lite.TFLiteConverter), "
        "which this TensorFlow does not have: install the full tensorflow wheel\n"
    )
    assert list(out.parent.iterdir()) == []  # no model, no JSON, no temporary


def test_a_failed_conversion_writes_nothing(run, tmp_path, monkeypatch):
    import tf2onnx

    def fail(*args, **kwargs):
        raise RuntimeError("unsupported op Foo\n  in node 12\n  (a page of details)")

    monkeypatch.setattr(tf2onnx.convert, "from_function", fail)
    out = tmp_path / "exports" / "s.onnx"
    out.parent.mkdir()
    result = invoke("export", run, "--out", out)
    assert result.exit_code == 1
    assert result.output == f"error: {run / 'best.keras'}: tf2onnx could not convert the model: unsupported op Foo\n"
    assert list(out.parent.iterdir()) == []


def test_export_help():
    result = invoke("export", "--help")
    assert result.exit_code == 0
    for word in ("--format", "--part", "--model", "saved_model", "litert", "tower"):
        assert word in result.output
