"""Training presets: a preset fills the settings not given, what is given wins, and the
run records what it trained with."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd import presets
from dsxsd.cli import main


def test_a_preset_fills_what_is_not_given_and_what_is_given_wins():
    cpu = presets.resolve("cpu", {"epochs": 3, "resample_positives": False})
    assert cpu == {
        "epochs": 3, "batch_size": 32, "lr": 1e-3, "width": 0.125, "image_size": 64,
        "augment": False, "resample_negatives": True, "resample_positives": False,
    }
    assert presets.resolve(None, {}) == presets.resolve("reference", {}) == presets.REFERENCE
    assert presets.resolve(None, {"width": 0.5})["width"] == 0.5


def test_an_unknown_preset_is_a_usage_error():
    with pytest.raises(dsxsd.SettingError, match="unknown preset 'gpu'; expected one of reference, cpu"):
        presets.resolve("gpu", {})


def test_describe_says_what_the_preset_sets():
    assert presets.describe("cpu") == (
        "preset cpu: epochs 10, width 0.125, image size 64, lr 0.001, resample negatives on, "
        "resample positives on (options given explicitly win)"
    )


def test_an_unknown_preset_on_the_command_line(tmp_path):
    (tmp_path / "pairs.csv").write_text("left,right,label,left_class,right_class,split\n")
    result = CliRunner().invoke(main, ["train", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "run"), "--preset", "gpu"])
    assert result.exit_code == 2
    assert "'gpu' is not one of 'reference', 'cpu'" in result.output


@pytest.mark.tf
def test_train_with_the_cpu_preset_prints_and_records_it(tmp_path):
    from train_support import make_shapes_manifest

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    run = tmp_path / "run"
    args = ["train", str(manifest), "--out", str(run), "--preset", "cpu", "--epochs", "1", "--image-size", "32"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == presets.describe("cpu")
    config = json.loads((run / "config.json").read_text("utf-8"))
    assert config["preset"] == "cpu"
    assert (config["epochs"], config["image_size"]) == (1, 32)  # given: they win
    assert (config["width"], config["lr"], config["resample_negatives"], config["resample_positives"]) == (
        0.125, 1e-3, True, True,
    )
    # the same command resumes (here: is complete); without the preset it is another run
    assert CliRunner().invoke(main, args).exit_code == 0
    other = CliRunner().invoke(main, ["train", str(manifest), "--out", str(run), "--epochs", "1", "--image-size", "32"])
    assert other.exit_code == 2
    assert "holds a run with other settings" in other.output and "width: 0.125 -> 1.0" in other.output
