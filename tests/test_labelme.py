"""labelme (read only): rectangles are boxes, other shapes are reported or boxed."""

from __future__ import annotations

import json

import pytest

import dsxsd
from dsxsd import BBox, ObjectAnnotation
from dsxsd.errors import DsxsdError


def labelme(shapes, image_path="..\\images\\cat.jpg", **extra):
    return {"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": 480, "imageWidth": 640, **extra}


def rect(label, a, b, kind="rectangle"):
    return {"label": label, "points": [a, b], "group_id": None, "shape_type": kind, "flags": {}}


def save(folder, name, document):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_folder_reads_with_corners_normalised_and_other_shapes_reported(tmp_path):
    polygon = {"label": "tail", "points": [[1, 9], [5, 2], [3, 7]], "shape_type": "polygon"}
    save(tmp_path / "lm", "cat.json", labelme([rect("cat", [50, 60], [10, 20]), polygon]))
    save(tmp_path / "lm", "empty.json", labelme([], image_path="empty.png"))
    annotations = dsxsd.read(tmp_path / "lm")  # a folder of .json guesses labelme, not voc
    cat, empty = annotations.images
    assert (cat.filename, cat.path, cat.width, cat.height) == ("cat.jpg", "../images/cat.jpg", 640, 480)
    assert cat.objects == (ObjectAnnotation("cat", BBox(10, 20, 50, 60)),)
    assert empty.filename == "empty.png" and empty.objects == ()
    assert ["shapes[1]: polygon shape 'tail' is not a box"] == [s.reason for s in annotations.skipped]


def test_shapes_as_boxes_takes_the_bounding_box(tmp_path):
    polygon = {"label": "tail", "points": [[1, 9], [5, 2], [3, 7]], "shape_type": "polygon"}
    path = save(tmp_path, "one.json", labelme([polygon]))
    annotations = dsxsd.read(path, "labelme", shapes_as_boxes=True)
    assert annotations.images[0].objects == (ObjectAnnotation("tail", BBox(1, 2, 5, 9)),)
    assert annotations.skipped == ()


def test_labelme_file_guesses_labelme_and_converts_to_csv(tmp_path):
    path = save(tmp_path, "one.json", labelme([rect("dog", [1, 2], [3, 4])]))
    assert dsxsd.guess_format(path) == "labelme"
    dsxsd.write(dsxsd.read(path), tmp_path / "out.csv", "csv")
    assert "cat.jpg,640,480,dog,1,2,3,4" in (tmp_path / "out.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "document, field",
    [
        (labelme([rect("dog", [1, 2], [3, "x"])]), "shapes[0].points"),
        (labelme([rect("", [1, 2], [3, 4])]), "shapes[0].label"),
        (labelme([], image_path=""), "imagePath"),
        ({**labelme([]), "imageWidth": -3}, "imageWidth"),
    ],
)
def test_bad_files_name_file_and_field(tmp_path, document, field):
    path = save(tmp_path, "bad.json", document)
    with pytest.raises(DsxsdError) as info:
        dsxsd.read(path, "labelme")
    assert info.value.field == field and "bad.json" in str(info.value)


def test_labelme_cannot_be_written(tmp_path):
    assert "labelme" not in dsxsd.format_names(writable=True)
    with pytest.raises(DsxsdError, match="cannot be written"):
        dsxsd.write(dsxsd.AnnotationSet(), tmp_path / "x.json", "labelme")


def test_cli_labelme2csv_with_shapes_as_boxes(tmp_path):
    from click.testing import CliRunner

    from dsxsd.cli import main

    polygon = {"label": "tail", "points": [[1, 9], [5, 2]], "shape_type": "polygon"}
    save(tmp_path / "lm", "cat.json", labelme([rect("cat", [5, 6], [1, 2]), polygon]))
    out = tmp_path / "out.csv"
    args = ["convert", "labelme2csv", str(tmp_path / "lm"), str(out), "--shapes-as-boxes"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = out.read_text(encoding="utf-8").splitlines()[1:]
    assert [row.split(",")[:8] for row in rows] == [
        ["cat.jpg", "640", "480", "cat", "1", "2", "5", "6"],
        ["cat.jpg", "640", "480", "tail", "1", "2", "5", "9"],
    ]
