"""The csv format: TF Object Detection API columns, exact bytes, and clear errors."""

from __future__ import annotations

import glob
import io
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import annotation_sets

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.errors import (
    InvalidValueError,
    MalformedFileError,
    MissingFieldError,
)
from dsxsd.formats.csv import BASIC_COLUMNS, FULL_COLUMNS, read_csv, write_csv

HEADER_FULL = "filename,width,height,class,xmin,ymin,xmax,ymax,depth,difficult,truncated,pose\n"
HEADER_BASIC = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def obj(label, box, **kw):
    return ObjectAnnotation(label, BBox(*box), **kw)


@pytest.fixture
def example():
    # Images deliberately not in name order: the writer keeps the set's order.
    return AnnotationSet(
        [
            ImageAnnotation(
                "z.jpg",
                640,
                480,
                3,
                [
                    obj("dog", (10, 20, 110, 220), difficult=True, pose="Left"),
                    obj("cat", (1.5, 2.25, 30, 40.125), truncated=True),
                ],
            ),
            ImageAnnotation("empty.png", 100, 50, None),
            ImageAnnotation("a.jpg", None, None, None, [obj("dog", (0, 0, 5, 5))]),
        ]
    )


def test_full_layout_bytes(tmp_path, example):
    out = tmp_path / "labels.csv"
    write_csv(example, out)
    assert out.read_bytes().decode("utf-8") == (
        HEADER_FULL
        + "z.jpg,640,480,dog,10,20,110,220,3,1,0,Left\n"
        + "z.jpg,640,480,cat,1.5,2.25,30,40.125,3,0,1,Unspecified\n"
        + "empty.png,100,50,,,,,,,,,\n"
        + "a.jpg,,,dog,0,0,5,5,,0,0,Unspecified\n"
    )


def test_pose_column_says_unspecified_as_voc_does_and_reads_back_as_none(tmp_path):
    out = write(tmp_path, HEADER_FULL + "a.jpg,10,10,dog,1,2,3,4,3,0,0,Unspecified\n"
                + "a.jpg,10,10,cat,1,2,3,4,3,0,0,\n" + "a.jpg,10,10,cow,1,2,3,4,3,0,0,Left\n")
    back = read_csv(out)
    assert [o.pose for o in back.images[0].objects] == [None, None, "Left"]
    write_csv(back, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text("utf-8").splitlines()[1:] == [
        "a.jpg,10,10,dog,1,2,3,4,3,0,0,Unspecified",
        "a.jpg,10,10,cat,1,2,3,4,3,0,0,Unspecified",
        "a.jpg,10,10,cow,1,2,3,4,3,0,0,Left",
    ]


def test_basic_layout_is_the_first_eight_columns_and_no_row_for_an_empty_image(tmp_path, example):
    out = tmp_path / "labels.csv"
    dsxsd.write(example, out, "csv", columns="basic")
    # empty.png has no objects: xml_to_csv.py writes no row for it, and nor does basic.
    assert out.read_text("utf-8") == (
        HEADER_BASIC
        + "z.jpg,640,480,dog,10,20,110,220\n"
        + "z.jpg,640,480,cat,1.5,2.25,30,40.125\n"
        + "a.jpg,,,dog,0,0,5,5\n"
    )


def test_unknown_columns_option_is_refused(tmp_path, example):
    with pytest.raises(ValueError, match="columns must be 'full' or 'basic'"):
        write_csv(example, tmp_path / "x.csv", columns="all")
    assert not (tmp_path / "x.csv").exists()


def test_round_trip_keeps_image_and_object_order(tmp_path, example):
    out = tmp_path / "labels.csv"
    write_csv(example, out)
    back = read_csv(out)
    assert back == example
    assert [image.filename for image in back] == ["z.jpg", "empty.png", "a.jpg"]
    assert back.classes == ("dog", "cat")


def test_basic_file_reads_with_defaults(tmp_path, example):
    out = tmp_path / "labels.csv"
    write_csv(example, out, columns="basic")
    back = read_csv(out)
    first = back.images[0]
    assert (first.width, first.height, first.depth) == (640, 480, None)
    assert [(o.label, o.difficult, o.truncated, o.pose) for o in first.objects] == [
        ("dog", False, False, None),
        ("cat", False, False, None),
    ]
    assert [image.filename for image in back] == ["z.jpg", "a.jpg"]


@pytest.mark.parametrize(
    "label",
    ["comma, here", 'say "hi"', "a&b <c>", "猫 ünï", "line\nbreak", "=SUM(A1)", " ,\"\n"],
)
def test_awkward_class_names_round_trip_and_quote_like_pandas(tmp_path, label):
    annotations = AnnotationSet([ImageAnnotation("x,y.jpg", 10, 10, objects=[obj(label, (1, 2, 3, 4))])])
    out = tmp_path / "labels.csv"
    write_csv(annotations, out, columns="basic")
    assert read_csv(out) == annotations
    frame = pd.DataFrame(
        [["x,y.jpg", 10, 10, label.strip(), 1, 2, 3, 4]], columns=list(BASIC_COLUMNS)
    )
    assert out.read_text("utf-8") == frame.to_csv(index=None)


def test_pandas_reads_the_full_layout(tmp_path, example):
    out = tmp_path / "labels.csv"
    write_csv(example, out)
    frame = pd.read_csv(out)
    assert list(frame.columns) == list(FULL_COLUMNS)
    assert frame["class"].isna().tolist() == [False, False, True, False]
    assert frame.loc[[0, 1, 3], "class"].tolist() == ["dog", "cat", "dog"]
    assert frame.loc[[0, 1, 3], "xmax"].tolist() == [110, 30, 5]
    assert frame.loc[[0, 1], "ymax"].tolist() == [220, 40.125]


# ------------------------------------------------------------------ xml_to_csv.py


LABELIMG_XML = """<annotation>
\t<folder>images</folder>
\t<filename>{filename}</filename>
\t<path>/home/user/images/{filename}</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
LABELIMG_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{box[0]}</xmin>
\t\t\t<ymin>{box[1]}</ymin>
\t\t\t<xmax>{box[2]}</xmax>
\t\t\t<ymax>{box[3]}</ymax>
\t\t</bndbox>
\t</object>
"""


def classic_xml_to_csv(path: str) -> str:
    """The TF Object Detection API tutorials' ``xml_to_csv.py``, verbatim but for
    ``sorted`` (glob order is the file system's) and returning the text it writes."""
    xml_list = []
    for xml_file in sorted(glob.glob(path + "/*.xml")):
        tree = ET.parse(xml_file)
        root = tree.getroot()
        for member in root.findall("object"):
            value = (
                root.find("filename").text,
                int(root.find("size")[0].text),
                int(root.find("size")[1].text),
                member[0].text,
                int(member[4][0].text),
                int(member[4][1].text),
                int(member[4][2].text),
                int(member[4][3].text),
            )
            xml_list.append(value)
    column_name = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    xml_df = pd.DataFrame(xml_list, columns=column_name)
    buffer = io.StringIO()
    xml_df.to_csv(buffer, index=None)
    return buffer.getvalue()


def test_voc_to_basic_csv_reproduces_xml_to_csv_row_for_row(tmp_path):
    folder = tmp_path / "Annotations"
    folder.mkdir()
    files = {
        "raccoon-2.jpg": (650, 417, [("raccoon", (43, 10, 560, 386))]),
        "raccoon-10.jpg": (
            450,
            495,
            [("raccoon", (130, 2, 446, 488)), ("dog, big", (1, 2, 3, 4))],
        ),
        "b.jpg": (300, 200, [('say "hi"', (5, 6, 7, 8)), ("a&amp;b &lt;c&gt;", (9, 9, 10, 10))]),
        "ünï.jpg": (64, 48, [("猫", (0, 0, 64, 48))]),
        "nothing.jpg": (64, 48, []),  # the script writes no row for it
    }
    for filename, (width, height, objects) in files.items():
        body = "".join(LABELIMG_OBJECT.format(name=n, box=b) for n, b in objects)
        text = LABELIMG_XML.format(filename=filename, width=width, height=height, objects=body)
        (folder / (filename.rsplit(".", 1)[0] + ".xml")).write_text(text, "utf-8")
    expected = classic_xml_to_csv(str(folder))
    assert expected.count("\n") == 7  # header + six objects: the script did run

    out = tmp_path / "labels.csv"
    dsxsd.write(dsxsd.read(folder, "voc"), out, "csv", columns="basic")
    assert out.read_text("utf-8") == expected


# ------------------------------------------------------------------ reading


def write(tmp_path, text, name="in.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_reader_groups_rows_by_filename_in_first_appearance_order(tmp_path):
    path = write(
        tmp_path,
        HEADER_BASIC
        + "b.jpg,10,10,cat,1,1,2,2\n"
        + "a.jpg,10,10,dog,1,1,2,2\n"
        + "b.jpg,10,10,dog,3,3,4,4\n",
    )
    back = read_csv(path)
    assert [image.filename for image in back] == ["b.jpg", "a.jpg"]
    assert [o.label for o in back.images[0].objects] == ["cat", "dog"]
    assert back.images[0].objects[1].bbox == BBox(3, 3, 4, 4)


def test_reader_ignores_unknown_columns_and_column_order(tmp_path):
    path = write(
        tmp_path,
        "note,class,filename,xmax,ymax,xmin,ymin,height,width\n"
        "hello,cat,a.jpg,30,40,10,20,480,640\n",
    )
    back = read_csv(path)
    assert back.images == (ImageAnnotation("a.jpg", 640, 480, objects=[obj("cat", (10, 20, 30, 40))]),)


def test_reader_takes_what_pandas_writes_for_missing_sizes(tmp_path):
    # pandas writes an integer column holding NaN as floats: 640.0
    path = write(tmp_path, HEADER_BASIC + "a.jpg,640.0,480.0,cat,1,2,3,4\nb.jpg,,,,,,,\n")
    back = read_csv(path)
    assert (back.images[0].width, back.images[0].height) == (640, 480)
    assert (back.images[1].width, back.images[1].height, back.images[1].objects) == (None, None, ())


def test_reader_accepts_bom_crlf_and_flag_words(tmp_path):
    text = (HEADER_FULL + "a.jpg,1,1,cat,1,2,3,4,3,true,False,\n").replace("\n", "\r\n")
    path = write(tmp_path, "\ufeff" + text)
    (image,) = read_csv(path).images
    assert (image.objects[0].difficult, image.objects[0].truncated) == (True, False)


def test_reader_refuses_a_flag_that_is_not_zero_or_one(tmp_path):
    path = write(tmp_path, HEADER_FULL + "a.jpg,1,1,cat,1,2,3,4,3,maybe,0,\n")
    with pytest.raises(InvalidValueError) as caught:
        read_csv(path)
    assert str(caught.value) == (
        f"{path}, line 2, field 'difficult': difficult must be 0 or 1, got 'maybe'"
    )


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", "1_000", "0x10", ""])
def test_a_bad_coordinate_names_file_line_and_column(tmp_path, bad):
    path = write(tmp_path, HEADER_BASIC + "a.jpg,10,10,cat,1,2,3,4\n" + f"a.jpg,10,10,cat,1,{bad},3,4\n")
    error = MissingFieldError if bad == "" else InvalidValueError
    with pytest.raises(error) as caught:
        read_csv(path)
    assert caught.value.file == str(path)
    assert caught.value.line == 3
    assert caught.value.field == "ymin"
    assert str(caught.value).startswith(f"{path}, line 3, field 'ymin': ")


@pytest.mark.parametrize("bad", ["-1", "12.5", "wide"])
def test_a_bad_size_is_an_error(tmp_path, bad):
    path = write(tmp_path, HEADER_BASIC + f"a.jpg,{bad},10,cat,1,2,3,4\n")
    message = f"line 2, field 'width': width must be a whole number >= 0, got '{bad}'"
    with pytest.raises(InvalidValueError, match=message):
        read_csv(path)


def test_conflicting_sizes_for_one_image_are_an_error(tmp_path):
    path = write(tmp_path, HEADER_BASIC + "a.jpg,10,10,cat,1,2,3,4\na.jpg,12,10,dog,1,2,3,4\n")
    with pytest.raises(InvalidValueError, match="line 3.*width 12 differs from 10 given on line 2"):
        read_csv(path)


@pytest.mark.parametrize("missing", ["filename", "class", "xmin", "ymax"])
def test_a_missing_required_column_is_named(tmp_path, missing):
    columns = [c for c in BASIC_COLUMNS if c != missing]
    path = write(tmp_path, ",".join(columns) + "\n" + ",".join("1" for _ in columns) + "\n")
    with pytest.raises(MissingFieldError) as caught:
        read_csv(path)
    assert caught.value.field == missing
    assert f"no {missing!r} column" in str(caught.value)
    assert str(path) in str(caught.value)


def test_width_and_height_columns_are_optional(tmp_path):
    path = write(tmp_path, "filename,class,xmin,ymin,xmax,ymax\na.jpg,cat,1,2,3,4\n")
    (image,) = read_csv(path).images
    assert (image.width, image.height) == (None, None)


def test_a_box_without_a_class_is_an_error(tmp_path):
    path = write(tmp_path, HEADER_BASIC + "a.jpg,10,10,,1,2,3,4\n")
    with pytest.raises(MissingFieldError, match="line 2, field 'class': a box without a class"):
        read_csv(path)


def test_a_class_without_a_whole_box_is_an_error(tmp_path):
    path = write(tmp_path, HEADER_BASIC + "a.jpg,10,10,cat,1,2,3,\n")
    with pytest.raises(MissingFieldError, match="line 2, field 'ymax': class 'cat' has no ymax"):
        read_csv(path)


def test_an_unquoted_comma_is_caught_by_the_field_count(tmp_path):
    path = write(tmp_path, HEADER_BASIC + "a.jpg,10,10,dog, big,1,2,3,4\n")
    with pytest.raises(MalformedFileError, match="line 2: row has 9 fields but the header has 8"):
        read_csv(path)


def test_line_numbers_count_physical_lines(tmp_path):
    # A quoted class over two lines, a blank line, then a bad row on line 6.
    path = write(
        tmp_path,
        HEADER_BASIC
        + 'a.jpg,1,1,"two\nlines",1,2,3,4\n\n'
        + "b.jpg,1,1,cat,1,2,3,4\nc.jpg,1,1,cat,x,2,3,4\n",
    )
    with pytest.raises(InvalidValueError) as caught:
        read_csv(path)
    assert caught.value.line == 6


def test_empty_and_non_utf8_files_are_malformed(tmp_path):
    with pytest.raises(MalformedFileError, match="line 1: no header row"):
        read_csv(write(tmp_path, ""))
    latin = write(tmp_path, HEADER_BASIC + "a.jpg,1,1,caf\u00e9,1,2,3,4\n", "latin.csv", "latin-1")
    with pytest.raises(MalformedFileError, match=r"line 2: not UTF-8 text \(byte 0xe9"):
        read_csv(latin)


def test_a_header_only_file_is_an_empty_set(tmp_path):
    assert read_csv(write(tmp_path, HEADER_FULL)) == AnnotationSet()


def test_skip_leaves_out_the_whole_image_of_a_bad_row(tmp_path):
    path = write(
        tmp_path,
        HEADER_BASIC
        + "a.jpg,10,10,cat,1,2,3,4\n"
        + "b.jpg,10,10,cat,1,2,3,4\n"
        + "b.jpg,10,10,dog,1,oops,3,4\n"
        + ",10,10,cat,1,2,3,4\n"
        + "c.jpg,10,10,,,,,\n",
    )
    with pytest.raises(InvalidValueError):
        read_csv(path)
    back = read_csv(path, on_error="skip")
    assert [image.filename for image in back] == ["a.jpg", "c.jpg"]
    assert [(s.file, s.line) for s in back.skipped] == [(str(path), 4), (str(path), 5)]
    assert back.skipped[0].reason == "ymin is not a number: 'oops'"
    assert back.skipped[1].reason == "empty filename"


def test_format_is_guessed_from_the_suffix(tmp_path, example):
    out = tmp_path / "labels.csv"
    dsxsd.write(example, out)
    assert dsxsd.guess_format(out) == "csv"
    assert dsxsd.read(out) == example


def _reference_csv(annotations: AnnotationSet, full: bool) -> str:
    """The file as csv.writer alone writes it, field by field."""
    import csv as csv_module

    from dsxsd.formats.csv import number_text

    buffer = io.StringIO()
    writer = csv_module.writer(buffer, lineterminator="\n")
    writer.writerow(FULL_COLUMNS if full else BASIC_COLUMNS)
    for image in annotations.images:
        size = ["" if v is None else str(v) for v in (image.width, image.height, image.depth)]
        if not image.objects and full:
            writer.writerow([image.filename, *size[:2], "", "", "", "", "", size[2], "", "", ""])
        for obj in image.objects:
            row = [image.filename, *size[:2], obj.label, *map(number_text, obj.bbox.as_tuple())]
            if full:
                row += [size[2], str(int(obj.difficult)), str(int(obj.truncated)), obj.pose or "Unspecified"]
            writer.writerow(row)
    return buffer.getvalue()


@settings(max_examples=60, deadline=None)
@given(annotations=annotation_sets(), full=st.booleans())
def test_rows_joined_directly_are_the_bytes_csv_writer_writes(annotations, full):
    """Plain rows are joined without csv.writer (faster); quoting rows go through it. The
    file must be byte for byte what csv.writer would write for every row."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.csv"
        write_csv(annotations, path, columns="full" if full else "basic")
        assert path.read_bytes() == _reference_csv(annotations, full).encode("utf-8")


def test_every_text_csv_writer_quotes_goes_through_it(tmp_path):
    texts = ['say "hi"', "comma, here", "line\nbreak", "cr\rhere", "plain", "=SUM(A1)"]
    annotations = AnnotationSet(
        [
            ImageAnnotation(
                name, 10, 10,
                objects=[ObjectAnnotation(label, BBox(1, 2, 3, 4.5), pose=pose) for label in texts for pose in (None, *texts)],
            )
            for name in ("a.jpg", 'q"uote.jpg', "c,omma.jpg")
        ]
        + [ImageAnnotation('empty "one".jpg'), ImageAnnotation("empty.jpg")]
    )
    for full in (True, False):
        write_csv(annotations, tmp_path / "out.csv", columns="full" if full else "basic", overwrite=True)
        assert (tmp_path / "out.csv").read_bytes() == _reference_csv(annotations, full).encode("utf-8")
