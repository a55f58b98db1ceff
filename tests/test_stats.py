"""dsxsd stats: counts and quantiles computed from known boxes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

import dsxsd
from dsxsd.cli import main

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


@pytest.fixture
def annotations(tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text(
        HEADER
        + "a.jpg,100,100,cat,0,0,10,20\n"  # 10 x 20
        + "a.jpg,100,100,cat,0,0,30,10\n"  # 30 x 10
        + "a.jpg,100,100,dog,0,0,20,20\n"  # 20 x 20
        + "b.jpg,100,100,dog,0,0,40,40\n"  # 40 x 40
        + "c.jpg,100,100,,,,,\n",  # no objects
        encoding="utf-8",
    )
    return path


def test_counts_and_quantiles(annotations):
    stats = dsxsd.dataset_stats(annotations)
    assert stats["images"] == 3 and stats["objects"] == 4
    assert stats["images_without_objects"] == 1
    assert stats["classes"] == {
        "cat": {"objects": 2, "images": 1},
        "dog": {"objects": 2, "images": 2},
    }
    assert stats["objects_per_image"]["q0"] == 0 and stats["objects_per_image"]["q100"] == 3
    assert stats["objects_per_image"]["q50"] == 1
    assert stats["box_width"]["q0"] == 10 and stats["box_width"]["q100"] == 40
    assert stats["box_width"]["q50"] == 25
    assert stats["box_area"]["q100"] == 1600
    assert stats["box_aspect"]["q0"] == 0.5 and stats["box_aspect"]["q100"] == 3
    assert "boxes" not in stats


def test_invalid_boxes_left_out_of_sizes(tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text(HEADER + "a.jpg,9,9,cat,5,5,1,1\na.jpg,9,9,cat,1,1,3,5\n")
    stats = dsxsd.dataset_stats(path)
    assert stats["objects"] == 2
    assert stats["box_width"] == {k: 2.0 for k in stats["box_width"]}


def test_cli_table_and_json(annotations):
    result = CliRunner().invoke(main, ["stats", str(annotations)])
    assert result.exit_code == 0, result.output
    assert "images: 3 (1 without objects)" in result.output
    assert "objects: 4" in result.output
    assert any(line.split() == ["dog", "2", "2"] for line in result.output.splitlines())
    result = CliRunner().invoke(main, ["stats", str(annotations), "--json"])
    assert json.loads(result.output)["classes"]["cat"] == {"objects": 2, "images": 1}


def test_cli_plot_writes_png_and_refuses_overwrite(annotations, tmp_path):
    plot = tmp_path / "stats.png"
    result = CliRunner().invoke(main, ["stats", str(annotations), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 100
    result = CliRunner().invoke(main, ["stats", str(annotations), "--plot", str(plot)])
    assert result.exit_code == 2 and "already exists" in result.output


def test_cli_plot_without_matplotlib_says_what_to_install(annotations, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = CliRunner().invoke(main, ["stats", str(annotations), "--plot",
                                       str(tmp_path / "s.png")])
    assert result.exit_code == 2
    # The plot extra: a user of the core package need not install TensorFlow for a plot.
    assert result.stderr == (
        f'error: {tmp_path / "s.png"}: plotting needs matplotlib: pip install "dsxsd[plot]"\n'
    )
    assert not (tmp_path / "s.png").exists()


def test_help():
    result = CliRunner().invoke(main, ["stats", "--help"])
    assert result.exit_code == 0 and "--plot" in result.output


def test_classes_are_listed_most_objects_first_then_by_name(tmp_path):
    # First appearance: zebra, ant, cat, bee; by count then name: cat, ant, bee, zebra.
    path = tmp_path / "ann.csv"
    path.write_text(
        HEADER + "a.jpg,9,9,zebra,1,1,3,5\na.jpg,9,9,ant,1,1,3,5\na.jpg,9,9,cat,1,1,3,5\n"
        + "b.jpg,9,9,cat,1,1,3,5\nb.jpg,9,9,bee,1,1,3,5\nc.jpg,9,9,cat,1,1,3,5\n"
    )
    assert list(dsxsd.dataset_stats(path)["classes"]) == ["cat", "ant", "bee", "zebra"]
    result = CliRunner().invoke(main, ["stats", str(path)])
    lines = result.output.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("class "))) + 2
    assert [line.split()[0] for line in lines[start:start + 4]] == ["cat", "ant", "bee", "zebra"]
    result = CliRunner().invoke(main, ["stats", str(path), "--json"])
    assert list(json.loads(result.output)["classes"]) == ["cat", "ant", "bee", "zebra"]
