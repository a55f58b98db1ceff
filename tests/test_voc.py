"""The Pascal VOC format: golden files for what real tools write, hostile and broken input,
and the writer's exact shape."""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image

from dsxsd.errors import (
    DsxsdError,
    HostileInputError,
    InvalidAnnotationError,
    InvalidValueError,
    MalformedFileError,
    MissingFieldError,
    OutputExistsError,
)
from dsxsd import _engine
from dsxsd.formats import _xml, voc
from dsxsd.formats.csv import number_text
from dsxsd.annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation, SkippedFile

DATA = Path(__file__).parent / "data" / "voc"
GOOD = DATA / "good"
BAD = DATA / "bad"

read = voc.FORMAT.reader
write = voc.FORMAT.writer


def read_one(path: Path, **options) -> ImageAnnotation:
    annotations = read(path, **options)
    assert len(annotations.images) == 1
    return annotations.images[0]


def obj(label, box, **fields) -> ObjectAnnotation:
    return ObjectAnnotation(label, BBox(*box), **fields)


def annotation_xml(body: str, filename: str = "x.jpg") -> str:
    return f"<annotation>\n<filename>{filename}</filename>\n{body}\n</annotation>\n"


def box_xml(name="dog", xmin="1", ymin="2", xmax="3", ymax="4", extra="") -> str:
    return (
        f"<object><name>{name}</name>{extra}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


# ------------------------------------------------------------------ golden files


def test_labelimg_file_reads_every_field():
    image = read_one(GOOD / "labelimg.xml")
    assert image == ImageAnnotation(
        filename="dog_001.jpg",
        width=640,
        height=480,
        depth=3,
        folder="images",
        path="/home/ann/data/images/dog_001.jpg",
        objects=(
            obj("dog", (48, 240, 195, 371)),
            obj("person", (8, 12, 352, 498), difficult=True, truncated=True, pose="Left"),
        ),
    )


def test_cvat_file_keeps_floats_occluded_and_attributes():
    image = read_one(GOOD / "cvat.xml")
    # <folder></folder> and <depth></depth> are empty: unknown, not "".
    assert (image.filename, image.width, image.height, image.depth) == (
        "frame_000012.png", 1280, 720, None,
    )
    assert image.folder is None and image.path is None
    car, person = image.objects
    assert car == obj(
        "car", (12.5, 30.0, 410.25, 222.75), occluded=True,
        attributes={"color": "red", "parked": "true"},
    )
    # <actions> is not kept; <pose> is absent on the car and present on the person.
    assert person == obj(
        "person", (600.0, 100.0, 650.5, 300.0), truncated=True, occluded=False, pose="Frontal"
    )


def test_labelme2voc_file_height_first_and_empty_flags():
    image = read_one(GOOD / "labelme2voc.xml")
    assert (image.width, image.height, image.depth) == (500, 338, 3)
    assert image.folder is None
    assert image.objects == (
        obj("person", (191.0, 107.0, 313.0, 329.0)),
        obj("bottle", (329.5, 72.25, 432.0, 335.0)),
    )


def test_roboflow_file_bndbox_children_in_its_order():
    image = read_one(GOOD / "roboflow.xml")
    assert image.filename == "IMG_2041_jpg.rf.5c2a1b.jpg"
    assert image.path == "IMG_2041_jpg.rf.5c2a1b.jpg"
    assert image.objects == (obj("helmet", (152.5, 33.5, 205, 88), occluded=False),)


def test_utf8_bom():
    assert (GOOD / "bom.xml").read_bytes().startswith(b"\xef\xbb\xbf")
    image = read_one(GOOD / "bom.xml")
    assert image.filename == "bom.jpg"
    assert image.objects == (obj("cat", (1, 2, 30, 40)),)


def test_gbk_declared_encoding_is_honoured():
    raw = (GOOD / "gbk.xml").read_bytes()
    assert "行人".encode("gbk") in raw and "行人".encode("utf-8") not in raw
    image = read_one(GOOD / "gbk.xml")
    assert image.filename == "图片_01.jpg"
    assert [o.label for o in image.objects] == ["行人", "自行车"]


def test_latin1_declared_encoding_is_honoured():
    image = read_one(GOOD / "latin1.xml")
    assert image.filename == "déjà.jpg"
    assert image.objects[0].label == "café"


def test_non_ascii_class_names():
    image = read_one(GOOD / "unicode_names.xml")
    assert image.filename == "画像.jpg"
    assert [o.label for o in image.objects] == ["猫", "Straßenbahn", "🚲 bike"]


def test_size_with_height_before_width():
    image = read_one(GOOD / "size_height_first.xml")
    assert (image.width, image.height, image.depth) == (256, 1024, 1)


def test_size_missing_and_no_image_gives_none():
    image = read_one(GOOD / "size_missing.xml")
    assert (image.width, image.height, image.depth) == (None, None, None)
    assert image.objects == (obj("box", (1, 2, 3, 4)),)


def test_size_zero_is_unknown():
    image = read_one(GOOD / "size_zero.xml")
    assert (image.width, image.height, image.depth) == (None, None, 3)


def test_empty_difficult_truncated_pose():
    image = read_one(GOOD / "empty_flags.xml")
    assert image.objects == (obj("cup", (3, 4, 5, 6)),)
    assert image.objects[0].pose is None


def test_bndbox_children_and_object_children_in_any_order():
    image = read_one(GOOD / "bndbox_order.xml")
    assert image.objects == (obj("kite", (10, 20, 70, 90)),)


def test_white_space_around_names_and_numbers():
    image = read_one(GOOD / "whitespace.xml")
    assert (image.filename, image.width, image.height, image.depth) == ("spaced.jpg", 300, 200, 3)
    assert image.objects == (
        obj("traffic light", (10.5, 20, 30, 40.25), truncated=True, pose="Rear"),
    )


def test_image_without_objects():
    image = read_one(GOOD / "no_objects.xml")
    assert image == ImageAnnotation("empty_scene.jpg", 100, 80, 3)


def test_parts_are_not_objects_and_their_boxes_are_not_the_object_box():
    annotations = read(GOOD / "parts.xml")
    (image,) = annotations.images
    # The first <part> comes before the object's own <bndbox>: position would be wrong.
    assert image.objects == (obj("person", (70, 107, 233, 484), pose="Frontal"),)
    assert annotations.classes == ("person",)
    assert image.folder == "VOC2012"


def test_folder_reads_xml_only_top_level_sorted_by_name(tmp_path):
    folder = tmp_path / "Annotations"
    shutil.copytree(GOOD, folder)
    (folder / "nested").mkdir()
    shutil.copy(GOOD / "labelimg.xml", folder / "nested" / "deeper.xml")
    (folder / "._labelimg.xml").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (folder / "picture.jpg").write_bytes(b"\xff\xd8 not annotations")
    annotations = read(folder)
    expected_files = sorted(p.name for p in GOOD.glob("*.xml"))
    assert len(expected_files) == 16
    assert [im.filename for im in annotations.images] == [
        read_one(GOOD / name).filename for name in expected_files
    ]
    assert annotations.skipped == ()
    assert annotations.classes[:3] == ("kite", "cat", "car")


def test_single_file_and_missing_path(tmp_path):
    assert read_one(GOOD / "labelimg.xml").filename == "dog_001.jpg"
    with pytest.raises(DsxsdError) as caught:
        read(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(caught.value)


def test_filename_falls_back_to_path(tmp_path):
    file = tmp_path / "a.xml"
    file.write_text("<annotation><path>C:\\data\\img7.jpg</path></annotation>")
    assert read_one(file).filename == "img7.jpg"


# ------------------------------------------------------------- sizes from headers


def _truncated_png(path: Path, size, mode="RGB") -> None:
    """A PNG whose header is whole and whose pixel data is cut short: opening it works,
    decoding it fails, so reading a size from it proves nothing was decoded."""
    image = Image.effect_noise(size, 64).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as reopened, pytest.raises(OSError):
        reopened.load()


def test_missing_size_is_read_from_image_header_beside_xml(tmp_path):
    shutil.copy(GOOD / "size_missing.xml", tmp_path)
    _truncated_png(tmp_path / "nosize.png", (123, 45))
    image = read_one(tmp_path / "size_missing.xml")
    assert (image.width, image.height, image.depth) == (123, 45, 3)


def test_missing_size_is_read_from_images_folder_option(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    shutil.copy(GOOD / "size_missing.xml", tmp_path / "Annotations")
    _truncated_png(tmp_path / "JPEGImages" / "nosize.png", (64, 32), mode="L")
    assert read_one(tmp_path / "Annotations").width is None
    image = read_one(tmp_path / "Annotations", images=tmp_path / "JPEGImages")
    assert (image.width, image.height, image.depth) == (64, 32, 1)


def test_zero_size_filled_from_header_keeps_written_depth(tmp_path):
    shutil.copy(GOOD / "size_zero.xml", tmp_path)
    Image.new("RGBA", (10, 20)).save(tmp_path / "zero.jpg", "PNG")  # wrong suffix on purpose
    image = read_one(tmp_path / "size_zero.xml")
    assert (image.width, image.height, image.depth) == (10, 20, 3)


def test_header_lookup_stays_inside_the_folder(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    Image.new("RGB", (7, 9)).save(tmp_path / "outside.png")
    (inner / "a.xml").write_text(annotation_xml("", filename="../outside.png"))
    image = read_one(inner / "a.xml")
    assert (image.width, image.height) == (None, None)
    # The same name inside the folder is found (by its base name).
    Image.new("RGB", (3, 5)).save(inner / "outside.png")
    assert (read_one(inner / "a.xml").width, read_one(inner / "a.xml").height) == (3, 5)


def test_unreadable_image_leaves_size_unknown(tmp_path):
    (tmp_path / "a.xml").write_text(annotation_xml("", filename="a.jpg"))
    (tmp_path / "a.jpg").write_bytes(b"this is not an image")
    assert read_one(tmp_path / "a.xml").width is None


# ------------------------------------------------------------------ hostile input


def test_billion_laughs_refused_at_once():
    with pytest.raises(HostileInputError) as caught:
        read(BAD / "billion_laughs.xml")
    assert caught.value.file == str(BAD / "billion_laughs.xml")
    assert "billion_laughs.xml" in str(caught.value)
    assert "entit" in str(caught.value)


def _xxe_document(secret: Path, encoding: str = "utf-8") -> bytes:
    text = (
        f'<?xml version="1.0" encoding="{encoding.upper()}"?>\n'
        f'<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        "<annotation><filename>&xxe;</filename>"
        "<object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
        "<ymax>2</ymax></bndbox></object></annotation>\n"
    )
    return text.encode(encoding)


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-5f1c9e")
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_external_entity_is_refused_and_leaks_nothing(tmp_path, secret, encoding):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "xxe.xml").write_bytes(_xxe_document(secret, encoding))
    with pytest.raises(HostileInputError) as caught:
        read(folder)
    assert "xxe.xml" in str(caught.value)
    assert "TOP-SECRET" not in str(caught.value)
    skipped = read(folder, on_error="skip")
    assert skipped.images == ()
    assert "TOP-SECRET" not in repr(skipped.skipped)


def test_parser_itself_never_resolves_external_entities(secret, monkeypatch):
    # Defence in depth: without the byte scan, the parser settings alone leak nothing,
    # and the declared entity is still refused after parsing.
    data = _xxe_document(secret)
    root = etree.fromstring(data, _xml.parser())
    assert b"TOP-SECRET" not in etree.tostring(root)
    monkeypatch.setattr(_xml, "_ENTITY_DECLARATIONS", ())
    with pytest.raises(HostileInputError) as caught:
        _xml.parse(data, "x.xml")
    assert "TOP-SECRET" not in str(caught.value)


# ------------------------------------------------------------------ broken input


def test_malformed_xml_names_file_and_line():
    with pytest.raises(MalformedFileError) as caught:
        read(BAD / "malformed.xml")
    error = caught.value
    assert error.file == str(BAD / "malformed.xml")
    assert error.line == 15
    assert str(error).startswith(f"{BAD / 'malformed.xml'}, line 15: not well-formed XML")


@pytest.mark.parametrize("content", [b"", b"   \n", b"\xef\xbb\xbf", b"<annotation>"])
def test_empty_or_cut_files_are_malformed(tmp_path, content):
    (tmp_path / "a.xml").write_bytes(content)
    with pytest.raises(MalformedFileError) as caught:
        read(tmp_path / "a.xml")
    assert caught.value.file == str(tmp_path / "a.xml")


def test_root_must_be_annotation():
    with pytest.raises(InvalidAnnotationError, match=r"line 2: the root element is <svg>"):
        read(BAD / "not_annotation.xml")


def test_missing_name_names_object_and_field():
    with pytest.raises(MissingFieldError) as caught:
        read(BAD / "missing_name.xml")
    error = caught.value
    assert (error.field, error.line) == ("name", 17)
    assert "object 1" in str(error) and "missing_name.xml" in str(error)


def test_empty_name_is_missing():
    with pytest.raises(MissingFieldError, match="object 0: <name> is missing or empty"):
        read(BAD / "empty_name.xml")


def test_missing_coordinate_names_object_and_field():
    with pytest.raises(MissingFieldError) as caught:
        read(BAD / "missing_coordinate.xml")
    assert (caught.value.field, caught.value.line) == ("xmax", 10)
    assert "object 0: <bndbox><xmax>" in str(caught.value)


def test_non_numeric_coordinate():
    with pytest.raises(InvalidValueError) as caught:
        read(BAD / "non_numeric.xml")
    assert (caught.value.field, caught.value.line) == ("ymin", 12)
    assert "'two', not a number" in str(caught.value)


@pytest.mark.parametrize(
    "body, error, field",
    [
        (box_xml(xmin="nan"), InvalidValueError, "xmin"),
        (box_xml(ymax="inf"), InvalidValueError, "ymax"),
        (box_xml(xmax="1_000"), InvalidValueError, "xmax"),
        (box_xml(ymin=""), MissingFieldError, "ymin"),
        ("<object><name>dog</name></object>", MissingFieldError, "bndbox"),
        (box_xml(extra="<difficult>maybe</difficult>"), InvalidValueError, "difficult"),
        ("<size><width>12.5</width><height>3</height></size>", InvalidValueError, "width"),
        ("<size><width>-4</width><height>3</height></size>", InvalidValueError, "width"),
        ("<size><width>4</width><height>tall</height></size>", InvalidValueError, "height"),
    ],
)
def test_bad_values(tmp_path, body, error, field):
    (tmp_path / "a.xml").write_text(annotation_xml(body))
    with pytest.raises(error) as caught:
        read(tmp_path / "a.xml")
    assert caught.value.field == field
    assert caught.value.file == str(tmp_path / "a.xml")
    assert caught.value.line is not None


def test_missing_filename(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation><size/></annotation>")
    with pytest.raises(MissingFieldError) as caught:
        read(tmp_path / "a.xml")
    assert caught.value.field == "filename"


def test_number_forms_accepted(tmp_path):
    (tmp_path / "a.xml").write_text(
        annotation_xml(
            "<size><width>500.0</width><height>3e2</height></size>"
            + box_xml(xmin="+1.5", ymin=".25", xmax="1e1", ymax="12.")
            + box_xml(extra="<difficult>true</difficult><truncated>False</truncated>")
        )
    )
    image = read_one(tmp_path / "a.xml")
    assert (image.width, image.height) == (500, 300)
    assert image.objects[0].bbox == BBox(1.5, 0.25, 10.0, 12.0)
    assert (image.objects[1].difficult, image.objects[1].truncated) == (True, False)


def test_model_value_errors_become_errors_naming_the_file(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("the model says no")

    monkeypatch.setattr(voc, "ObjectAnnotation", refuse)
    with pytest.raises(InvalidValueError) as caught:
        voc.read_file(GOOD / "labelimg.xml")  # the reference reader, which builds the objects
    assert str(caught.value) == f"{GOOD / 'labelimg.xml'}, line 14: object 0: the model says no"


def _mixed_folder(tmp_path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(GOOD / "labelimg.xml", folder / "a_good.xml")
    shutil.copy(BAD / "malformed.xml", folder / "b_malformed.xml")
    shutil.copy(GOOD / "no_objects.xml", folder / "c_good.xml")
    shutil.copy(BAD / "billion_laughs.xml", folder / "d_hostile.xml")
    shutil.copy(BAD / "missing_name.xml", folder / "e_missing.xml")
    return folder


def test_skip_mode_keeps_good_files_and_lists_bad_ones(tmp_path):
    folder = _mixed_folder(tmp_path)
    annotations = read(folder, on_error="skip")
    assert [im.filename for im in annotations.images] == ["dog_001.jpg", "empty_scene.jpg"]
    assert [(Path(s.file).name, s.line) for s in annotations.skipped] == [
        ("b_malformed.xml", 15),
        ("d_hostile.xml", None),
        ("e_missing.xml", 17),
    ]
    assert all(isinstance(s, SkippedFile) for s in annotations.skipped)
    assert annotations.skipped[0].reason.startswith("not well-formed XML")
    assert "entities" in annotations.skipped[1].reason
    assert annotations.skipped[2].reason == "object 1: <name> is missing or empty"


def test_raise_mode_stops_at_first_bad_file(tmp_path):
    with pytest.raises(MalformedFileError, match="b_malformed.xml"):
        read(_mixed_folder(tmp_path))


# ------------------------------------------------------------------ writing


def rich_set() -> AnnotationSet:
    """Every field VOC holds, with images in file-name order (the order reading gives)."""
    return AnnotationSet(
        (
            ImageAnnotation(
                "a&b.jpg",
                640,
                480,
                3,
                (
                    obj("a&b <c>", (0, 0, 639, 479)),
                    obj("猫", (0.1 + 0.2, 1e-05, 12.5, 1e20), difficult=True, pose="Left"),
                    obj("dog", (-3, 4, 5, 6), truncated=True, occluded=False),
                    obj("dog", (5, 6, 1, 2), occluded=True),
                ),
                folder="JPEGImages",
                path="/data/VOC/JPEGImages/a&b <c>.jpg",
            ),
            ImageAnnotation("b.png", None, None, None, (obj("cat", (1, 2, 3, 4)),)),
            ImageAnnotation("c.jpg", 10, 20, None),
            ImageAnnotation("sub/d.jpeg", 5, 5, 1, folder="x", path="C:\\pics\\d.jpeg"),
        )
    )


def test_round_trip_keeps_every_field(tmp_path):
    original = rich_set()
    write(original, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a&b.xml", "b.xml", "c.xml", "d.xml",
    ]
    again = read(tmp_path / "out")
    assert again == original
    assert again.images[0].objects[1].bbox.xmin == 0.1 + 0.2


def test_round_trip_of_golden_files(tmp_path):
    original = read(GOOD)
    write(original, tmp_path / "out")
    again = read(tmp_path / "out")
    # Written as <stem>.xml, read back in that order; CVAT's attributes are not written.
    expected = [
        dataclasses.replace(
            image,
            objects=tuple(dataclasses.replace(o, attributes={}) for o in image.objects),
        )
        for image in original.images
    ]
    assert sorted(again.images, key=_stem) == sorted(expected, key=_stem)
    assert len(again.images) == 16
    assert any(o.attributes for image in original.images for o in image.objects)


def _stem(image: ImageAnnotation) -> str:
    return image.stem


def test_writer_uses_labelimg_element_order(tmp_path):
    write(rich_set(), tmp_path / "out")
    root = etree.parse(str(tmp_path / "out" / "a&b.xml")).getroot()
    assert [child.tag for child in root] == [
        "folder", "filename", "path", "source", "size", "segmented",
        "object", "object", "object", "object",
    ]
    assert root.xpath("/annotation/source/*/text()") == ["Unknown"]
    assert [e.tag for e in root.xpath("/annotation/source/*")] == ["database"]
    assert [e.tag for e in root.xpath("/annotation/size/*")] == ["width", "height", "depth"]
    assert root.xpath("/annotation/size/*/text()") == ["640", "480", "3"]
    assert [e.tag for e in root.xpath("/annotation/object[1]/*")] == [
        "name", "pose", "truncated", "difficult", "bndbox",
    ]
    assert [e.tag for e in root.xpath("/annotation/object[1]/bndbox/*")] == [
        "xmin", "ymin", "xmax", "ymax",
    ]
    assert [e.tag for e in root.xpath("/annotation/object[4]/*")] == [
        "name", "pose", "truncated", "difficult", "bndbox", "occluded",
    ]
    assert root.xpath("/annotation/object/pose/text()") == [
        "Unspecified", "Left", "Unspecified", "Unspecified",
    ]
    assert root.xpath("/annotation/object/difficult/text()") == ["0", "1", "0", "0"]
    assert root.xpath("/annotation/object/truncated/text()") == ["0", "0", "1", "0"]
    assert root.xpath("/annotation/object/occluded/text()") == ["0", "1"]


def test_writer_numbers(tmp_path):
    write(rich_set(), tmp_path / "out")
    root = etree.parse(str(tmp_path / "out" / "a&b.xml")).getroot()
    assert root.xpath("/annotation/object[1]/bndbox/*/text()") == ["0", "0", "639", "479"]
    assert root.xpath("/annotation/object[2]/bndbox/*/text()") == [
        "0.30000000000000004", "1e-05", "12.5", "1e+20",
    ]
    assert root.xpath("/annotation/object[3]/bndbox/*/text()") == ["-3", "4", "5", "6"]
    assert number_text(12.0) == "12"
    assert number_text(-0.0) == "0"
    assert number_text(2.0**53) == "9007199254740992.0"
    assert float(number_text(2.0**53)) == 2.0**53


def test_writer_bytes_are_labelimg_shaped(tmp_path):
    annotations = AnnotationSet(
        (ImageAnnotation("img.jpg", 4, 3, 3, (obj("dog", (1, 2, 3.5, 3)),), folder="imgs"),)
    )
    write(annotations, tmp_path / "out")
    assert (tmp_path / "out" / "img.xml").read_bytes() == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<annotation>\n"
        b"\t<folder>imgs</folder>\n"
        b"\t<filename>img.jpg</filename>\n"
        b"\t<source>\n\t\t<database>Unknown</database>\n\t</source>\n"
        b"\t<size>\n\t\t<width>4</width>\n\t\t<height>3</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        b"\t<segmented>0</segmented>\n"
        b"\t<object>\n"
        b"\t\t<name>dog</name>\n"
        b"\t\t<pose>Unspecified</pose>\n"
        b"\t\t<truncated>0</truncated>\n"
        b"\t\t<difficult>0</difficult>\n"
        b"\t\t<bndbox>\n"
        b"\t\t\t<xmin>1</xmin>\n\t\t\t<ymin>2</ymin>\n"
        b"\t\t\t<xmax>3.5</xmax>\n\t\t\t<ymax>3</ymax>\n"
        b"\t\t</bndbox>\n"
        b"\t</object>\n"
        b"</annotation>\n"
    )


def test_writer_escapes(tmp_path):
    write(rich_set(), tmp_path / "out")
    raw = (tmp_path / "out" / "a&b.xml").read_bytes()
    assert b"<name>a&amp;b &lt;c&gt;</name>" in raw
    assert b"a&b" not in raw
    assert read(tmp_path / "out").images[0].objects[0].label == "a&b <c>"


def test_missing_sizes_are_omitted_and_read_back_as_none(tmp_path):
    write(rich_set(), tmp_path / "out")
    root = etree.parse(str(tmp_path / "out" / "b.xml")).getroot()
    assert root.xpath("/annotation/size/*") == []
    root = etree.parse(str(tmp_path / "out" / "c.xml")).getroot()
    assert [e.tag for e in root.xpath("/annotation/size/*")] == ["width", "height"]
    image = read_one(tmp_path / "out" / "b.xml")
    assert (image.width, image.height, image.depth) == (None, None, None)


def test_writing_twice_gives_identical_bytes(tmp_path):
    write(rich_set(), tmp_path / "one")
    write(rich_set(), tmp_path / "two")
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    assert one == two and len(one) == 4


@pytest.mark.parametrize("names", [("a.jpg", "a.png"), ("A.jpg", "a.jpg"), ("x/a.jpg", "y/a.jpg")])
def test_two_images_with_one_stem_are_refused(tmp_path, names):
    annotations = AnnotationSet(tuple(ImageAnnotation(name) for name in names))
    with pytest.raises(InvalidAnnotationError) as caught:
        write(annotations, tmp_path / "out")
    assert repr(names[0]) in str(caught.value) and repr(names[1]) in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind


def test_text_xml_cannot_hold_is_refused(tmp_path):
    image = ImageAnnotation("a.jpg", objects=(obj("bad\x01", (1, 2, 3, 4)),))
    annotations = AnnotationSet((image,))
    with pytest.raises(InvalidValueError, match=r"image 'a.jpg': object 0: .*XML compatible"):
        write(annotations, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.xml").write_text("old")
    with pytest.raises(OutputExistsError):
        write(rich_set(), out)
    assert (out / "stale.xml").read_text() == "old"
    write(rich_set(), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["a&b.xml", "b.xml", "c.xml", "d.xml"]


def test_lossy_declares_what_voc_cannot_hold(tmp_path):
    assert set(voc.FORMAT.lossy) == {"attributes", "classes", "image_order"}
    annotations = AnnotationSet(
        (
            ImageAnnotation("z.jpg"),
            ImageAnnotation(
                "a.jpg", 1, 1, 3, (obj("b", (0, 0, 1, 1), attributes={"color": "red"}),),
                attributes={"k": 1},
            ),
        ),
        classes=("unused", "b"),
    )
    write(annotations, tmp_path / "out")
    assert b"color" not in (tmp_path / "out" / "a.xml").read_bytes()
    again = read(tmp_path / "out")
    assert [im.filename for im in again.images] == ["a.jpg", "z.jpg"]
    assert again.images[0].attributes == {}
    assert again.images[0].objects[0].attributes == {}
    assert again.classes == ("b",)


def test_pose_unspecified_and_none_are_one(tmp_path):
    (tmp_path / "a.xml").write_text(
        annotation_xml(box_xml(extra="<pose>Unspecified</pose>") + box_xml(extra="<pose/>"))
    )
    poses = [o.pose for o in read_one(tmp_path / "a.xml").objects]
    assert poses == [None, None]


def test_format_registration():
    assert voc.FORMAT.name == "voc"
    assert voc.FORMAT.suffixes == (".xml", "/")
    assert voc.FORMAT.output_is_dir is True


# ------------------------------------------------------------------ through the API and CLI

def test_api_guesses_voc_from_folder_and_xml_file(tmp_path):
    import dsxsd

    assert dsxsd.guess_format(GOOD) == "voc"
    assert dsxsd.guess_format(GOOD / "labelimg.xml") == "voc"
    assert dsxsd.read(GOOD) == read(GOOD)
    dsxsd.write(rich_set(), tmp_path / "out", "voc")
    assert dsxsd.read(tmp_path / "out", "voc") == rich_set()


def test_cli_voc2json(tmp_path):
    from click.testing import CliRunner

    from dsxsd.cli import main

    out = tmp_path / "labels.json"
    result = CliRunner().invoke(main, ["convert", "voc2json", str(GOOD), str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["format"] == "dsxsd.annotations"
    assert [im["filename"] for im in document["images"]][:3] == [
        "order.jpg", "bom.jpg", "frame_000012.png",
    ]
    cvat = document["images"][2]
    assert [o["class"] for o in cvat["objects"]] == ["car", "person"]
    assert cvat["objects"][0]["bbox"] == {
        "xmin": 12.5, "ymin": 30.0, "xmax": 410.25, "ymax": 222.75,
    }
    assert document["images"][4]["objects"][0]["class"] == "行人"


def test_cli_malformed_file_is_one_line_and_exit_1(tmp_path):
    from click.testing import CliRunner

    from dsxsd.cli import main

    out = tmp_path / "labels.json"
    folder = _mixed_folder(tmp_path)
    result = CliRunner().invoke(main, ["convert", "voc2json", str(folder), str(out)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "b_malformed.xml, line 15: not well-formed XML" in result.output
    assert not out.exists()


def test_cli_skip_writes_good_files_and_a_report(tmp_path):
    from click.testing import CliRunner

    from dsxsd.cli import main

    out = tmp_path / "labels.json"
    folder = _mixed_folder(tmp_path)
    result = CliRunner().invoke(
        main, ["convert", "voc2json", "--on-error", "skip", str(folder), str(out)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [im["filename"] for im in document["images"]] == ["dog_001.jpg", "empty_scene.jpg"]
    report = (tmp_path / "labels.json.skipped.csv").read_text(encoding="utf-8").splitlines()
    assert report[0] == "file,line,reason"
    assert [line.split(",")[:2] for line in report[1:]] == [
        [str(folder / "b_malformed.xml"), "15"],
        [str(folder / "d_hostile.xml"), ""],
        [str(folder / "e_missing.xml"), "17"],
    ]


class _ShortReads:
    """``os`` as a network or FUSE file system may behave: a read returns at most 100
    bytes, whatever was asked."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def read(fd: int, size: int) -> bytes:
        return os.read(fd, min(size, 100))


def test_short_reads_never_cut_a_file(tmp_path, monkeypatch):
    """Folders are read with one read per file where a file is small (a shorter read
    than asked means the end on a local disk); where a file system returns less, the
    file is still read whole, with the same result."""
    images = [
        ImageAnnotation(f"img_{i}.jpg", 640, 480, 3,
                        [obj("dog", (i, 2, 30 + i, 40)) for _ in range(i % 4)], folder="f")
        for i in range(12)
    ]
    (tmp_path / "odd.xml").write_text(  # not LabelImg-shaped: the tree reader's path
        annotation_xml(box_xml(extra="<occluded>1</occluded>")).replace("<annotation>", "<annotation>\n<!-- x -->"),
        "utf-8",
    )
    voc.write_voc(AnnotationSet(images), tmp_path / "out")
    shutil.copy(tmp_path / "odd.xml", tmp_path / "out" / "odd.xml")
    expected = voc.read_voc(tmp_path / "out")
    assert len(expected.images) == 13 and all(len(data) > 100 for data in
                                              (p.read_bytes() for p in (tmp_path / "out").iterdir()))
    monkeypatch.setattr(_engine, "os", _ShortReads())
    assert voc.read_voc(tmp_path / "out") == expected


def test_reading_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    """Reading pauses the collector (nothing read forms a cycle); the program's own
    settings come back as they were: on stays on, off stays off, frozen stays frozen."""
    voc.write_voc(AnnotationSet([ImageAnnotation(f"{i}.jpg", 4, 3) for i in range(5)]), tmp_path / "out")
    expected = voc.read_voc(tmp_path / "out")
    gc.enable()
    assert voc.read_voc(tmp_path / "out") == expected
    assert gc.isenabled() and gc.get_freeze_count() == 0

    gc.disable()  # a program that runs without the collector keeps it off
    try:
        assert voc.read_voc(tmp_path / "out") == expected
        assert not gc.isenabled()
    finally:
        gc.enable()

    frozen = [[1]]  # noqa: F841  tracked, and frozen below (a server about to fork)
    gc.freeze()
    try:
        count = gc.get_freeze_count()
        assert voc.read_voc(tmp_path / "out") == expected
        assert gc.get_freeze_count() == count
    finally:
        gc.unfreeze()
