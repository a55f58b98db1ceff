"""dsxsd predict / embed / search: the fast paths (tower once, head vectorised) must give
the full model's own scores, and bad input must end in one clear line."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main
from use_support import CLASSES, IMAGE_SIZE, PER_CLASS, fresh_run, workspace  # noqa: F401

pytestmark = pytest.mark.tf


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# --------------------------------------------------------------------------- predict


def test_predict_two_images_matches_the_full_model(workspace):
    a, b = workspace.data / "circle/circle_0.jpg", workspace.data / "square/square_4.jpg"
    expected = workspace.reference_scores([a], [b])[0]
    from dsxsd.train.infer import predict

    result = predict(workspace.model_path, a, b)
    assert 0.0 <= result.score <= 1.0
    assert result.score == pytest.approx(expected, abs=1e-5)
    assert (result.threshold, result.threshold_source) == (0.5, "default")
    assert result.same == (result.score >= 0.5)

    out = invoke("predict", workspace.model_path, a, b)
    assert out.exit_code == 0, out.output
    score, verdict = out.output.split()[:2]
    assert float(score) == pytest.approx(expected, abs=6e-5)
    assert verdict == ("same" if expected >= 0.5 else "different")
    assert "threshold 0.5000, default" in out.output


def test_predict_any_size_and_mode(workspace):
    # P-mode PNG (palette, 40 px) against an L-mode JPEG of another size.
    a = workspace.data / "circle/circle_3.png"
    b = workspace.data / "circle/circle_1.jpg"
    from PIL import Image

    assert {Image.open(a).mode, Image.open(b).mode} == {"P", "L"}
    out = invoke("predict", workspace.model_path, a, b, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["score"] == pytest.approx(workspace.reference_scores([a], [b])[0], abs=1e-5)


def test_predict_uses_the_calibrated_threshold_and_threshold_overrides(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    a, b = workspace.data / "circle/circle_0.jpg", workspace.data / "square/square_4.jpg"
    score = workspace.reference_scores([a], [b])[0]
    # A calibrated threshold just above the score flips a "same" verdict to "different".
    (run / "metrics.json").write_text(json.dumps({"format": "dsxsd.metrics", "threshold": float(score) + 0.01}))
    data = json.loads(invoke("predict", run / "model.keras", a, b, "--json").output)
    assert data["threshold_source"] == "metrics.json"
    assert data["threshold"] == pytest.approx(score + 0.01)
    assert data["same"] is False
    data = json.loads(invoke("predict", run / "model.keras", a, b, "--json", "--threshold", "0.001").output)
    assert (data["threshold"], data["threshold_source"], data["same"]) == (0.001, "--threshold", True)


def test_predict_pairs_writes_every_row_with_the_models_scores(workspace, tmp_path):
    out_csv = tmp_path / "sub" / "scores.csv"
    result = invoke("predict", workspace.model_path, "--pairs", workspace.pairs, "--out", out_csv)
    assert result.exit_code == 0, result.output
    with open(workspace.pairs, newline="") as f:
        manifest = list(csv.DictReader(f))
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(manifest)
    assert list(rows[0]) == ["left", "right", "label", "left_class", "right_class", "split", "score", "predicted"]
    expected = workspace.reference_scores(
        [workspace.data / r["left"] for r in manifest], [workspace.data / r["right"] for r in manifest]
    )
    for row, original, want in zip(rows, manifest, expected):
        # Paths are rewritten relative to the output's folder and still name the same file.
        assert (out_csv.parent / row["left"]).resolve() == (workspace.data / original["left"]).resolve()
        assert row["label"] == original["label"] and row["split"] == original["split"]
        assert float(row["score"]) == pytest.approx(want, abs=2e-6)
        assert row["predicted"] == str(int(float(row["score"]) >= 0.5))
    distinct = len({r["left"] for r in manifest} | {r["right"] for r in manifest})
    assert f"scored {len(manifest)} pairs ({distinct} images)" in result.output

    again = invoke("predict", workspace.model_path, "--pairs", workspace.pairs, "--out", out_csv)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_predict_pairs_of_one_split(workspace, tmp_path):
    out_csv = tmp_path / "val.csv"
    result = invoke("predict", workspace.model_path, "--pairs", workspace.pairs, "--out", out_csv, "--split", "val")
    assert result.exit_code == 0, result.output
    with open(out_csv, newline="") as f:
        assert {row["split"] for row in csv.DictReader(f)} == {"val"}


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give two images"),
        (("A",), "give two images"),
        (("A", "B", "--pairs", "P", "--out", "o.csv"), "not both"),
        (("--pairs", "P"), "--pairs needs --out"),
        (("A", "B", "--out", "o.csv"), "--out and --split go with --pairs"),
    ],
)
def test_predict_usage_errors(workspace, args, message):
    existing = {"A": workspace.images[0], "B": workspace.images[1], "P": workspace.pairs}
    result = invoke("predict", workspace.model_path, *(existing.get(a, a) for a in args))
    assert result.exit_code == 2
    assert message in result.output


# --------------------------------------------------------------------------- embed / search


@pytest.fixture()
def index(workspace):
    path = workspace.root / "index.npz"
    if not path.exists():
        result = invoke("embed", workspace.model_path, workspace.crops, "--out", path)
        assert result.exit_code == 0, result.output
        n = len(CLASSES) * PER_CLASS
        assert f"embedded {n} images of {len(CLASSES)} classes" in result.output
    return path


def test_embed_stores_tower_features_paths_classes_and_model(workspace, index):
    from dsxsd.train import load_images

    with np.load(index, allow_pickle=False) as data:  # no pickled objects in it
        features = data["features"]
        paths = [str(p) for p in data["paths"]]
        classes = [str(c) for c in data["classes"]]
        model = str(data["model"])
    assert [(Path(p).as_posix(), c) for p, c in zip(paths, classes)] == [
        (f"data/{relative}", name) for relative, name in workspace.rows
    ]  # relative to the index's folder
    assert (index.parent / model).resolve() == workspace.model_path.resolve()
    tower = workspace.keras_model().get_layer("tower")
    expected = tower.predict(load_images([str(p) for p in workspace.images], IMAGE_SIZE), verbose=0)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_embed_a_class_tree_and_refuses_to_clobber(workspace, tmp_path):
    out = tmp_path / "tree.npz"
    assert invoke("embed", workspace.model_path, workspace.data, "--out", out).exit_code == 0
    with np.load(out, allow_pickle=False) as data:
        assert sorted(set(str(c) for c in data["classes"])) == sorted(CLASSES)
        assert len(data["paths"]) == len(CLASSES) * PER_CLASS
    again = invoke("embed", workspace.model_path, workspace.data, "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert invoke("embed", workspace.model_path, workspace.data, "--out", out, "--overwrite").exit_code == 0


def test_search_ranks_by_the_full_models_scores(workspace, index):
    from dsxsd.train.infer import search

    query = workspace.data / "triangle/triangle_1.jpg"
    hits = search(index, query, k=len(workspace.images))
    expected = workspace.reference_scores([query] * len(workspace.images), workspace.images)
    by_path = {str(p.resolve()): s for p, s in zip(workspace.images, expected)}
    assert len(hits) == len(workspace.images)
    for hit in hits:
        assert hit.score == pytest.approx(by_path[hit.path], abs=2e-6)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)  # best first
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert hits[0].path == max(by_path, key=by_path.get)


def test_search_cli_prints_k_lines_best_first(workspace, index):
    query = workspace.data / "square/square_4.jpg"
    result = invoke("search", index, query, "-k", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    expected = workspace.reference_scores([query] * len(workspace.images), workspace.images)
    best = np.argsort(-expected)[:3]
    for line, i in zip(lines, best):
        path, name, score = line.split()
        assert Path(path).resolve() == workspace.images[i].resolve()
        assert name == workspace.rows[i][1]
        assert float(score) == pytest.approx(expected[i], abs=6e-5)
    data = json.loads(invoke("search", index, query, "-k", "2", "--json").output)
    assert [d["rank"] for d in data] == [1, 2] and set(data[0]) == {"rank", "path", "class", "score"}


def test_search_model_override(workspace, index, tmp_path):
    import shutil

    moved = tmp_path / "copy.keras"
    shutil.copy(workspace.model_path, moved)
    query = workspace.images[5]
    default = invoke("search", index, query, "--json")
    override = invoke("search", index, query, "--json", "--model", moved)
    assert override.exit_code == 0, override.output
    assert json.loads(override.output) == json.loads(default.output)


def test_search_with_another_model_is_refused(workspace, index, tmp_path):
    from dsxsd.train.network import build_model

    other = build_model(image_size=IMAGE_SIZE, width=0.25)  # other feature length
    other.save(tmp_path / "other.keras")
    result = invoke("search", index, workspace.images[0], "--model", tmp_path / "other.keras")
    assert result.exit_code == 1
    assert "another model" in result.output and "other.keras" in result.output


# --------------------------------------------------------------------------- bad input


def test_missing_image_on_the_command_line_is_a_usage_error(workspace, tmp_path):
    missing = tmp_path / "nowhere.jpg"
    result = invoke("predict", workspace.model_path, workspace.images[0], missing)
    assert result.exit_code == 2
    assert result.output == f"error: {missing}: no such file or folder\n"


def test_an_index_whose_model_is_gone_is_a_data_error(workspace, tmp_path):
    import shutil

    model = tmp_path / "copy.keras"
    shutil.copy(workspace.model_path, model)
    index = tmp_path / "index.npz"
    assert invoke("embed", model, workspace.crops, "--out", index).exit_code == 0
    model.unlink()
    result = invoke("search", index, workspace.images[0])
    # The model is named inside the index, not on the command line: exit 1, not 2.
    assert result.exit_code == 1
    assert result.output == (
        f"error: {index}: the model the index was made with is missing: {model.resolve()}\n"
    )


def test_the_api_reads_its_inputs_before_loading_a_model(tmp_path):
    # A bad manifest or output is reported even though the model (absent here) would fail
    # too: it is checked first, before the seconds a model takes to load.
    from dsxsd.train.infer import embed, predict_pairs

    wrong = tmp_path / "wrong.csv"
    wrong.write_text("image,label\na.jpg,1\n")
    absent = tmp_path / "absent.keras"
    with pytest.raises(dsxsd.ManifestError, match="wrong.csv"):
        embed(absent, wrong, tmp_path / "index.npz")
    with pytest.raises(dsxsd.ManifestError, match="wrong.csv"):
        predict_pairs(absent, wrong, tmp_path / "scores.csv")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(dsxsd.OutputWriteError, match="a-file is a file, not a folder"):
        predict_pairs(absent, wrong, tmp_path / "a-file" / "scores.csv")


def test_undecodable_image_names_the_file(workspace, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    result = invoke("predict", workspace.model_path, workspace.images[0], broken)
    assert result.exit_code == 1 and str(broken) in result.output


def test_a_manifest_of_the_wrong_shape_names_the_file(workspace, tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("image,label\na.jpg,1\n")
    for args in (("embed", workspace.model_path, wrong, "--out", tmp_path / "i.npz"),
                 ("predict", workspace.model_path, "--pairs", wrong, "--out", tmp_path / "o.csv")):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert str(wrong) in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_file_that_is_not_a_model(workspace, tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("hello")
    result = invoke("predict", fake, workspace.images[0], workspace.images[1])
    assert result.exit_code == 1 and str(fake) in result.output
    result = invoke("predict", tmp_path / "absent.keras", workspace.images[0], workspace.images[1])
    assert result.exit_code == 2 and "absent.keras: no such file or folder" in result.output


def test_a_keras_model_that_is_not_a_dsxsd_model(workspace, tmp_path):
    import keras

    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    result = invoke("embed", tmp_path / "plain.keras", workspace.crops, "--out", tmp_path / "i.npz")
    assert result.exit_code == 1 and "plain.keras" in result.output and "not a dsxsd" in result.output


def test_a_file_that_is_not_an_index(workspace, tmp_path):
    fake = tmp_path / "index.npz"
    np.savez(fake, something=np.arange(3))
    result = invoke("search", fake, workspace.images[0])
    assert result.exit_code == 1 and str(fake) in result.output and "not a dsxsd index" in result.output
    result = invoke("search", tmp_path / "absent.npz", workspace.images[0])
    assert result.exit_code == 2 and "absent.npz: no such file or folder" in result.output


@pytest.mark.parametrize("command", ["embed", "predict", "evaluate"])
def test_progress_reaches_its_length(workspace, tmp_path, monkeypatch, command):
    import contextlib

    import dsxsd.cli.use as use

    bars = []

    @contextlib.contextmanager
    def recording(length, label):
        bar = {"length": length, "done": 0}
        bars.append(bar)
        yield lambda n=1: bar.update(done=bar["done"] + n)

    monkeypatch.setattr(use, "progress", recording)
    args = {
        "embed": ("embed", workspace.model_path, workspace.crops, "--out", tmp_path / "i.npz"),
        "predict": ("predict", workspace.model_path, "--pairs", workspace.pairs, "--out", tmp_path / "s.csv"),
        "evaluate": ("evaluate", fresh_run(workspace, tmp_path / "run"), workspace.pairs, "--no-plots"),
    }[command]
    assert invoke(*args).exit_code == 0
    n = len(CLASSES) * PER_CLASS  # every image of the data, each embedded once
    expected = {"embed": n, "predict": n, "evaluate": n * 4 // 6}  # evaluate: test + val images
    assert bars == [{"length": expected[command], "done": expected[command]}]


def test_without_tensorflow_the_install_line_is_given(workspace, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a)
    )
    result = invoke("predict", workspace.model_path, workspace.images[0], workspace.images[1])
    assert result.exit_code == 2
    assert 'pip install "dsxsd[train]"' in result.output


@pytest.mark.parametrize("command", ["evaluate", "predict", "embed", "search", "demo"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert re.search(rf"Usage: .*{command}", result.output)
    assert "--quick" not in result.output  # a test option, hidden


def test_an_approximate_index_of_model_keras_searches_as_the_exact_one(workspace, index, tmp_path):
    from dsxsd.train.infer import search

    folder = tmp_path / "index"
    result = invoke("embed", workspace.model_path, workspace.crops, "--out", folder, "--ann", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["kind"], summary["images"], summary["faiss_index"]) == ("ann", len(workspace.images), "Flat")
    queries = workspace.images[:4]
    approximate = search(folder, queries, k=6, candidates=len(workspace.images))
    exact = search(index, queries, k=6)
    assert [[h.path for h in hits] for hits in approximate] == [[h.path for h in hits] for hits in exact]
    for a, b in zip(approximate, exact):  # the head on float16 features: within their rounding
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=2e-3)
    result = invoke("embed", workspace.model_path, workspace.crops, "--out", tmp_path / "i.npz", "--ann")
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'i.npz'}: an approximate index is a folder: name it without .npz\n"
