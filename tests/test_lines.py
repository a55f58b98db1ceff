"""The lines format: keras-yolo's line list and classes.txt, refusing what it cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.errors import (
    InvalidAnnotationError,
    InvalidValueError,
    OutputExistsError,
)
from dsxsd.formats.lines import read_lines, write_lines


def obj(label, box):
    return ObjectAnnotation(label, BBox(*box))


@pytest.fixture
def example():
    return AnnotationSet(
        [
            ImageAnnotation(
                "b.jpg",
                640,
                480,
                3,
                [obj("dog", (10, 20, 110, 220)), obj("cat", (1.5, 2, 3, 4.25))],
                path="/data/VOC/JPEGImages/b.jpg",
            ),
            ImageAnnotation("a.jpg"),
            ImageAnnotation("c.png", objects=[obj("dog", (0, 0, 5, 5))]),
        ],
        classes=("cat", "dog", "bird"),
    )


def test_bytes_of_both_files(tmp_path, example):
    out = tmp_path / "train.txt"
    write_lines(example, out)
    assert out.read_text("utf-8") == (
        "/data/VOC/JPEGImages/b.jpg 10,20,110,220,1 1.5,2,3,4.25,0\n"
        "a.jpg\n"
        "c.png 0,0,5,5,1\n"
    )
    assert (tmp_path / "classes.txt").read_text("utf-8") == "cat\ndog\nbird\n"


def test_keras_yolo_parses_what_is_written(tmp_path):
    """keras-yolo3's ``get_random_data`` reads a line exactly like this."""
    annotations = AnnotationSet(
        [ImageAnnotation("img/1.jpg", objects=[obj("a", (1, 2, 3, 4)), obj("b", (5, 6, 7, 8))])]
    )
    out = tmp_path / "train.txt"
    write_lines(annotations, out)
    line = out.read_text("utf-8").split("\n")[0].split()
    box = np.array([np.array(list(map(int, box.split(",")))) for box in line[1:]])
    assert line[0] == "img/1.jpg"
    assert box.tolist() == [[1, 2, 3, 4, 0], [5, 6, 7, 8, 1]]
    with open(tmp_path / "classes.txt") as f:  # keras-yolo3's get_classes
        class_names = [c.strip() for c in f.readlines()]
    assert class_names == ["a", "b"]


def test_round_trip_keeps_the_path_and_takes_the_filename_from_it(tmp_path, example):
    out = tmp_path / "train.txt"
    write_lines(example, out)
    back = read_lines(out)
    assert back.classes == ("cat", "dog", "bird")
    assert [(i.filename, i.path) for i in back] == [
        ("b.jpg", "/data/VOC/JPEGImages/b.jpg"),
        ("a.jpg", "a.jpg"),
        ("c.png", "c.png"),
    ]
    assert [i.width for i in back] == [None, None, None]
    assert back.images[0].objects == example.images[0].objects


def test_windows_paths_give_their_last_component(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\n")
    (tmp_path / "list.txt").write_text("C:\\data\\x.jpg 1,2,3,4,0\n")
    (image,) = read_lines(tmp_path / "list.txt").images
    assert (image.filename, image.path) == ("x.jpg", "C:\\data\\x.jpg")


def test_filenames_instead_of_paths_on_request(tmp_path, example):
    out = tmp_path / "train.txt"
    write_lines(example, out, image_path="filename")
    assert out.read_text("utf-8").split("\n")[0] == "b.jpg 10,20,110,220,1 1.5,2,3,4.25,0"


@pytest.mark.parametrize("where", ["path", "filename"])
@pytest.mark.parametrize("space", [" ", "\t", "\u00a0", "\u3000"])
def test_white_space_in_a_path_is_refused_and_nothing_is_written(tmp_path, where, space):
    bad = ImageAnnotation(f"my{space}cat.jpg") if where == "filename" else ImageAnnotation(
        "cat.jpg", path=f"/home/me/My{space}Pictures/cat.jpg"
    )
    annotations = AnnotationSet([ImageAnnotation("ok.jpg"), bad])
    out = tmp_path / "train.txt"
    with pytest.raises(InvalidValueError) as caught:
        dsxsd.write(annotations, out, "lines")
    message = str(caught.value)
    assert message.startswith(f"{out}: image {bad.filename!r}: its path ")
    assert "holds white space" in message
    assert list(tmp_path.iterdir()) == []


def test_a_class_with_a_line_break_is_refused(tmp_path):
    annotations = AnnotationSet([ImageAnnotation("a.jpg", objects=[obj("two\nlines", (1, 2, 3, 4))])])
    with pytest.raises(InvalidValueError, match="class 'two\\\\nlines' holds a line break"):
        write_lines(annotations, tmp_path / "train.txt")
    assert list(tmp_path.iterdir()) == []


def test_lists_share_an_identical_class_list(tmp_path, example):
    write_lines(example, tmp_path / "train.txt")
    write_lines(example, tmp_path / "val.txt")  # same classes.txt: no overwrite needed
    other = AnnotationSet(example.images, classes=("dog", "cat", "bird"))
    with pytest.raises(OutputExistsError) as caught:
        write_lines(other, tmp_path / "test.txt")
    assert caught.value.file == str(tmp_path / "classes.txt")
    assert not (tmp_path / "test.txt").exists()
    assert (tmp_path / "classes.txt").read_text() == "cat\ndog\nbird\n"


def test_another_class_list_file(tmp_path, example):
    names = tmp_path / "names" / "voc.names"
    write_lines(example, tmp_path / "train.txt", classes=names)
    assert names.read_text() == "cat\ndog\nbird\n"
    assert not (tmp_path / "classes.txt").exists()
    assert read_lines(tmp_path / "train.txt", classes=names).classes == example.classes
    with pytest.raises(InvalidValueError, match="cannot be its own class list"):
        write_lines(example, tmp_path / "classes.txt")


# ------------------------------------------------------------------ reading


def lines_file(tmp_path, text, classes="cat\ndog\n"):
    if classes is not None:
        (tmp_path / "classes.txt").write_text(classes, "utf-8")
    path = tmp_path / "list.txt"
    path.write_bytes(text.encode("utf-8"))
    return path


def test_reader_skips_blank_lines_and_splits_on_any_white_space(tmp_path):
    path = lines_file(tmp_path, "\r\na.jpg  1,2,3,4,0\t5,6,7,8,1\r\n\n   \nb.jpg\n")
    back = read_lines(path)
    assert back.images == (
        ImageAnnotation(
            "a.jpg", objects=[obj("cat", (1, 2, 3, 4)), obj("dog", (5, 6, 7, 8))], path="a.jpg"
        ),
        ImageAnnotation("b.jpg", path="b.jpg"),
    )


def test_missing_class_list_is_a_clear_error(tmp_path):
    path = lines_file(tmp_path, "a.jpg 1,2,3,4,0\n", classes=None)
    with pytest.raises(InvalidAnnotationError) as caught:
        read_lines(path)
    assert caught.value.file == str(tmp_path / "classes.txt")
    assert "needs classes.txt beside the list" in str(caught.value)


@pytest.mark.parametrize(
    "line, message",
    [
        ("a.jpg 1,2,3,4,2", "box 1: class id 2 is not in the class list (2 classes, ids 0 to 1)"),
        ("a.jpg 1,2,3,4,0 1,2,3,4,-1", "box 2: class id must be a whole number, got '-1'"),
        ("a.jpg 1,2,3,4,1.0", "box 1: class id must be a whole number, got '1.0'"),
        ("a.jpg 1,2,3,0", "box 1 '1,2,3,0' must be xmin,ymin,xmax,ymax,class_id (5 numbers, got 4)"),
        ("a.jpg 1,2,3,4,0,9", "(5 numbers, got 6)"),
        ("a.jpg 1,x,3,4,0", "box 1: not a number: 'x'"),
        ("a.jpg 1,nan,3,4,0", "box 1: not a number: 'nan'"),
    ],
)
def test_bad_boxes_name_file_and_line(tmp_path, line, message):
    path = lines_file(tmp_path, "ok.jpg 1,2,3,4,0\n\n" + line + "\n")
    with pytest.raises(InvalidValueError) as caught:
        read_lines(path)
    assert caught.value.file == str(path)
    assert caught.value.line == 3
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "classes, line, message",
    [
        ("cat\n\ndog\n", 2, "empty class name"),
        ("cat\ndog\ncat\n", 3, "class 'cat' is already on line 1"),
    ],
)
def test_bad_class_lists(tmp_path, classes, line, message):
    path = lines_file(tmp_path, "a.jpg\n", classes=classes)
    with pytest.raises(InvalidValueError) as caught:
        read_lines(path)
    assert (caught.value.file, caught.value.line) == (str(tmp_path / "classes.txt"), line)
    assert message in str(caught.value)


def test_class_list_tolerates_bom_crlf_and_trailing_blank_lines(tmp_path):
    path = lines_file(tmp_path, "a.jpg 1,2,3,4,1\n", classes="\ufeffcat\r\ntraffic light\r\n\r\n\n")
    back = read_lines(path)
    assert back.classes == ("cat", "traffic light")
    assert back.images[0].objects[0].label == "traffic light"


def test_skip_leaves_out_bad_lines(tmp_path):
    path = lines_file(tmp_path, "a.jpg 1,2,3,4,0\nb.jpg 1,2,3,4,7\nc.jpg\n")
    back = read_lines(path, on_error="skip")
    assert [i.filename for i in back] == ["a.jpg", "c.jpg"]
    assert [(s.file, s.line) for s in back.skipped] == [(str(path), 2)]
    assert "class id 7 is not in the class list" in back.skipped[0].reason


def test_guessed_from_txt_with_classes_beside(tmp_path, example):
    out = tmp_path / "train.txt"
    dsxsd.write(example, out)
    assert dsxsd.guess_format(out) == "lines"
    assert dsxsd.read(out).classes == example.classes
