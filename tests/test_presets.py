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
        "augment": "none", "weight_decay": 0.0, "lr_schedule": "constant", "resample_negatives": True,
        "resample_positives": False,
    }
    assert presets.resolve(None, {}) == presets.resolve("reference", {}) == presets.REFERENCE
    assert presets.resolve(None, {"width": 0.5})["width"] == 0.5


def test_an_unknown_preset_is_a_usage_error():
    with pytest.raises(dsxsd.UsageError, match="unknown preset 'gpu'; expected one of reference, cpu"):
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


def test_recipe_options_fill_and_override_like_the_rest():
    given = {"augment": "basic", "weight_decay": 0.0, "lr_schedule": "plateau"}
    resolved = presets.resolve("cpu", given)
    assert {k: resolved[k] for k in given} == given  # given explicitly, even at the reference's values: they win
    reference = presets.resolve(None, {})
    assert (reference["augment"], reference["weight_decay"], reference["lr_schedule"]) == ("none", 0.0, "constant")


@pytest.mark.tf
def test_recipe_options_on_the_command_line_reach_config_json(tmp_path):
    from train_support import make_shapes_manifest

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    base = ["train", str(manifest), "--preset", "cpu", "--epochs", "1", "--image-size", "32", "--json"]
    runs = {
        "explicit": ["--augment", "crops", "--augment-flips", "--weight-decay", "0.02", "--lr-schedule", "plateau"],
        "flag": ["--augment", "--lr-schedule", "cosine"],  # --augment alone: basic, as before policies
        "off": ["--no-augment", "--weight-decay", "0"],
    }
    want = {
        "explicit": ("crops", True, 0.02, "plateau"),
        "flag": ("basic", True, presets.resolve("cpu", {})["weight_decay"], "cosine"),
        "off": ("none", False, 0.0, presets.resolve("cpu", {})["lr_schedule"]),
    }
    for name, options in runs.items():
        result = CliRunner().invoke(main, [*base, "--out", str(tmp_path / name), *options])
        assert result.exit_code == 0, result.output
        config = json.loads((tmp_path / name / "config.json").read_text("utf-8"))
        assert (config["augment"], config["augment_flips"], config["weight_decay"], config["lr_schedule"]) == want[name]
    # a finished cosine run cannot be lengthened: its rates depend on its length
    again = CliRunner().invoke(main, ["train", str(manifest), "--preset", "cpu", "--epochs", "1", "--image-size", "32",
                                      "--out", str(tmp_path / "flag"), *runs["flag"]])
    assert again.exit_code == 0 and "(1 epochs on a cosine schedule); pass --overwrite" in again.output
