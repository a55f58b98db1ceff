"""COCO: what CVAT/Roboflow files hold reads right; writing is stable; errors name the field."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.cli import main
from dsxsd.errors import DsxsdError, MalformedFileError
from dsxsd.formats.coco import to_document

DOCUMENT = {
    "info": None,
    "images": [
        {"id": 7, "file_name": "train/a.jpg", "width": 640, "height": 480},
        {"id": 3, "file_name": "b.jpg", "width": 100, "height": 50},
    ],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 20, 30.5, 40],
         "iscrowd": 0, "segmentation": [[10, 20, 40, 20, 40, 60]]},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1,
         "segmentation": {"counts": "abc", "size": [480, 640]}},
    ],
    "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": " dog "}, {"id": 90, "name": "toothbrush"}],
}


def write(tmp_path, document, name="instances.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_reads_ids_sub_folders_crowds_and_images_without_boxes(tmp_path):
    annotations = dsxsd.read(write(tmp_path, DOCUMENT))  # guessed as coco, not dsxsd json
    assert annotations.classes == ("car", "dog", "toothbrush")
    first, second = annotations.images
    assert (first.filename, first.width, first.height) == ("train/a.jpg", 640, 480)
    assert first.objects == (
        ObjectAnnotation("dog", BBox(10, 20, 40.5, 60)),
        ObjectAnnotation("car", BBox(0, 0, 5, 5), attributes={"iscrowd": 1}),
    )
    assert second.filename == "b.jpg" and second.objects == ()


def test_info_and_licenses_may_be_missing_and_annotations_too(tmp_path):
    document = {"images": [{"id": 1, "file_name": "x.png", "width": 2, "height": 2}], "categories": []}
    annotations = dsxsd.read(write(tmp_path, document), "coco")
    assert annotations.images == (ImageAnnotation("x.png", 2, 2),)


def test_writing_numbers_ids_in_order_and_uses_w_equals_xmax_minus_xmin(tmp_path):
    annotations = AnnotationSet(
        [
            ImageAnnotation("z.jpg", 10, 10, objects=[ObjectAnnotation("b", BBox(1, 2, 4, 8))]),
            ImageAnnotation("a.jpg", 10, 10, objects=[ObjectAnnotation("a", BBox(0, 0, 1, 1))]),
        ],
        classes=("a", "unused", "b"),
    )
    path = tmp_path / "out.json"
    dsxsd.write(annotations, path, "coco")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert [(i["id"], i["file_name"]) for i in document["images"]] == [(1, "z.jpg"), (2, "a.jpg")]
    assert [(c["id"], c["name"]) for c in document["categories"]] == [(1, "a"), (2, "unused"), (3, "b")]
    assert [(a["id"], a["image_id"], a["category_id"], a["bbox"]) for a in document["annotations"]] == [
        (1, 1, 3, [1, 2, 3, 6]),
        (2, 2, 1, [0, 0, 1, 1]),
    ]
    assert dsxsd.read(path, "coco") == annotations


def test_coco_to_voc_keeps_every_box(tmp_path):
    source = write(tmp_path, DOCUMENT)
    dsxsd.write(dsxsd.read(source, "coco"), tmp_path / "voc", "voc")
    back = dsxsd.read(tmp_path / "voc", "voc")
    boxes = sorted((o.label, o.bbox.as_tuple()) for i in back.images for o in i.objects)
    assert boxes == [("car", (0, 0, 5, 5)), ("dog", (10, 20, 40.5, 60))]


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda d: d["annotations"][1].update(category_id=4), "annotations[1].category_id", "category_id 4"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0].bbox", "not [x, y, w, h]"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]), "annotations[0].bbox", "'3'"),
        (lambda d: d["images"][1].pop("id"), "images[1].id", "missing"),
        (lambda d: d["categories"][0].update(name=""), "categories[0].name", "class name"),
        (lambda d: d.update(images={}), "images", "must be a list"),
    ],
)
def test_bad_values_name_the_file_and_field(tmp_path, change, field, words):
    document = json.loads(json.dumps(DOCUMENT))
    change(document)
    path = write(tmp_path, document)
    with pytest.raises(DsxsdError) as info:
        dsxsd.read(path, "coco")
    assert info.value.field == field
    assert words in str(info.value) and "instances.json" in str(info.value)


def test_skip_leaves_out_the_bad_annotation_and_says_where(tmp_path):
    document = json.loads(json.dumps(DOCUMENT))
    document["annotations"][0]["bbox"] = None
    annotations = dsxsd.read(write(tmp_path, document), "coco", on_error="skip")
    assert [o.label for o in annotations.images[0].objects] == ["car"]
    assert [s.reason.split(":")[0] for s in annotations.skipped] == ["annotations[0].bbox"]


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [\n  {"id": 1,,}\n]}', encoding="utf-8")
    with pytest.raises(MalformedFileError) as info:
        dsxsd.read(path, "coco")
    assert info.value.line == 2


def test_one_based_shifts_voc_corners_on_writing_and_back_on_reading(tmp_path):
    # VOC devkit boxes are 1-based inclusive: pixels 1..10 across is 10 pixels from x = 0.
    annotations = AnnotationSet(
        [ImageAnnotation("a.jpg", 20, 20, objects=[ObjectAnnotation("a", BBox(1, 5, 10, 7))])]
    )
    path = tmp_path / "out.json"
    dsxsd.write(annotations, path, "coco", one_based=True)
    written = json.loads(path.read_text(encoding="utf-8"))["annotations"][0]
    assert (written["bbox"], written["area"]) == ([0, 4, 10, 3], 30)
    assert dsxsd.read(path, "coco", one_based=True) == annotations
    assert dsxsd.read(path, "coco").images[0].objects[0].bbox == BBox(0, 4, 10, 7)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(*[st.integers(-5000, 5000)] * 4), max_size=5))
def test_one_based_round_trips_integer_boxes_exactly(corners):
    annotations = AnnotationSet(
        [ImageAnnotation("a.jpg", 9, 9, objects=[ObjectAnnotation("c", BBox(*c)) for c in corners])]
    )
    document = to_document(annotations, one_based=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        assert dsxsd.read(path, "coco", one_based=True) == annotations


def test_convert_one_based_option(tmp_path):
    source = tmp_path / "labels.csv"
    source.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,20,20,a,1,1,20,20\n")
    output = tmp_path / "out.json"
    result = CliRunner().invoke(main, ["convert", "csv2coco", str(source), str(output), "--one-based"])
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text(encoding="utf-8"))["annotations"][0]["bbox"] == [0, 0, 20, 20]
    back = tmp_path / "back.csv"
    result = CliRunner().invoke(main, ["convert", "coco2csv", str(output), str(back), "--one-based"])
    assert result.exit_code == 0, result.output
    assert "a.jpg,20,20,a,1,1,20,20" in back.read_text(encoding="utf-8")
    result = CliRunner().invoke(main, ["convert", "csv2voc", str(source), str(tmp_path / "v"), "--one-based"])
    assert result.exit_code == 2 and "--one-based" in result.output
