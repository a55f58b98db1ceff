"""Golden files: annotation files as CVAT, Roboflow and labelme write them, converted to
CSV, must give exactly the committed expected output (checked by hand once: each box is
``x + w`` / ``y + h`` of its source, corners in min/max order)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main

DATA = Path(__file__).parent / "data"

CASES = [
    ("coco", DATA / "coco" / "cvat_instances.json", DATA / "coco" / "expected" / "cvat_instances.csv", []),
    ("coco", DATA / "coco" / "roboflow_instances.json", DATA / "coco" / "expected" / "roboflow_instances.csv", []),
    ("labelme", DATA / "labelme", DATA / "labelme" / "expected" / "rectangles.csv", []),
    ("labelme", DATA / "labelme", DATA / "labelme" / "expected" / "shapes_as_boxes.csv", ["--shapes-as-boxes"]),
]


@pytest.mark.parametrize("source, given, expected, options", CASES, ids=lambda v: getattr(v, "name", None))
def test_conversion_to_csv_gives_the_golden_bytes(tmp_path, source, given, expected, options):
    output = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["convert", f"{source}2csv", str(given), str(output), *options])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == expected.read_bytes()


def test_the_format_is_guessed_for_every_golden_input():
    assert [dsxsd.guess_format(given) for _, given, _, _ in CASES] == ["coco", "coco", "labelme", "labelme"]


def test_cvat_export_keeps_float_boxes_crowds_and_the_image_without_objects():
    annotations = dsxsd.read(DATA / "coco" / "cvat_instances.json")
    assert annotations.classes == ("car", "person", "traffic light")
    first, second, third = annotations.images
    assert [o.bbox.as_tuple() for o in first.objects] == [
        (370.85, 146.39, 370.85 + 66.2, 146.39 + 45.77),
        (699.0, 300.5, 725.25, 401.0),
    ]
    assert second.objects[0].attributes == {"iscrowd": 1}  # RLE segmentation is ignored
    assert third.filename == "frame_000002.PNG" and third.objects == ()


def test_roboflow_export_keeps_id_zero_supercategory_and_sub_folders():
    annotations = dsxsd.read(DATA / "coco" / "roboflow_instances.json")
    assert annotations.classes == ("shapes-8Xk2", "circle", "square")
    assert [i.filename.split("/")[0] for i in annotations.images] == ["train", "train"]
    assert [o.label for o in annotations.images[0].objects] == ["square", "circle"]


def test_labelme_reports_each_shape_it_leaves_out():
    plain = dsxsd.read(DATA / "labelme", on_error="skip")
    assert [(Path(s.file).name, s.reason) for s in plain.skipped] == [
        ("cat_0001.json", "shapes[1]: polygon shape 'ear' is not a box"),
        ("cat_0001.json", "shapes[2]: circle shape 'ball' is not a box"),
        ("cat_0001.json", "shapes[3]: point shape 'nose' is not a box"),
        ("dog_0002.json", "shapes[0]: polygon shape 'dog' is not a box"),  # labelme 3: no shape_type
    ]
    boxed = dsxsd.read(DATA / "labelme", shapes_as_boxes=True)
    assert [s.reason for s in boxed.skipped] == ["shapes[3]: point shape 'nose' has no area"]
    # imageData is there (base64 PNG) but not needed; the Windows imagePath is kept as path.
    assert boxed.images[0].path == "../JPEGImages/cat_0001.jpg"
