"""dsxsd validate: every check finds what it should, and only that."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

import dsxsd
from dsxsd.cli import main
from dsxsd.validation import Problem, read_class_list

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


@pytest.fixture
def dataset(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.jpg")
    Image.new("RGB", (50, 50)).save(tmp_path / "b.jpg")
    (tmp_path / "ann.csv").write_text(
        HEADER
        + "a.jpg,100,80,cat,10,10,50,50\n"  # 0 fine
        + "a.jpg,100,80,cat,10,10,50,50\n"  # 1 duplicate of 0
        + "a.jpg,100,80,dog,60,10,40,50\n"  # 2 box order
        + "a.jpg,100,80,cat,5,5,5,20\n"  # 3 zero area
        + "a.jpg,100,80,cat,90,10,102,50\n"  # 4 outside by 2 px
        + "b.jpg,60,50,bird,1,1,10,10\n"  # size mismatch, unknown class
        + "c.jpg,60,50,cat,1,1,10,10\n",  # missing image
        encoding="utf-8",
    )
    (tmp_path / "classes.txt").write_text("cat\n dog \n\n", encoding="utf-8")
    return tmp_path


def checks(problems):
    return sorted(((p.file, p.object_index, p.check, p.severity) for p in problems), key=str)


def checks_sorted(rows):
    return sorted(rows, key=str)


def test_every_check_reports_its_object(dataset):
    problems = dsxsd.validate(dataset / "ann.csv", images=dataset, classes=["cat", "dog"])
    assert all(isinstance(p, Problem) for p in problems)
    assert checks(problems) == checks_sorted([
        ("a.jpg", 1, "duplicate", "warning"),
        ("a.jpg", 2, "box-order", "error"),
        ("a.jpg", 3, "zero-area", "error"),
        ("a.jpg", 4, "outside-image", "error"),
        ("b.jpg", None, "size-mismatch", "error"),
        ("b.jpg", 0, "unknown-class", "error"),
        ("c.jpg", None, "missing-image", "error"),
    ])
    mismatch = next(p for p in problems if p.check == "size-mismatch")
    assert mismatch.message == "annotation says 60x50, image is 50x50"


def test_tolerance_and_optional_checks(dataset):
    problems = dsxsd.validate(dataset / "ann.csv", tolerance=2)
    found = {p.check for p in problems}
    # Without --images and --classes those checks do not run; 2 px are tolerated.
    assert found == {"duplicate", "box-order", "zero-area"}


def test_problem_is_frozen(dataset):
    problem = dsxsd.validate(dataset / "ann.csv")[0]
    with pytest.raises(Exception):
        problem.check = "other"


def test_unreadable_file_is_an_error_with_its_line(tmp_path):
    (tmp_path / "bad.csv").write_text(HEADER + "a.jpg,100,80,cat,x,10,50,50\n")
    [problem] = dsxsd.validate(tmp_path / "bad.csv")
    assert problem.severity == "error" and problem.check == "unreadable"
    assert problem.line == 2 and "xmin is not a number" in problem.message


def test_malformed_voc_file_is_reported_and_others_checked(tmp_path):
    folder = tmp_path / "voc"
    folder.mkdir()
    (folder / "bad.xml").write_text("<annotation><filename>x.jpg", encoding="utf-8")
    (folder / "good.xml").write_text(
        "<annotation><filename>g.jpg</filename><size><width>10</width><height>10</height>"
        "<depth>3</depth></size><object><name>cat</name><bndbox><xmin>5</xmin><ymin>1</ymin>"
        "<xmax>2</xmax><ymax>4</ymax></bndbox></object></annotation>",
        encoding="utf-8",
    )
    problems = dsxsd.validate(folder)
    assert {p.check for p in problems} == {"unreadable", "box-order"}
    assert any(p.check == "unreadable" and p.file.endswith("bad.xml") for p in problems)


def voc_object(name, xmin, ymin, xmax, ymax, extra=""):
    return (f"<object><name>{name}</name>{extra}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>\n")


def test_every_problem_of_every_object_of_a_voc_file_is_reported(tmp_path):
    folder = tmp_path / "voc"
    folder.mkdir()
    (folder / "a.xml").write_text(
        "<annotation>\n<filename>a.jpg</filename>\n"
        "<size><width>100</width><height>80</height><depth>3</depth></size>\n"
        + voc_object("cat", 50, 10, 20, 40)  # line 4: inverted
        + voc_object("cat", 10, 10, 150, 40)  # line 5: outside the 100x80 image
        + voc_object("cat", "abc", 10, 20, 40)  # line 6: not a number
        + voc_object("dog", "x", 10, 20, "y", "<difficult>maybe</difficult>")  # line 7: three
        + "</annotation>\n",
        encoding="utf-8",
    )
    problems = dsxsd.validate(folder)
    found = [(p.file, p.line, p.object_index, p.check) for p in problems]
    xml = str(folder / "a.xml")
    assert sorted(found, key=str) == sorted([
        ("a.jpg", None, 0, "box-order"),
        ("a.jpg", None, 1, "outside-image"),
        (xml, 6, 2, "unreadable"),
        (xml, 7, 3, "unreadable"),
        (xml, 7, 3, "unreadable"),
        (xml, 7, 3, "unreadable"),
    ], key=str)
    messages = [p.message for p in problems if p.check == "unreadable"]
    assert messages == [
        "<bndbox><xmin> is 'abc', not a number",
        "<bndbox><xmin> is 'x', not a number",
        "<bndbox><ymax> is 'y', not a number",
        "<difficult> is 'maybe', not 0 or 1",
    ]
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exit_code == 1
    assert f"{xml}:6 object 2: error: <bndbox><xmin> is 'abc', not a number [unreadable]" in result.output
    assert "a.jpg object 0: error: corners out of order" in result.output
    assert "a.jpg object 1: error: box (10.0, 10.0, 150.0, 40.0) is outside" in result.output
    assert "6 error(s), 0 warning(s)" in result.output


def test_every_bad_row_of_a_csv_file_is_reported_and_good_rows_checked(tmp_path):
    (tmp_path / "ann.csv").write_text(
        HEADER
        + "a.jpg,100,80,cat,50,10,20,40\n"  # line 2, object 0: inverted
        + "a.jpg,100,80,cat,x,10,20,40\n"  # line 3, object 1: not a number
        + "a.jpg,100,80,cat,10,10,150,40\n"  # line 4, object 2: outside
        + "a.jpg,100,80,cat,1,2,3,y\n"  # line 5, object 3: not a number
        + ",100,80,cat,1,2,3,4\n",  # line 6: no image
        encoding="utf-8",
    )
    problems = dsxsd.validate(tmp_path / "ann.csv")
    csv_file = str(tmp_path / "ann.csv")
    assert [(p.file, p.line, p.object_index, p.check) for p in problems] == [
        (csv_file, 6, None, "unreadable"),
        ("a.jpg", None, 0, "box-order"),
        (csv_file, 3, 1, "unreadable"),
        ("a.jpg", None, 2, "outside-image"),
        (csv_file, 5, 3, "unreadable"),
    ]


def test_class_list_is_stripped(dataset):
    assert read_class_list(dataset / "classes.txt") == ["cat", "dog"]


def test_cli_lines_table_and_exit_code(dataset):
    result = CliRunner().invoke(main, [
        "validate", str(dataset / "ann.csv"), "--images", str(dataset),
        "--classes", str(dataset / "classes.txt"),
    ])
    assert result.exit_code == 1
    assert "a.jpg object 2: error: corners out of order" in result.output
    assert "6 error(s), 1 warning(s)" in result.output
    assert "box-order" in result.output and "count" in result.output


def test_cli_json(dataset):
    result = CliRunner().invoke(main, ["validate", str(dataset / "ann.csv"), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.output)
    # No tolerance: the box 2 px past the edge is an error here.
    assert summary["errors"] == 3 and summary["warnings"] == 1
    assert {p["check"] for p in summary["problems"]} == {
        "duplicate", "box-order", "zero-area", "outside-image"
    }


def test_cli_warnings_alone_exit_zero(tmp_path):
    (tmp_path / "ann.csv").write_text(HEADER + "a.jpg,100,80,cat,1,1,5,5\n" * 2)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "ann.csv")])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 1 warning(s)" in result.output


def test_cli_clean_dataset(tmp_path):
    (tmp_path / "ann.csv").write_text(HEADER + "a.jpg,100,80,cat,1,1,5,5\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "ann.csv")])
    assert result.exit_code == 0 and "0 error(s), 0 warning(s)" in result.output


def test_help():
    result = CliRunner().invoke(main, ["validate", "--help"])
    assert result.exit_code == 0 and "--tolerance" in result.output
