"""YOLO labels: both folder layouts and data.yaml forms read to exact boxes; sizes come
from image headers only; writing is precise enough that integer boxes come back exactly;
bad lines, missing images and hostile input are one clear error each."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from yolo_support import png_header

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.cli import main
from dsxsd.errors import (
    DsxsdError,
    HostileInputError,
    ImageDecodeError,
    InvalidAnnotationError,
    InvalidValueError,
    MalformedFileError,
    MissingImageError,
)
from dsxsd.formats import yolo
from dsxsd.formats.yolo import read_yaml_names

DATA = Path(__file__).parent / "data" / "yolo"


def obj(label, box, **kw):
    return ObjectAnnotation(label, BBox(*box), **kw)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="dsxsd")


def labels(folder: Path, classes: str = "cat\ndog\n", **files: str) -> Path:
    """A darknet-style folder: ``classes.txt``, label files and a 100x50 image for each."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text(classes, "utf-8")
    for stem, text in files.items():
        (folder / f"{stem}.txt").write_text(text, "utf-8")
        (folder / f"{stem}.png").write_bytes(png_header(100, 50, 3))
    return folder


# ----------------------------------------------------------------------------- golden files


def test_ultralytics_layout_with_data_yaml_reads_exact_boxes():
    folder = DATA / "ultralytics" / "labels" / "train"
    assert dsxsd.guess_format(folder) == "yolo"
    annotations = dsxsd.read(folder)
    # names from the grandparent's data.yaml (dict form, quoted, a '#' inside quotes)
    assert annotations.classes == ("person", "car", "traffic light", "stop # sign")
    assert annotations.images == (
        ImageAnnotation(
            "street_001.jpg",  # found in ../../images/train, its size from its header
            64,
            48,
            3,
            [
                obj("person", (8, 6, 24, 30)),
                obj("stop # sign", (0, 0, 64, 48)),
                # a segmentation line: the polygon's bounding box, 0.1..0.2 of 64 x 48
                obj("traffic light", (6.4, 4.8, 12.8, 9.6)),
            ],
        ),
        ImageAnnotation("street_002.png", 40, 30, 1),  # an empty .txt: no objects
    )


def test_darknet_layout_with_classes_txt_beside_labels_and_images():
    folder = DATA / "darknet"
    assert dsxsd.guess_format(folder) == "yolo"
    annotations = dsxsd.read(folder)
    assert annotations == AnnotationSet(
        [
            ImageAnnotation(
                "dog.jpg",
                100,
                50,
                3,
                [
                    obj("cat", (10, 5, 60, 45)),
                    # 6-decimal values as Ultralytics writes them: 0.5 -/+ 0.333333 / 2
                    obj("dog", (33.33335, 8.333325, 66.66665, 41.666675)),
                ],
            ),
            ImageAnnotation("empty.png", 20, 20, 3),
        ],
        classes=("dog", "cat"),
    )


def test_voc2yolo_writes_the_golden_label_files(tmp_path):
    out = tmp_path / "labels"
    result = invoke("convert", "voc2yolo", DATA / "voc", out)
    assert result.exit_code == 0, result.output
    expected = DATA / "expected_voc2yolo"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in expected.iterdir())
    for path in expected.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    # what YOLO cannot hold is named, not silently dropped
    assert result.stderr == (
        "warning: yolo cannot hold difficult flags, truncated flags, pose; "
        "these are not in the output\n"
    )


def test_voc2yolo2voc_gives_back_the_integer_boxes_exactly(tmp_path):
    original = dsxsd.read(DATA / "voc")
    assert invoke("convert", "voc2yolo", DATA / "voc", tmp_path / "labels").exit_code == 0
    images = tmp_path / "images"
    images.mkdir()
    for image in original.images:
        (images / image.filename).write_bytes(png_header(image.width, image.height, 3))
    result = invoke("convert", "yolo2voc", tmp_path / "labels", tmp_path / "voc", "--images", images)
    assert result.exit_code == 0, result.output
    back = dsxsd.read(tmp_path / "voc")
    assert [[o.bbox for o in i.objects] for i in back] == [[o.bbox for o in i.objects] for i in original]
    assert "<xmin>48</xmin>" in (tmp_path / "voc" / "000001.xml").read_text()


@settings(max_examples=60, deadline=None)
@given(
    # Up to 13,000 px a side: larger images pass Pillow's decompression-bomb hard limit.
    size=st.tuples(st.integers(1, 13_000), st.integers(1, 13_000)),
    corners=st.lists(st.tuples(*[st.floats(0, 1)] * 4), min_size=1, max_size=5),
)
def test_integer_boxes_come_back_as_the_same_integers(tmp_path_factory, size, corners):
    width, height = size
    boxes = [
        (round(a * width), round(b * height), round(c * width), round(d * height))
        for a, b, c, d in corners
    ]
    annotations = AnnotationSet(
        [ImageAnnotation("x.jpg", width, height, objects=[obj("a", box) for box in boxes])]
    )
    folder = tmp_path_factory.mktemp("yolo")
    dsxsd.write(annotations, folder / "labels", "yolo")
    (folder / "labels" / "x.jpg").write_bytes(png_header(width, height))
    back = dsxsd.read(folder / "labels", "yolo")
    assert [o.bbox.as_tuple() for o in back.images[0].objects] == [
        tuple(map(float, box)) for box in boxes
    ]


# ----------------------------------------------------------------------------- class lists


@pytest.mark.parametrize(
    "text",
    [
        "names: [cat, 'hot dog', \"it's\"]\nnc: 3\n",
        "names: ['cat', 'hot dog',\n  \"it's\",  # wrapped\n]\n",
        "names: {0: cat, 1: hot dog, 2: \"it's\"}\n",
        "train: images/train\nnames:\n  - cat\n  - 'hot dog'\n  - \"it's\"\nval: x\n",
        "names:\n- cat  # a comment\n- hot dog\n- 'it''s'\n",
        "nc: 3\nnames:\n  2: \"it's\"\n  0: cat\n  '1': hot dog\n\ndownload: |\n  x\n",
    ],
    ids=["flow list", "wrapped flow list", "flow dict", "block list", "unindented", "block dict"],
)
def test_data_yaml_names_in_every_form_ultralytics_and_roboflow_write(tmp_path, text):
    path = tmp_path / "data.yaml"
    path.write_text(text, "utf-8")
    assert read_yaml_names(path) == (("cat", "hot dog", "it's"), False)


@pytest.mark.parametrize(
    "text, message, line",
    [
        ("nc: 2\nnames: [a]\n", "nc is 2 but names lists 1 classes", 2),
        ("names:\n  0: a\n  2: b\n", "names ids must be 0 to 1, each once; got [0, 2]", 1),
        ("path: .\n", "no 'names' list of class names", None),
        ("names: [a, 'b\n", "not valid YAML: found unexpected end of stream", 2),
        ("names: [a, a]\n", "class 'a' appears twice", 1),
        ("names: person\n", "not a list or a mapping", 1),
        ("names: [cat, yes]\n", "class name True is not text (quote it in the YAML)", 1),
        ("names: {0: a, one: b}\n", "names key 'one' is not a class id", 1),
        ("a: &x [1, 2]\nb: *y\n", "not valid YAML: found undefined alias 'y'", 2),
    ],
)
def test_bad_data_yaml_is_an_error_naming_it(tmp_path, text, message, line):
    folder = labels(tmp_path / "labels", a="")
    (folder / "classes.txt").unlink()
    (folder / "data.yaml").write_text(text, "utf-8")
    with pytest.raises(DsxsdError) as caught:
        dsxsd.read(folder, "yolo")
    assert caught.value.file == str(folder / "data.yaml")
    assert message in caught.value.reason
    assert caught.value.line == line


def test_the_nearest_class_list_wins_and_classes_names_another(tmp_path):
    folder = labels(tmp_path / "ds" / "labels", a="1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "ds" / "data.yaml").write_text("names: [x, y]\n")
    assert dsxsd.read(folder, "yolo").classes == ("cat", "dog")
    (folder / "classes.txt").unlink()
    assert dsxsd.read(folder, "yolo").classes == ("x", "y")
    other = tmp_path / "names.txt"
    other.write_text("p\nq\n")
    assert dsxsd.read(folder, "yolo", classes=other).images[0].objects[0].label == "q"


def test_no_class_list_is_a_clear_error(tmp_path):
    folder = labels(tmp_path / "a" / "b" / "c", x="")
    (folder / "classes.txt").unlink()
    with pytest.raises(InvalidAnnotationError, match="no class list: looked for classes.txt, data.yaml"):
        dsxsd.read(folder, "yolo")


# ----------------------------------------------------------------------------- bad lines


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 x 0.1 0.1", "column 3 is 'x', not a number"),
        ("0 0.5 0.5 0.1", "expected '<class id> <cx> <cy> <w> <h>', got 4 columns"),
        ("1.5 0.5 0.5 0.1 0.1", "class id '1.5' is not a whole number"),
        ("-1 0.5 0.5 0.1 0.1", "class id '-1' is not a whole number"),
        ("2 0.5 0.5 0.1 0.1", "class id 2 is not in the class list (2 classes, ids 0 to 1)"),
        ("0 0.5 nan 0.1 0.1", "column 3 is 'nan', not a number"),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "a polygon needs x y pairs; got 7 numbers"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    folder = labels(tmp_path / "labels", a=f"0 0.5 0.5 0.1 0.1\n\n{line}\n")
    with pytest.raises(InvalidValueError) as caught:
        dsxsd.read(folder, "yolo")
    assert (caught.value.file, caught.value.line) == (str(folder / "a.txt"), 3)
    assert message in caught.value.reason


def test_skip_leaves_bad_files_out_and_lists_them(tmp_path):
    folder = labels(tmp_path / "labels", a="0 0.5 0.5 0.2 0.2\n", b="0 0.5 0.5\n", c="")
    annotations = dsxsd.read(folder, "yolo", on_error="skip")
    assert [i.filename for i in annotations] == ["a.png", "c.png"]
    (skipped,) = annotations.skipped
    assert (skipped.file, skipped.line) == (str(folder / "b.txt"), 1)


def test_confidence_column_is_kept_and_keypoints_are_not_a_polygon(tmp_path):
    folder = labels(tmp_path / "labels", a="1 0.5 0.5 0.2 0.4 0.87\n")
    (first,) = dsxsd.read(folder, "yolo").images[0].objects
    assert first == obj("dog", (40, 15, 60, 35), attributes={"confidence": 0.87})
    pose = labels(tmp_path / "pose", classes="", a="0 0.5 0.5 0.2 0.4 0.1 0.1 2 0.2 0.2 2\n")
    (pose / "classes.txt").unlink()
    (pose / "data.yaml").write_text("kpt_shape: [2, 3]\nnames: {0: person}\n")
    assert dsxsd.read(pose, "yolo").images[0].objects == (obj("person", (40, 15, 60, 35)),)


# ----------------------------------------------------------------------------- images


def test_a_missing_image_names_the_label_file_what_was_tried_and_images(tmp_path):
    folder = labels(tmp_path / "labels", a="")
    (folder / "a.png").unlink()
    with pytest.raises(MissingImageError) as caught:
        dsxsd.read(folder, "yolo")
    assert caught.value.file == str(folder / "a.txt")
    assert f"{tmp_path / 'images'}/a.*" in caught.value.reason  # the Ultralytics twin
    assert f"{folder}/a.*" in caught.value.reason
    assert "--images" in caught.value.reason


def test_images_option_and_its_split_sub_folder(tmp_path):
    folder = labels(tmp_path / "labels" / "train", a="0 0.5 0.5 1 1\n")
    (folder / "a.png").unlink()
    pictures = tmp_path / "pictures" / "train"
    pictures.mkdir(parents=True)
    (pictures / "a.JPG").write_bytes(png_header(30, 20))
    for images in (pictures, pictures.parent):  # the split folder, or the root holding it
        (image,) = dsxsd.read(folder, "yolo", images=images).images
        assert (image.filename, image.width, image.height, image.objects[0].bbox) == (
            "a.JPG", 30, 20, BBox(0, 0, 30, 20)
        )


def test_sizes_come_from_the_header_and_nothing_is_decoded(tmp_path, monkeypatch):
    from PIL import Image, ImageFile

    def refuse(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    folder = labels(tmp_path / "labels", a="0 0.5 0.5 1 1\n")
    (folder / "a.png").write_bytes(png_header(7000, 9000))  # a header without pixel data
    (image,) = dsxsd.read(folder, "yolo").images
    assert (image.width, image.height, image.objects[0].bbox) == (7000, 9000, BBox(0, 0, 7000, 9000))


def test_hostile_and_broken_images_are_clear_errors(tmp_path):
    folder = labels(tmp_path / "labels", a="")
    (folder / "a.png").write_bytes(png_header(30000, 30000))
    with pytest.raises(HostileInputError, match="decompression bomb"):
        dsxsd.read(folder, "yolo")
    (folder / "a.png").write_text("%!PS-Adobe-3.0\n")  # not decoded as PostScript either
    with pytest.raises(ImageDecodeError) as caught:
        dsxsd.read(folder, "yolo")
    assert caught.value.file == str(folder / "a.txt")
    assert str(folder / "a.png") in caught.value.reason


# ----------------------------------------------------------------------------- hostile input


def test_non_utf8_huge_files_and_split_folders_are_clear_errors(tmp_path, monkeypatch):
    folder = labels(tmp_path / "labels", a="0 0.5 0.5 1 1\n")
    (folder / "a.txt").write_bytes(b"0 0.5 0.5 1 1\n0 \xff 0.5 1 1\n")
    with pytest.raises(MalformedFileError) as caught:
        dsxsd.read(folder, "yolo")
    assert (caught.value.file, caught.value.line) == (str(folder / "a.txt"), 2)
    assert "not UTF-8" in caught.value.reason

    (folder / "a.txt").write_text("0 0.5 0.5 1 1\n" * 10)
    monkeypatch.setattr(yolo, "MAX_FILE_BYTES", 100)
    with pytest.raises(InvalidAnnotationError, match="140 bytes is too large"):
        dsxsd.read(folder, "yolo")

    root = tmp_path / "ds" / "labels"
    for split in ("train", "val"):
        labels(root / split, a="")
    with pytest.raises(InvalidAnnotationError, match="sub-folders train, val hold some: read one split"):
        dsxsd.read(root, "yolo")


def test_written_names_stay_inside_the_output_folder(tmp_path):
    annotations = AnnotationSet([ImageAnnotation("../../evil.jpg", 10, 10, objects=[obj("a", (0, 0, 5, 5))])])
    dsxsd.write(annotations, tmp_path / "out", "yolo")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["classes.txt", "evil.txt", "out"]
    sizeless = AnnotationSet([ImageAnnotation("../../etc/passwd.png")])
    (tmp_path / "images").mkdir()
    with pytest.raises(HostileInputError, match="leads outside the images folder"):
        dsxsd.write(sizeless, tmp_path / "again", "yolo", images=tmp_path / "images")


# ----------------------------------------------------------------------------- writing


def test_a_sizeless_image_needs_images_and_takes_its_size_from_there(tmp_path):
    annotations = AnnotationSet(
        [
            ImageAnnotation("a.jpg", 200, 100),
            ImageAnnotation("sub/b.png", objects=[obj("cat", (10, 20, 30, 60))]),
        ]
    )
    with pytest.raises(InvalidValueError) as caught:
        dsxsd.write(annotations, tmp_path / "out", "yolo")
    assert "image 'sub/b.png' has no width and height" in caught.value.reason
    assert "pass --images" in caught.value.reason
    assert not (tmp_path / "out").exists()

    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "sub" / "b.png").write_bytes(png_header(40, 80))
    dsxsd.write(annotations, tmp_path / "out", "yolo", images=images)
    assert (tmp_path / "out" / "b.txt").read_text() == "0 0.5 0.5 0.5 0.5\n"
    assert (tmp_path / "out" / "a.txt").read_text() == ""


def test_boxes_outside_the_image_and_inverted_ones_are_written_as_they_are(tmp_path):
    boxes = [(-10, 0, 50, 60), (60, 40, 40, 10)]  # past the left and bottom edge; inverted
    annotations = AnnotationSet([ImageAnnotation("a.png", 100, 50, objects=[obj("cat", b) for b in boxes])])
    dsxsd.write(annotations, tmp_path / "labels", "yolo")
    assert (tmp_path / "labels" / "a.txt").read_text() == (
        "0 0.2 0.6 0.6 1.2\n"
        "0 0.5 0.5 -0.2 -0.6\n"
    )
    (tmp_path / "labels" / "a.png").write_bytes(png_header(100, 50))
    assert dsxsd.read(tmp_path / "labels", "yolo").images[0].objects == annotations.images[0].objects


@pytest.mark.parametrize(
    "filenames, message",
    [
        (["a.jpg", "A.png"], "images 'a.jpg' and 'A.png' would both be written to 'A.txt'"),
        (["classes.jpg"], "would be written to 'classes.txt'"),
        (["._x.jpg"], "would be written to '._x.txt'"),
    ],
)
def test_names_a_yolo_folder_cannot_hold_are_refused(tmp_path, filenames, message):
    annotations = AnnotationSet([ImageAnnotation(name, 10, 10) for name in filenames])
    with pytest.raises(InvalidAnnotationError, match=message.replace(".", r"\.")):
        dsxsd.write(annotations, tmp_path / "out", "yolo")
    assert list(tmp_path.iterdir()) == []


def test_a_class_with_a_line_break_is_refused(tmp_path):
    annotations = AnnotationSet([], classes=("a\nb",))
    with pytest.raises(InvalidValueError, match="line break"):
        dsxsd.write(annotations, tmp_path / "out", "yolo")


def test_unused_classes_keep_their_ids(tmp_path):
    annotations = AnnotationSet(
        [ImageAnnotation("a.png", 100, 50, objects=[obj("z", (0, 0, 100, 50))])], classes=("x", "y", "z")
    )
    dsxsd.write(annotations, tmp_path / "labels", "yolo")
    assert (tmp_path / "labels" / "classes.txt").read_text() == "x\ny\nz\n"
    assert (tmp_path / "labels" / "a.txt").read_text() == "2 0.5 0.5 1 1\n"


# ----------------------------------------------------------------------------- CLI


def test_yolo2csv_with_images_from_another_folder(tmp_path):
    labels_folder = tmp_path / "labels"
    shutil.copytree(DATA / "ultralytics" / "labels" / "train", labels_folder)
    (tmp_path / "data.yaml").write_text("names: [person, car, traffic light, stop sign]\n")
    out = tmp_path / "out.csv"
    missing = invoke("convert", "yolo2csv", labels_folder, out)
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"error: {labels_folder / 'street_001.txt'}: no image")
    assert "--images" in missing.stderr and not out.exists()

    result = invoke(
        "convert", "yolo2csv", labels_folder, out, "--images", DATA / "ultralytics" / "images" / "train"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: csv cannot hold classes without objects (car); these are not in the output\n"
    )
    assert out.read_text().splitlines()[1:] == [
        "street_001.jpg,64,48,person,8,6,24,30,3,0,0,Unspecified",
        "street_001.jpg,64,48,stop sign,0,0,64,48,3,0,0,Unspecified",
        "street_001.jpg,64,48,traffic light,6.4,4.8,12.8,9.6,3,0,0,Unspecified",
        "street_002.png,40,30,,,,,,1,,,",
    ]


def test_csv2yolo_takes_missing_sizes_from_images(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.png,,,cat,0,0,10,10\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_header(20, 40))
    refused = invoke("convert", "csv2yolo", src, tmp_path / "out")
    assert refused.exit_code == 1
    assert "image 'a.png' has no width and height" in refused.stderr
    result = invoke("convert", "csv2yolo", src, tmp_path / "out", "--images", tmp_path / "images")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.txt").read_text() == "0 0.25 0.125 0.5 0.25\n"


# ----------------------------------------------------------------------------- guessing


def test_guessing_tells_yolo_folders_from_voc_folders(tmp_path):
    assert dsxsd.guess_format(DATA / "voc") == "voc"
    assert dsxsd.guess_format(Path(__file__).parent / "data" / "voc" / "good") == "voc"  # has notes.txt
    (tmp_path / "empty").mkdir()
    assert dsxsd.guess_format(tmp_path / "empty") == "voc"
    txt_only = tmp_path / "txt_only"
    txt_only.mkdir()
    (txt_only / "a.txt").write_text("")
    assert dsxsd.guess_format(txt_only) == "voc"  # no class list: not taken for YOLO
    mixed = labels(tmp_path / "mixed", a="")
    (mixed / "a.xml").write_text("<annotation/>")
    assert dsxsd.guess_format(mixed) == "voc"
    written = tmp_path / "written"
    dsxsd.write(AnnotationSet(), written, "yolo")  # just classes.txt
    assert dsxsd.guess_format(written) == "yolo"


def test_one_label_file_reads_with_its_folder_class_list():
    (image,) = dsxsd.read(DATA / "darknet" / "dog.txt", "yolo").images
    assert (image.filename, len(image.objects)) == ("dog.jpg", 2)
