"""dsxsd evaluate: metrics.json, the printed table and the plots agree with metrics
computed from the full model's own predictions; N-way one-shot agrees with a brute-force
run of the same trials."""

from __future__ import annotations

import csv
import hashlib
import json

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from dsxsd import metrics
from dsxsd._schemas import load_schema
from dsxsd.cli import main
from use_support import CLASSES, fresh_run, workspace  # noqa: F401

pytestmark = pytest.mark.tf

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def split_scores(workspace, split):
    with open(workspace.pairs, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    scores = workspace.reference_scores(
        [workspace.data / r["left"] for r in rows], [workspace.data / r["right"] for r in rows]
    )
    return np.array([int(r["label"]) for r in rows]), scores


def entry(data: dict, section: str, **identity) -> dict:
    """The one entry of metrics.json's ``section`` whose fields match ``identity``."""
    (found,) = [e for e in data[section] if all(e[k] == v for k, v in identity.items())]
    return found


def table(output: str) -> dict[str, str]:
    """The printed two-column table as {metric: value}."""
    values = {}
    for line in output.splitlines()[2:]:
        if line.startswith("wrote") or line.startswith("warning"):
            break
        name, value = line.rsplit(None, 1)
        values[name.strip()] = value
    return values


def test_evaluate_writes_consistent_metrics_plots_and_table(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    result = invoke("evaluate", run, workspace.pairs, "--split", "test")
    assert result.exit_code == 0, result.output

    y, s = split_scores(workspace, "test")
    y_val, s_val = split_scores(workspace, "val")
    threshold, val_accuracy = metrics.best_threshold(y_val, s_val)
    at_threshold = metrics.binary_metrics(y, s, threshold)

    data = json.loads((run / "metrics.json").read_text())
    assert data["format"] == "dsxsd.metrics" and data["model"] == "model.keras"
    assert data["threshold"] == pytest.approx(threshold, abs=1e-5)
    assert data["threshold_calibration"]["split"] == "val"
    assert data["threshold_calibration"]["accuracy"] == pytest.approx(val_accuracy)
    test = entry(data, "pairs", split="test")
    assert test["count"] == {"same": int(y.sum()), "different": int(len(y) - y.sum())}
    assert test["at_0.5"]["accuracy"] == pytest.approx(metrics.binary_metrics(y, s, 0.5).accuracy)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert test["at_threshold"][key] == pytest.approx(getattr(at_threshold, key)), key
    assert test["roc_auc"] == pytest.approx(metrics.roc_auc(y, s), abs=1e-6)
    assert test["eer"] == pytest.approx(metrics.equal_error_rate(y, s)[0], abs=1e-6)
    assert test["threshold_split"] == "val"

    printed = table(result.output)
    assert printed["pairs (test)"] == str(len(y))
    assert printed["same (label 1)"] == str(int(y.sum()))
    assert printed["different (label 0)"] == str(int(len(y) - y.sum()))
    assert printed["accuracy at 0.5"] == f"{test['at_0.5']['accuracy']:.4f}"
    assert printed["threshold (best on val)"] == f"{data['threshold']:.4f}"
    assert printed["accuracy at threshold"] == f"{test['at_threshold']['accuracy']:.4f}"
    assert printed["precision at threshold"] == f"{test['at_threshold']['precision']:.4f}"
    assert printed["recall at threshold"] == f"{test['at_threshold']['recall']:.4f}"
    assert printed["F1 at threshold"] == f"{test['at_threshold']['f1']:.4f}"
    assert printed["ROC AUC"] == f"{test['roc_auc']:.4f}"
    assert printed["equal error rate"] == f"{test['eer']:.4f}"

    for name in ("roc.png", "scores.png"):
        assert (run / name).read_bytes()[:8] == PNG
    assert "metrics.json" in result.output and "roc.png" in result.output

    # predict now uses the calibrated threshold.
    out = json.loads(invoke("predict", run, workspace.images[0], workspace.images[1], "--json").output)
    assert out["threshold_source"] == "metrics.json"
    assert out["threshold"] == pytest.approx(data["threshold"])


def test_evaluate_adds_sections_and_replaces_only_with_overwrite(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    assert invoke("evaluate", run, workspace.pairs).exit_code == 0
    first = json.loads((run / "metrics.json").read_text())

    again = invoke("evaluate", run, workspace.pairs)
    assert again.exit_code == 2
    assert "split 'test'" in again.output and "--overwrite" in again.output

    # Another split and an N-way run are added beside the test results.
    assert invoke("evaluate", run, workspace.pairs, "--split", "train").exit_code == 0
    assert (run / "roc-train.png").is_file() and (run / "scores-train.png").is_file()
    assert invoke("evaluate", run, workspace.crops, "--n-way", "3", "--trials", "10").exit_code == 0
    data = json.loads((run / "metrics.json").read_text())
    assert [e["split"] for e in data["pairs"]] == ["test", "train"]
    assert [e["n_way"] for e in data["n_way"]] == [3]
    assert entry(data, "pairs", split="test") == entry(first, "pairs", split="test")

    replaced = invoke("evaluate", run, workspace.pairs, "--overwrite")
    assert replaced.exit_code == 0
    data = json.loads((run / "metrics.json").read_text())
    assert [e["split"] for e in data["pairs"]] == ["test", "train"]
    assert [e["n_way"] for e in data["n_way"]] == [3]
    jsonschema.validate(data, load_schema("metrics"))


def copy_manifest(path, name):
    """A copy of a manifest beside it (its image paths are relative to its folder)."""
    copy = path.parent / name
    copy.write_bytes(path.read_bytes())
    return copy


def test_n_way_results_on_two_sources_with_the_same_n_both_remain(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    other = copy_manifest(workspace.crops, "crops_other.csv")
    assert invoke("evaluate", run, workspace.crops, "--n-way", "3", "--trials", "10").exit_code == 0
    assert invoke("evaluate", run, other, "--n-way", "3", "--trials", "12").exit_code == 0
    data = json.loads((run / "metrics.json").read_text())
    assert [(e["source"].rsplit("/", 1)[-1], e["trials"]) for e in data["n_way"]] == [
        ("crops.csv", 10), ("crops_other.csv", 12)
    ]
    assert entry(data, "n_way", trials=10)["source_sha256"] == hashlib.sha256(workspace.crops.read_bytes()).hexdigest()
    jsonschema.validate(data, load_schema("metrics"))

    again = invoke("evaluate", run, workspace.crops, "--n-way", "3", "--trials", "14")
    assert again.exit_code == 2
    assert "3-way one-shot on" in again.output and "crops.csv;" in again.output and "--overwrite" in again.output
    assert json.loads((run / "metrics.json").read_text()) == data

    replaced = invoke("evaluate", run, workspace.crops, "--n-way", "3", "--trials", "14", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    data = json.loads((run / "metrics.json").read_text())
    assert [(e["source"].rsplit("/", 1)[-1], e["trials"]) for e in data["n_way"]] == [
        ("crops.csv", 14), ("crops_other.csv", 12)
    ]


def test_pairs_results_on_two_manifests_with_the_same_split_both_remain(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    other = copy_manifest(workspace.pairs, "pairs_other.csv")
    assert invoke("evaluate", run, workspace.pairs).exit_code == 0
    second = invoke("evaluate", run, other)
    assert second.exit_code == 0, second.output
    data = json.loads((run / "metrics.json").read_text())
    first_entry, other_entry = data["pairs"]
    assert first_entry["pairs"].endswith("/pairs.csv") and other_entry["pairs"].endswith("/pairs_other.csv")
    # Each keeps its own pictures: the first the plain names, the second its manifest's.
    assert first_entry["plots"] == ["roc.png", "scores.png"]
    assert other_entry["plots"] == ["roc-test-pairs_other.png", "scores-test-pairs_other.png"]
    for name in first_entry["plots"] + other_entry["plots"]:
        assert (run / name).read_bytes()[:8] == PNG
    assert data["threshold_calibration"]["pairs"] == other_entry["pairs"]
    jsonschema.validate(data, load_schema("metrics"))

    again = invoke("evaluate", run, other)
    assert again.exit_code == 2 and "split 'test' of" in again.output and "pairs_other.csv" in again.output
    assert invoke("evaluate", run, other, "--overwrite").exit_code == 0
    data = json.loads((run / "metrics.json").read_text())
    assert data["pairs"][0] == first_entry and data["pairs"][1]["plots"] == other_entry["plots"]


def test_a_metrics_file_of_version_1_is_read_and_rewritten(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    assert invoke("evaluate", run, workspace.crops, "--n-way", "3", "--trials", "10").exit_code == 0
    assert invoke("evaluate", run, workspace.pairs).exit_code == 0
    current = json.loads((run / "metrics.json").read_text())
    # The layout of version 1: results keyed by N and by split alone.
    old_one_shot = {k: v for k, v in current["n_way"][0].items() if k != "source_sha256"}
    old = dict(current, version=1, n_way={"3": old_one_shot}, pairs={"test": current["pairs"][0]})
    (run / "metrics.json").write_text(json.dumps(old))

    assert invoke("evaluate", run, workspace.pairs, "--split", "train").exit_code == 0
    data = json.loads((run / "metrics.json").read_text())
    assert data["version"] == 2
    assert data["n_way"] == [dict(old_one_shot, source_sha256=None)]
    assert [e["split"] for e in data["pairs"]] == ["test", "train"]
    jsonschema.validate(data, load_schema("metrics"))
    # The entries read from version 1 are still recognised as the same results.
    assert invoke("evaluate", run, workspace.crops, "--n-way", "3", "--trials", "10").exit_code == 2


def test_a_metrics_file_of_a_newer_version_is_left_alone_without_overwrite(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    newer = json.dumps({"format": "dsxsd.metrics", "version": 99, "pairs": {}})
    (run / "metrics.json").write_text(newer)
    result = invoke("evaluate", run, workspace.pairs)
    assert result.exit_code == 2
    assert "metrics.json" in result.output and "written by a newer dsxsd (metrics version 99)" in result.output
    assert (run / "metrics.json").read_text() == newer
    assert invoke("evaluate", run, workspace.pairs, "--overwrite").exit_code == 0


def test_metrics_of_an_n_way_run_alone_match_the_schema(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    assert invoke("evaluate", run, workspace.crops, "--n-way", "2", "--trials", "5").exit_code == 0
    data = json.loads((run / "metrics.json").read_text())
    assert data["threshold"] is None and entry(data, "n_way", n_way=2)["split"] is None
    jsonschema.validate(data, load_schema("metrics"))
    # predict still works: no threshold calibrated yet, so 0.5.
    out = json.loads(invoke("predict", run, workspace.images[0], workspace.images[1], "--json").output)
    assert (out["threshold"], out["threshold_source"]) == (0.5, "default")


def test_evaluate_out_folder_and_json(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    out = tmp_path / "report"
    result = invoke("evaluate", run / "model.keras", workspace.pairs, "--out", out, "--json", "--no-plots")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["files"] == [str(out / "metrics.json")]
    assert json.loads((out / "metrics.json").read_text())["model"] == "../run/model.keras"
    assert not (run / "metrics.json").exists() and not (out / "roc.png").exists()


def test_a_retrained_model_needs_overwrite(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    (run / "metrics.json").write_text(json.dumps({"format": "dsxsd.metrics", "model_sha256": "0" * 64, "pairs": {}}))
    result = invoke("evaluate", run, workspace.pairs)
    assert result.exit_code == 2 and "another version of the model" in result.output
    assert invoke("evaluate", run, workspace.pairs, "--overwrite").exit_code == 0


def test_n_way_matches_a_brute_force_run_of_the_same_trials(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    result = invoke("evaluate", run, workspace.data, "--n-way", "4", "--trials", "30", "--seed", "5")
    assert result.exit_code == 0, result.output

    classes = [name for _, name in workspace.rows]  # the tree lists folders and files sorted
    draw = metrics.one_shot_trials(classes, 4, 30, seed=5)
    images = workspace.images
    left = [images[q] for q in draw.queries for _ in range(4)]
    right = [images[i] for i in draw.supports.reshape(-1)]
    scores = workspace.reference_scores(left, right).reshape(30, 4)
    correct = int(np.sum(np.argmax(scores, axis=1) == draw.answers))

    data = entry(json.loads((run / "metrics.json").read_text()), "n_way", n_way=4)
    assert data["source"].endswith("/data")
    assert data["source_sha256"] is None  # a folder of class folders
    assert (data["trials"], data["correct"], data["images"], data["classes"]) == (30, correct, 24, 4)
    assert data["accuracy"] == pytest.approx(correct / 30)
    printed = table(result.output)
    assert printed["correct"] == str(correct)
    assert printed["one-shot accuracy"] == f"{correct / 30:.4f}"
    assert printed["chance"] == "0.2500"


def test_n_way_on_the_images_of_one_split_of_a_pairs_manifest(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    result = invoke("evaluate", run, workspace.pairs, "--n-way", "2", "--trials", "10", "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # val holds images 2 and 3 of every class that has pairs in val.
    assert data["images"] == 2 * len(CLASSES) and data["classes"] == len(CLASSES)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--n-way", "9"), "9-way needs 9 classes, found 4"),
        (("--split", "nope"), "no pairs in split 'nope'"),
    ],
)
def test_settings_the_data_cannot_meet(workspace, tmp_path, args, message):
    run = fresh_run(workspace, tmp_path / "run")
    source = workspace.crops if "--n-way" in args else workspace.pairs
    result = invoke("evaluate", run, source, *args)
    assert result.exit_code == 1
    assert message in result.output and str(source) in result.output


def test_a_split_with_one_label_is_a_clear_error(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    pairs = workspace.data / "one_label.csv"
    with open(workspace.pairs, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(pairs, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if r["split"] != "test" or r["label"] == "1")
    result = invoke("evaluate", run, pairs)
    assert result.exit_code == 1
    assert "one_label.csv" in result.output and "need both labels" in result.output
    assert not (run / "metrics.json").exists()


def test_missing_image_in_the_pairs(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    pairs = workspace.data / "missing.csv"
    pairs.write_text(
        "left,right,label,left_class,right_class,split\n"
        "circle/circle_0.jpg,circle/gone.jpg,1,circle,circle,test\n"
        "circle/circle_0.jpg,square/square_0.jpg,0,circle,square,test\n"
    )
    result = invoke("evaluate", run, pairs)
    assert result.exit_code == 1 and "gone.jpg" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_without_a_val_split_the_threshold_is_flagged_optimistic(workspace, tmp_path):
    run = fresh_run(workspace, tmp_path / "run")
    pairs = workspace.data / "no_val.csv"
    with open(workspace.pairs, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] != "val"]
    with open(pairs, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(main, ["evaluate", str(run), str(pairs)])
    assert result.exit_code == 0
    assert "optimistic" in result.output
    data = json.loads((run / "metrics.json").read_text())
    assert data["threshold_calibration"]["split"] == "test"
    y, s = split_scores(workspace, "test")
    assert data["threshold"] == pytest.approx(metrics.best_threshold(y, s)[0], abs=1e-5)
