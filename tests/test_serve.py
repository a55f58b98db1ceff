"""predict, embed and search with an exported .onnx: without TensorFlow, and with the
verdicts of the Keras model it came from; bad input is one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main
from dsxsd.serve import ExportInfo
from use_support import workspace  # noqa: F401

REPOSITORY = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def a_png(folder: Path) -> Path:
    """A small valid image, for the tests whose model is what is wrong."""
    from PIL import Image

    path = folder / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    return path


# --------------------------------------------------------------------------- ExportInfo (no TensorFlow)


def info(**changes) -> dict:
    values = ExportInfo("siamese", 105, "stretch", 4608, 0.62, "0.1.0", "ab", "best.keras").as_dict()
    return {**values, **changes}


def test_export_info_round_trips_through_properties_and_json():
    original = ExportInfo("tower", 64, "letterbox", 512, None, "0.1.0", None, "model.keras")
    assert "threshold" not in original.as_properties()
    assert ExportInfo.from_properties(original.as_properties(), "m.onnx") == original
    assert ExportInfo.from_dict(json.loads(json.dumps(original.as_dict())), "m.json") == original


@pytest.mark.parametrize(
    "values, message",
    [
        ({"format": "something"}, "m.onnx: not a dsxsd export (no 'dsxsd.export' metadata): make one with dsxsd export"),
        (info(version=9), "m.onnx: export version 9 is newer than this dsxsd reads"),
        ({k: v for k, v in info().items() if k != "image_size"}, "m.onnx: dsxsd export metadata without 'image_size'"),
        (info(image_size="big"), "m.onnx: bad dsxsd export metadata: invalid literal for int() with base 10: 'big'"),
        (info(part="head"), "m.onnx: bad dsxsd export metadata: part must be one of ('siamese', 'tower'), got 'head'"),
        (info(threshold="2"), "m.onnx: bad dsxsd export metadata: threshold must be in [0, 1], got 2.0"),
    ],
)
def test_export_info_refuses_what_is_not_a_dsxsd_export(values, message):
    with pytest.raises(dsxsd.ModelFileError) as caught:
        ExportInfo.from_dict(values, "m.onnx")
    assert str(caught.value) == message


# --------------------------------------------------------------------------- exports of the shared run


_EXPORTS: dict[str, Path] = {}


@pytest.fixture()
def exported(workspace, tmp_path_factory) -> dict[str, Path]:
    """A tiny run trained on the shared pairs and evaluated (a calibrated threshold in
    metrics.json), exported as siamese.onnx and tower.onnx."""
    if not _EXPORTS:
        from dsxsd.train import fit
        from dsxsd.train.evaluate import evaluate

        folder = tmp_path_factory.mktemp("exports")
        run = folder / "run"
        # Enough epochs at a brisk rate that the scores spread (about 0.1 to 0.45 here), so a
        # decoding difference would show in them.
        fit(workspace.pairs, run, epochs=8, batch_size=8, lr=3e-3, width=0.125, image_size=32, verbose=0)
        evaluate(run / "best.keras", workspace.pairs, "test", plots=False)  # what export takes
        for part in ("siamese", "tower"):
            dsxsd.export(run, folder / f"{part}.onnx", part=part)
        threshold = json.loads((run / "metrics.json").read_text("utf-8"))["threshold"]
        _EXPORTS.update(run=run, siamese=folder / "siamese.onnx", tower=folder / "tower.onnx", threshold=threshold)
    return _EXPORTS


def without_tensorflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``dsxsd ARGS`` in a Python where importing TensorFlow, Keras or tf2onnx fails and
    leaves a mark, so a path that would import them fails and is seen to."""
    blocked = tmp_path / "blocked"
    marks = tmp_path / "imported.txt"
    for name in ("tensorflow", "keras", "tf2onnx"):
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(
            "import os\n"
            f"open(os.environ['DSXSD_TEST_MARKS'], 'a').write({name!r} + '\\n')\n"
            f"raise ImportError('{name} is blocked in this test')\n"
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(blocked), str(REPOSITORY)]),
        "DSXSD_TEST_MARKS": str(marks),
    }
    code = "import sys; from dsxsd.cli import main; sys.argv[0] = 'dsxsd'; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=300,
    )
    assert not marks.exists(), f"imported: {marks.read_text()}"
    return result


@pytest.mark.tf
def test_predict_embed_search_run_without_tensorflow(workspace, exported, tmp_path):
    from dsxsd import inference

    keras_scorer = dsxsd.Scorer.load(exported["run"] / "best.keras")
    a, b = workspace.images[0], workspace.images[9]
    result = without_tensorflow(tmp_path, "predict", exported["siamese"], a, b, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    prediction = json.loads(result.stdout)
    expected = inference.predict(keras_scorer, a, b)
    assert abs(prediction["score"] - expected.score) < 1e-3
    assert (prediction["threshold"], prediction["threshold_source"]) == (exported["threshold"], "export")

    index = tmp_path / "index.npz"
    result = without_tensorflow(tmp_path, "embed", exported["tower"], workspace.crops, "--out", index)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"embedded {len(workspace.images)} images of 4 classes")
    query = workspace.images[5]
    # The index names the tower export; search scores with its head, still without TensorFlow.
    result = without_tensorflow(tmp_path, "search", index, query, "-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    # Each hit carries the Keras model's score of that entry, best first; near-ties may
    # swap places (JPEG pixels differ by a level or so between the two decoders).
    keras_index = inference.embed(keras_scorer, workspace.crops, tmp_path / "k.npz")
    keras_scores = dict(zip(keras_index.paths, keras_scorer.score(keras_scorer.embed([query])[0], keras_index.features)))
    assert len(hits) == 4 and [h["rank"] for h in hits] == [1, 2, 3, 4]
    for hit in hits:
        assert abs(hit["score"] - keras_scores[hit["path"]]) < 1e-3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    fourth_best = sorted(keras_scores.values(), reverse=True)[3]
    assert hits[-1]["score"] >= fourth_best - 1e-3


@pytest.mark.tf
def test_pairs_scores_and_verdicts_agree_with_keras(workspace, exported, tmp_path):
    """The images come in several sizes and modes (RGB, L, RGBA, P; JPEG and PNG), so
    this measures Pillow's decoding and resizing against TensorFlow's in training."""
    for model, out in ((exported["run"] / "best.keras", tmp_path / "keras.csv"), (exported["siamese"], tmp_path / "onnx.csv")):
        result = invoke("predict", model, "--pairs", workspace.pairs, "--out", out)
        assert result.exit_code == 0, result.output
    with open(tmp_path / "keras.csv", encoding="utf-8") as k, open(tmp_path / "onnx.csv", encoding="utf-8") as o:
        keras_rows, onnx_rows = list(csv.DictReader(k)), list(csv.DictReader(o))
    assert len(keras_rows) == len(onnx_rows) == 48
    keras_scores = np.array([float(r["score"]) for r in keras_rows])
    onnx_scores = np.array([float(r["score"]) for r in onnx_rows])
    assert keras_scores.max() - keras_scores.min() > 0.1  # scores a pixel's difference would move
    assert np.abs(keras_scores - onnx_scores).max() < 1e-3
    threshold = exported["threshold"]
    assert [int(r["predicted"]) for r in keras_rows] == [int(s >= threshold) for s in keras_scores]
    agree = np.mean((keras_scores >= threshold) == (onnx_scores >= threshold))
    assert agree >= 0.995
    assert 0 < (onnx_scores >= threshold).sum() < len(onnx_scores)  # a threshold that decides


@pytest.mark.tf
def test_python_scorer_from_onnx(workspace, exported):
    from dsxsd.serve import OnnxScorer

    scorer = dsxsd.Scorer.from_onnx(exported["siamese"])
    assert isinstance(scorer, OnnxScorer) and isinstance(dsxsd.Scorer.load(exported["tower"]), OnnxScorer)
    assert (scorer.image_size, scorer.threshold, scorer.info.part) == (32, exported["threshold"], "siamese")
    features = scorer.embed(workspace.images[:3])
    assert features.shape == (3, scorer.feature_dim) and features.dtype == np.float32
    keras_scorer = dsxsd.Scorer.load(exported["run"] / "best.keras")
    np.testing.assert_allclose(features, keras_scorer.embed(workspace.images[:3]), rtol=1e-3, atol=1e-3)
    scores = scorer.score(features[0], features)
    np.testing.assert_allclose(scores, keras_scorer.score(features[0], features), atol=1e-5)
    assert scorer.embed([]).shape == (0, scorer.feature_dim)


# --------------------------------------------------------------------------- bad input


@pytest.mark.serve
def test_an_onnx_that_is_not_a_dsxsd_export(tmp_path):
    # An ONNX model of one Identity node, as onnx.helper makes it: valid, not dsxsd's.
    path = tmp_path / "plain.onnx"
    shutil.copy(REPOSITORY / "tests" / "data" / "identity.onnx", path)
    image = a_png(tmp_path)
    result = invoke("predict", path, image, image)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {path}: not a dsxsd export (no 'dsxsd.export' metadata): make one with dsxsd export\n"
    )


@pytest.mark.serve
def test_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    image = a_png(tmp_path)
    result = invoke("predict", path, image, image)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {path}: onnxruntime cannot load it: ")
    assert len(result.output.splitlines()) == 1


@pytest.mark.tf
def test_an_image_of_the_wrong_kind(workspace, exported, tmp_path):
    from PIL import Image

    tiff = tmp_path / "scan.tif"
    Image.new("RGB", (40, 40)).save(tiff)
    result = invoke("predict", exported["siamese"], workspace.images[0], tiff)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {tiff}: ")
    assert "TIFF" in result.output and len(result.output.splitlines()) == 1


def test_without_onnxruntime_the_install_line_is_given(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    image = a_png(tmp_path)
    result = invoke("predict", model, image, image)
    assert result.exit_code == 2
    assert result.output == (
        'error: running an .onnx model needs onnxruntime, which is not installed: pip install "dsxsd[serve]"\n'
    )


@pytest.mark.tf
def test_the_readmes_onnxruntime_example_scores_as_dsxsd_does(workspace, exported, tmp_path, monkeypatch):
    """The example a user pastes into a service (README, Serve) runs as written on an
    export and agrees with dsxsd predict on the same images."""
    from dsxsd import inference

    readme = (REPOSITORY / "README.md").read_text("utf-8")
    serve = readme[readme.index("## Serve") :]
    code = serve[serve.index("```python") + len("```python") : serve.index("```", serve.index("```python") + 3)]
    shutil.copy(exported["siamese"], tmp_path / "siamese.onnx")
    shutil.copy(workspace.images[0], tmp_path / "a.jpg")
    shutil.copy(workspace.images[1], tmp_path / "b.jpg")
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    expected = inference.predict(exported["siamese"], "a.jpg", "b.jpg")
    assert abs(names["score"] - expected.score) < 1e-2
    assert names["same"] == expected.same


@pytest.mark.tf
def test_evaluate_measures_an_export_as_its_run(workspace, exported, tmp_path):
    result = invoke("evaluate", exported["siamese"], workspace.pairs, "--out", tmp_path, "--no-plots", "--json")
    assert result.exit_code == 0, result.output
    onnx_metrics = json.loads(result.output)
    run_metrics = json.loads((exported["run"] / "metrics.json").read_text("utf-8"))
    # The same scores within 1e-3 give the same ranking and the same decisions at 0.5; the
    # calibrated threshold may land elsewhere on a plateau of equal val accuracy.
    keras_test = run_metrics["pairs"][0]
    assert onnx_metrics["roc_auc"] == pytest.approx(keras_test["roc_auc"], abs=1e-9)
    assert onnx_metrics["at_0.5"] == keras_test["at_0.5"]
    assert json.loads((tmp_path / "metrics.json").read_text("utf-8"))["model"].endswith("siamese.onnx")


@pytest.mark.tf
def test_a_threshold_calibrated_on_the_onnx_itself_wins(workspace, exported, tmp_path):
    model = tmp_path / "siamese.onnx"
    shutil.copy(exported["siamese"], model)
    assert invoke("evaluate", model, workspace.pairs, "--no-plots").exit_code == 0
    calibrated = json.loads((tmp_path / "metrics.json").read_text("utf-8"))["threshold"]
    result = invoke("predict", model, workspace.images[0], workspace.images[1], "--json")
    prediction = json.loads(result.output)
    assert (prediction["threshold"], prediction["threshold_source"]) == (calibrated, "metrics.json")


@pytest.mark.tf
def test_a_letterbox_run_is_served_as_it_was_trained(workspace, tmp_path):
    """The export says how images were resized, and the .onnx path resizes so: a run's
    letterbox (the images here are not square) gives the Keras model's features."""
    run = tmp_path / "run"
    shutil.copytree(workspace.run, run)
    config = json.loads((run / "config.json").read_text("utf-8"))
    (run / "config.json").write_text(json.dumps({**config, "resize": "letterbox"}), encoding="utf-8")
    dsxsd.export(run, tmp_path / "m.onnx", model="final")
    onnx_scorer, keras_scorer = dsxsd.Scorer.load(tmp_path / "m.onnx"), dsxsd.Scorer.load(run)
    assert onnx_scorer.resize == keras_scorer.resize == "letterbox"
    images = workspace.images[:8]
    np.testing.assert_allclose(onnx_scorer.embed(images), keras_scorer.embed(images), rtol=1e-4, atol=1e-4)


@pytest.mark.tf
def test_an_index_of_one_form_is_searched_with_the_other(workspace, exported, tmp_path):
    from dsxsd import inference

    keras_index = inference.embed(exported["run"] / "best.keras", workspace.crops, tmp_path / "k.npz")
    query = workspace.images[3]
    hits = inference.search(keras_index, query, k=3, model=exported["siamese"])
    expected = inference.search(keras_index, query, k=3)
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-3)
    onnx_index = inference.embed(exported["tower"], workspace.crops, tmp_path / "o.npz")
    hits = inference.search(onnx_index, query, k=3, model=exported["run"] / "best.keras")
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-3)
    # an .onnx of a model with another feature size is refused, as a .keras one is
    wide = tmp_path / "wide"
    wide.mkdir()
    from dsxsd.train.network import build_model

    build_model(image_size=32, width=0.25).save(wide / "best.keras")
    dsxsd.export(wide, wide / "wide.onnx")
    with pytest.raises(dsxsd.ModelFileError, match="makes 128-long features, the index holds 64-long ones"):
        inference.search(keras_index, query, model=wide / "wide.onnx")


@pytest.mark.tf
def test_an_approximate_index_from_the_tower_export_without_tensorflow(workspace, exported, tmp_path):
    """embed --ann and a folder of queries searched into hits.csv, from tower.onnx with
    TensorFlow blocked: the hits are the exact index's (the candidates cover these 24
    entries), scores within float16's rounding."""
    from dsxsd import inference

    index = tmp_path / "index"
    result = without_tensorflow(tmp_path, "embed", exported["tower"], workspace.crops, "--out", index, "--ann")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"embedded {len(workspace.images)} images of 4 classes")
    assert result.stdout.endswith(", an approximate index (Flat)\n")
    queries = tmp_path / "queries"
    queries.mkdir()
    for image in workspace.images[:3]:
        shutil.copy(image, queries / image.name)
    hits_csv = tmp_path / "hits.csv"
    result = without_tensorflow(tmp_path, "search", index, queries, "-k", "4", "--out", hits_csv)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"searched 3 queries, 12 hits: wrote {hits_csv}\n"
    with open(hits_csv, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    exact = inference.search(
        inference.embed(exported["tower"], workspace.crops, tmp_path / "exact.npz"),
        sorted(queries.iterdir()), k=4,
    )
    assert [str((tmp_path / r["path"]).resolve()) for r in rows] == [h.path for hits in exact for h in hits]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [h.score for hits in exact for h in hits], atol=2e-3)
