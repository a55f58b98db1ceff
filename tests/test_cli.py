"""The ``dsxsd`` group as a whole: one rule for missing paths, one form for every error, a
closed stdout, commands that produce nothing, and help that a newcomer can use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

import dsxsd
from dsxsd.cli import main
from dsxsd.formats import format_names

REPO = Path(__file__).resolve().parents[1]
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="dsxsd")


@pytest.fixture
def files(tmp_path):
    """An existing file and folder to put beside the missing path."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "exists.csv").write_text("left,right,label\n", encoding="utf-8")
    return tmp_path


# ------------------------------------------------------------- item 4: missing paths

# Each command with exactly one input path that does not exist ({missing}); {dir} and
# {file} exist, {out} is an output.
MISSING = {
    "convert": ["csv2json", "{missing}", "{out}"],
    "convert --images": ["csv2yolo", "{file}", "{out}", "--images", "{missing}"],
    "validate": ["{missing}"],
    "validate --classes": ["{file}", "--classes", "{missing}"],
    "stats": ["{missing}"],
    "draw": ["{missing}", "--images", "{dir}", "--out", "{out}"],
    "draw --images": ["{file}", "--images", "{missing}", "--out", "{out}"],
    "draw-pairs": ["{missing}", "--out", "{out}.png"],
    "ls": ["{missing}"],
    "crop": ["{missing}", "--images", "{dir}", "--out", "{out}"],
    "crop --images": ["{file}", "--images", "{missing}", "--out", "{out}"],
    "make-pairs": ["{missing}", "{out}.csv"],
    "train": ["{missing}", "--out", "{out}"],
    "train --backbone-weights": ["{file}", "--out", "{out}", "--backbone-weights", "{missing}"],
    "evaluate": ["{missing}", "{file}"],
    "predict": ["{missing}", "{image}", "{image}"],
    "predict image": ["{file}", "{image}", "{missing}"],
    "predict --pairs": ["{file}", "--pairs", "{missing}", "--out", "{out}.csv"],
    "embed": ["{missing}", "{file}", "--out", "{out}.npz"],
    "search": ["{missing}", "{image}"],
    "search --model": ["{file}", "{image}", "--model", "{missing}"],
    "export": ["{missing}", "--out", "{out}.onnx"],
}


def test_every_command_is_covered():
    assert {case.split()[0] for case in MISSING} == set(main.commands) - {"demo", "info"}  # no input paths


@pytest.mark.parametrize("case", sorted(MISSING))
def test_a_missing_path_on_the_command_line_is_a_usage_error(files, case):
    missing = files / "no" / "such.csv"
    values = {"missing": missing, "dir": files, "file": files / "exists.csv",
              "image": files / "a.png", "out": files / "out"}
    args = [arg.format(**values) for arg in MISSING[case][:]]
    result = invoke(case.split()[0], *args)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {missing}: no such file or folder\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "call",
    [
        lambda m, d: dsxsd.read(m),
        lambda m, d: dsxsd.convert(m, d / "out.json"),
        lambda m, d: dsxsd.convert(m, d / "out.json", "csv", "json"),
        lambda m, d: dsxsd.validate(m),
        lambda m, d: dsxsd.dataset_stats(m),
        lambda m, d: dsxsd.draw(m, d, d / "out"),
        lambda m, d: dsxsd.list_images(m),
        lambda m, d: dsxsd.crop(m, images=d, out=d / "out"),
        lambda m, d: dsxsd.make_pairs(m, d / "pairs.csv"),
        lambda m, d: dsxsd.read_pairs(m),
    ],
)
def test_the_api_raises_the_same_usage_error(tmp_path, call):
    missing = tmp_path / "nope"
    with pytest.raises(dsxsd.MissingPathError) as info:
        call(missing, tmp_path)
    assert info.value.exit_code == 2
    assert str(info.value) == f"{missing}: no such file or folder"


# ------------------------------------------------------------ item 5: one error form


@pytest.mark.parametrize(
    "args, message, helped",
    [
        (["validate", "--bogus"], "error: no such option '--bogus'.", "dsxsd validate"),
        (["nosuch"], "error: no such command 'nosuch'.", "dsxsd"),
        (["--bogus"], "error: no such option '--bogus'.", "dsxsd"),
        (["train", "p.csv", "--out", "r", "--epochs", "x"],
         "error: invalid value for '--epochs': 'x' is not a valid integer range.", "dsxsd train"),
        (["make-pairs"], "error: missing argument 'INPUT'.", "dsxsd make-pairs"),
        (["convert", "voc2csv"], "error: give SRC2DST INPUT OUTPUT", "dsxsd convert"),
        # click names no command for this one, so there is no help line to give
        (["ls", "--ext"], "error: option '--ext' requires an argument.", None),
    ],
)
def test_click_usage_errors_take_dsxsds_form(args, message, helped):
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(message)
    assert "Error" not in result.stderr and "Usage:" not in result.stderr
    assert lines[1:] == ([f"Try '{helped} --help' for help."] if helped else [])


# ----------------------------------------------------------- item 6: a closed stdout


def test_a_closed_stdout_ends_the_command_quietly(tmp_path):
    # Well past a pipe's buffer, so that dsxsd is still writing when the reader goes.
    for n in range(3000):
        (tmp_path / f"image_{n:05d}_with_a_rather_long_name.jpg").touch()
    process = subprocess.Popen(
        [sys.executable, "-c", "from dsxsd.cli import main; main()", "ls", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )
    first = process.stdout.readline()
    process.stdout.close()  # what `| head -1` does after its line
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 141
    assert first == b"image_00000_with_a_rather_long_name.jpg\n"
    assert stderr == b""


# ------------------------------------------------- item 8: nothing produced is exit 1


@pytest.fixture
def unmatched(tmp_path):
    """Annotations whose images are not in the images folder given."""
    (tmp_path / "images").mkdir()
    (tmp_path / "ann.csv").write_text(
        HEADER + "a.png,10,10,cat,1,1,5,5\nb.png,10,10,dog,1,1,5,5\n", encoding="utf-8"
    )
    return tmp_path


def test_draw_with_no_matching_image_is_a_data_error(unmatched):
    images = unmatched / "images"
    result = invoke("draw", unmatched / "ann.csv", "--images", images,
                    "--out", unmatched / "previews", "--grid", unmatched / "grid.png")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {images}: none of the 2 images could be drawn")
    assert "'a.png' not found" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert sorted(p.name for p in unmatched.iterdir()) == ["ann.csv", "images"]  # no blank grid


def test_crop_that_skipped_every_image_is_a_data_error(unmatched):
    images, out = unmatched / "images", unmatched / "crops"
    result = invoke("crop", unmatched / "ann.csv", "--images", images, "--out", out,
                    "--on-error", "skip", "--workers", "1")
    assert result.exit_code == 1
    report = unmatched / "crops.skipped.csv"
    assert result.stderr == (
        f"error: {images}: no crops written: 2 files skipped, reasons in {report}\n"
    )
    assert not out.exists()  # no empty crops.csv to pass for a result
    # The report stays: it is what says why.
    assert report.read_text(encoding="utf-8").splitlines()[0] == "file,line,reason"
    assert len(report.read_text(encoding="utf-8").splitlines()) == 3


# ------------------------------------------------------------------- item 19: help


def test_every_option_has_help():
    bare = [
        f"{name} {param.opts[0]}"
        for name, command in main.commands.items()
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert bare == []


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_help_shows_an_example(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0
    assert any(line.strip().startswith(f"dsxsd {name} ") or line.strip() == f"dsxsd {name}"
               for line in result.output.splitlines())


def test_the_commands_reading_annotations_take_a_format():
    with_format = {n for n, c in main.commands.items() if any("--format" in p.opts for p in c.params)}
    # export's --format is the format it writes (onnx, saved_model, litert)
    assert with_format == {"validate", "stats", "draw", "crop", "export"}
    assert "onnx" in " ".join(invoke("export", "--help").output.split())


@pytest.mark.parametrize("name", ["validate", "stats", "draw", "crop"])
def test_format_help_lists_the_formats(name):
    help_text = " ".join(invoke(name, "--help").output.split())
    assert f"One of: {', '.join(format_names(readable=True))}." in help_text


def test_dsxsd_alone_prints_help_with_whole_summaries():
    result = invoke()
    assert result.exit_code == 0 and result.stderr == ""
    listing = result.stdout.split("Commands:")[1]
    assert "..." not in listing
    text = " ".join(listing.split())
    for name, command in main.commands.items():
        summary = command.get_short_help_str(limit=1000)
        assert f"{name} {summary}" in text and not summary.endswith("...")


@pytest.fixture
def drawable(tmp_path):
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 255, 0)), ("c", (0, 0, 255))):
        for n in range(2):
            (tmp_path / "tree" / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), colour).save(tmp_path / "tree" / name / f"{n}.png")
    (tmp_path / "ann.csv").write_text(
        HEADER + "tree/a/0.png,20,20,a,1,1,9,9\ntree/b/0.png,20,20,b,2,2,8,8\n", encoding="utf-8"
    )
    dsxsd.make_pairs(tmp_path / "tree", tmp_path / "pairs.csv", split=(1.0, 0.0, 0.0))
    return tmp_path


def test_json_of_draw(drawable):
    result = invoke("draw", drawable / "ann.csv", "--images", drawable, "--out",
                    drawable / "previews", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "out": str(drawable / "previews"), "previews": 2, "grid": None, "skipped": [],
    }


def test_json_of_draw_pairs(drawable):
    result = invoke("draw-pairs", drawable / "pairs.csv", "--out", drawable / "pairs.png",
                    "--count", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": str(drawable / "pairs.png"), "same": 2, "different": 2}
    assert (drawable / "pairs.png").is_file()


def test_json_of_ls(drawable):
    result = invoke("ls", drawable / "tree", "--json")
    assert result.exit_code == 0, result.output
    paths = [f"{name}/{n}.png" for name in "abc" for n in range(2)]
    assert json.loads(result.stdout) == {"root": str(drawable / "tree"), "files": 6, "paths": paths}
