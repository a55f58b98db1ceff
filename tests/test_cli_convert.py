"""``dsxsd convert`` through click's CliRunner: every pair, usage errors, data errors,
overwrite, skip reports, JSON summaries; and ``--help`` on every command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from strategies import project
from yolo_support import make_images, with_placeholder_sizes

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.cli import main
from dsxsd.formats import get_format

READABLE = dsxsd.format_names(readable=True)
WRITABLE = dsxsd.format_names(writable=True)
PAIRS = [(a, b) for a in READABLE for b in WRITABLE if a != b]


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="dsxsd")


def place(folder: Path, name: str) -> Path:
    """Where a file (or folder) of format ``name`` goes inside ``folder``."""
    fmt = get_format(name)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "" if fmt.output_is_dir else next(s for s in fmt.suffixes if s != "/")
    return folder / f"data{suffix}"


def obj(label, box, **kw):
    return ObjectAnnotation(label, BBox(*box), **kw)


DATASET = AnnotationSet(
    [
        ImageAnnotation(
            "a.jpg",
            640,
            480,
            3,
            [obj("dog", (10, 20, 110, 220), difficult=True), obj("猫 cat", (1.5, 2, 30, 40.25))],
            path="/data/a.jpg",
        ),
        ImageAnnotation("b.png", 32, 32, 1),
        ImageAnnotation("c.jpg", 100, 100, 3, [obj("a&b <c>, \"x\"", (0, 0, 100, 100))]),
    ]
)


def one_error_line(result, *needles: str) -> str:
    """The run printed one line on stderr, no traceback, naming what it should."""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# ------------------------------------------------------------------ help


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_of_every_command(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: dsxsd {command} ")
    assert "--help" in result.stdout


def test_main_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in main.commands:
        assert f"  {command}" in result.stdout
    # The line wraps once the list is long: compare with white space runs collapsed.
    text = " ".join(result.stdout.split())
    assert f"Convert annotations between formats: {', '.join(dsxsd.format_names())}." in text


def test_convert_help_lists_formats_and_pairs_from_the_registry():
    text = " ".join(invoke("convert", "--help").stdout.split())
    assert f"Formats: {', '.join(READABLE)}." in text
    assert "Conversions: " + ", ".join(f"{a}2{b}" for a, b in PAIRS) + "." in text


# ------------------------------------------------------------------ every pair


# A read-only source (labelme) cannot be made here by writing DATASET; its own tests
# convert it through the CLI.
WRITTEN_PAIRS = [(a, b) for a, b in PAIRS if a in WRITABLE]


@pytest.mark.parametrize("source, target", WRITTEN_PAIRS, ids=[f"{a}2{b}" for a, b in WRITTEN_PAIRS])
def test_every_pair_converts(tmp_path, source, target):
    # yolo keeps sizes only in the images: it is given images of DATASET's sizes and
    # depths, and gives back theirs.
    options, images = ([], {})
    if "yolo" in (source, target):
        images = {"images": make_images(DATASET, tmp_path / "images", depth=3)}
        options = ["--images", images["images"]]
    src = place(tmp_path / "in", source)
    dsxsd.write(DATASET, src, source)
    classes = len(dsxsd.read(src, source, **(images if source == "yolo" else {})).classes)
    dst = place(tmp_path / "out", target)

    result = invoke("convert", f"{source}2{target}", src, dst, *options)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{source} -> {target}: 3 images, 3 objects, {classes} classes written to {dst}\n"
    )
    # The dataset less what the source format cannot hold, less what the target cannot.
    expected = project(DATASET, get_format(source).lossy)
    if source == "yolo":
        expected = with_placeholder_sizes(expected, depth=3, made_from=DATASET)
    expected = project(expected, get_format(target).lossy)
    if target == "yolo":
        expected = with_placeholder_sizes(expected, depth=3, made_from=DATASET)
    assert dsxsd.read(dst, target, **(images if target == "yolo" else {})) == expected


def test_from_to_is_the_same_conversion(tmp_path):
    src = place(tmp_path / "in", "voc")
    dsxsd.write(DATASET, src, "voc")
    assert invoke("convert", "voc2json", src, tmp_path / "one.json").exit_code == 0
    result = invoke("convert", "--from", "voc", "--to", "json", src, tmp_path / "two.json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def test_pair_names_are_case_insensitive(tmp_path):
    src = tmp_path / "a.json"
    dsxsd.write(DATASET, src, "json")
    assert invoke("convert", "JSON2CSV", src, tmp_path / "a.csv").exit_code == 0
    assert dsxsd.read(tmp_path / "a.csv") == project(DATASET, get_format("csv").lossy)


# ------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "voc2foo", "IN", "OUT"], "unknown format 'foo'; known formats: "),
        (["convert", "foo2csv", "IN", "OUT"], "unknown format 'foo'"),
        (["convert", "voc2", "IN", "OUT"], "unknown format ''"),
        (["convert", "voctocsv", "IN", "OUT"], "'voctocsv' is not a conversion like voc2csv"),
        (["convert", "voc2csv2json", "IN", "OUT"], "is not a conversion like voc2csv"),
        (["convert", "voc2csv", "IN"], "give SRC2DST INPUT OUTPUT"),
        (["convert", "--from", "voc", "--to", "bar", "IN", "OUT"], "unknown format 'bar'"),
        (["convert", "--from", "bar", "--to", "csv", "IN", "OUT"], "unknown format 'bar'"),
        (["convert", "--from", "voc", "IN", "OUT"], "--from and --to go together"),
        (["convert", "--from", "voc", "--to", "csv", "voc2csv", "IN", "OUT"], "give INPUT and OUTPUT"),
        (["convert", "voc2csv", "IN", "OUT", "--columns", "wide"], "'wide' is not one of"),
        (["convert", "voc2csv", "IN", "OUT", "--on-error", "ignore"], "'ignore' is not one of"),
    ],
)
def test_usage_errors_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ data errors


BROKEN = {
    "voc": ("broken.xml", "<annotation>\n<filename>a.jpg</filename>\n<object>\n"),
    "csv": ("broken.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,1,1,cat,1,two,3,4\n"),
    "json": ("broken.json", '{"format": "dsxsd.annotations",\n "version": 1,\n "images": [}\n'),
    "lines": ("broken.txt", "a.jpg 1,2,3,4,0\nb.jpg 1,2,3,4,5\n"),
}


@pytest.mark.parametrize("source", sorted(BROKEN))
def test_a_malformed_input_is_one_error_line_and_exit_1(tmp_path, source):
    name, text = BROKEN[source]
    src = tmp_path / name
    src.write_text(text, "utf-8")
    (tmp_path / "classes.txt").write_text("cat\n")
    target = "json" if source != "json" else "csv"
    out = place(tmp_path / "out", target)
    result = invoke("convert", f"{source}2{target}", src, out)
    assert result.exit_code == 1, result.output
    line = one_error_line(result, str(src))
    assert "line " in line
    assert not out.exists()


# ------------------------------------------------------------------ overwrite


def test_overwrite(tmp_path):
    src = tmp_path / "in.json"
    dsxsd.write(DATASET, src, "json")
    out = tmp_path / "out.csv"
    out.write_text("precious\n")

    refused = invoke("convert", "json2csv", src, out)
    assert refused.exit_code == 2
    one_error_line(refused, str(out), "already exists; pass --overwrite to replace it")
    assert out.read_text() == "precious\n"

    replaced = invoke("convert", "json2csv", src, out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert dsxsd.read(out, "csv") == project(DATASET, get_format("csv").lossy)


def test_overwrite_of_a_folder_output(tmp_path):
    src = tmp_path / "in.json"
    dsxsd.write(DATASET, src, "json")
    out = tmp_path / "Annotations"
    out.mkdir()
    (out / "old.xml").write_text("<annotation/>")
    assert invoke("convert", "json2voc", src, out).exit_code == 2
    assert [p.name for p in out.iterdir()] == ["old.xml"]
    assert invoke("convert", "json2voc", src, out, "--overwrite").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.xml", "b.xml", "c.xml"]


# ------------------------------------------------------------------ --on-error skip


def voc_folder_with_a_bad_file(tmp_path: Path) -> Path:
    folder = tmp_path / "Annotations"
    dsxsd.write(DATASET, folder, "voc")
    (folder / "broken.xml").write_text("<annotation>\n<filename>x.jpg</filename>\n<object>\n")
    (folder / "notes.txt").write_text("not an annotation")  # ignored, not skipped
    return folder


def test_raise_is_the_default_and_writes_nothing(tmp_path):
    folder = voc_folder_with_a_bad_file(tmp_path)
    out = tmp_path / "labels.csv"
    result = invoke("convert", "voc2csv", folder, out)
    assert result.exit_code == 1
    one_error_line(result, str(folder / "broken.xml"))
    assert list(tmp_path.glob("labels.csv*")) == []


def test_skip_converts_the_good_files_and_reports_the_bad(tmp_path):
    folder = voc_folder_with_a_bad_file(tmp_path)
    out = tmp_path / "labels.csv"
    result = invoke("convert", "voc2csv", folder, out, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    report = tmp_path / "labels.csv.skipped.csv"
    assert result.stderr == f"skipped 1 files; reasons in {report}\n"
    assert [i.filename for i in dsxsd.read(out)] == ["a.jpg", "b.png", "c.jpg"]
    with open(report, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["file"], row["line"] != "") for row in rows] == [(str(folder / "broken.xml"), True)]
    assert rows[0]["reason"]


def test_skip_on_a_single_file_format_skips_rows(tmp_path):
    src = tmp_path / "in.txt"
    (tmp_path / "classes.txt").write_text("cat\n")
    src.write_text("a.jpg 1,2,3,4,0\nb.jpg 1,2,3,4,9\nc.jpg\n")
    out = tmp_path / "out.json"
    result = invoke("convert", "lines2json", src, out, "--on-error", "skip", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["skipped"]) == (2, 1)
    with open(summary["report"], newline="", encoding="utf-8") as stream:
        (row,) = list(csv.DictReader(stream))
    assert (row["file"], row["line"]) == (str(src), "2")
    assert "class id 9 is not in the class list" in row["reason"]


# ------------------------------------------------------------------ --json, --columns


def test_json_summary(tmp_path):
    src = place(tmp_path / "in", "voc")
    dsxsd.write(DATASET, src, "voc")
    out = tmp_path / "labels.csv"
    result = invoke("convert", "--from", "voc", "--to", "csv", src, out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "from": "voc",
        "to": "csv",
        "input": str(src),
        "output": str(out),
        "images": 3,
        "objects": 3,
        "classes": 3,
        "skipped": 0,
        "report": None,
        "lost": [],
    }
    assert result.stderr == ""


def test_columns_basic(tmp_path):
    src = tmp_path / "in.json"
    dsxsd.write(DATASET, src, "json")
    out = tmp_path / "labels.csv"
    assert invoke("convert", "json2csv", src, out, "--columns", "basic").exit_code == 0
    lines = out.read_text("utf-8").splitlines()
    assert lines[0] == "filename,width,height,class,xmin,ymin,xmax,ymax"
    assert lines[1] == "a.jpg,640,480,dog,10,20,110,220"
    assert lines[3] == 'c.jpg,100,100,"a&b <c>, ""x""",0,0,100,100'  # b.png: no objects, no row
    assert len(lines) == 4
    full = tmp_path / "full.csv"
    assert invoke("convert", "json2csv", src, full).exit_code == 0
    assert full.read_text("utf-8").splitlines()[0].endswith(",depth,difficult,truncated,pose")


def test_convert_images_option_reads_missing_sizes_from_image_headers(tmp_path):
    from PIL import Image

    from dsxsd.cli import main

    annotations = tmp_path / "Annotations"
    annotations.mkdir()
    (annotations / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox>"
        "</object></annotation>"
    )
    pictures = tmp_path / "JPEGImages"
    pictures.mkdir()
    Image.new("RGB", (37, 21)).save(pictures / "a.png")
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(
        main, ["convert", "voc2csv", str(annotations), str(out), "--images", str(pictures)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1].startswith("a.png,37,21,cat,1,2,3,4")


def test_a_warning_lists_what_the_target_cannot_hold(tmp_path):
    src = place(tmp_path / "in", "json")
    dsxsd.write(DATASET, src, "json")
    result = invoke("convert", "json2coco", src, tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    # DATASET uses a difficult flag; it has no pose or attributes. Its depth and path
    # (which ends in the filename) describe the image file, and are not named.
    assert result.stderr == (
        "warning: coco cannot hold difficult flags; these are not in the output\n"
    )
    result = invoke("convert", "json2csv", src, tmp_path / "out.csv")
    assert result.stderr == ""


def test_the_warning_names_classes_a_target_without_a_class_list_loses(tmp_path):
    src = tmp_path / "in.json"
    dsxsd.write(AnnotationSet(DATASET.images, classes=("zebra", "dog", "猫 cat", "a&b <c>, \"x\"", "ant")), src, "json")
    result = invoke("convert", "json2voc", src, tmp_path / "voc")
    assert result.exit_code == 0, result.output
    assert "classes without objects (ant, zebra)" in result.stderr
    assert "classes" not in invoke("convert", "json2coco", src, tmp_path / "out.json").stderr


# ------------------------------------------------------------------ LabelImg to CSV

LABELIMG = """<annotation>
\t<folder>images</folder>
\t<filename>{stem}.jpg</filename>
\t<path>/home/ann/images/{stem}.jpg</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>640</width>
\t\t<height>480</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
LABELIMG_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>{difficult}</difficult>
\t\t<bndbox>
\t\t\t<xmin>10</xmin>
\t\t\t<ymin>20</ymin>
\t\t\t<xmax>30</xmax>
\t\t\t<ymax>40</ymax>
\t\t</bndbox>
\t</object>
"""


def labelimg_folder(folder: Path, images: dict[str, list[tuple[str, int]]]) -> Path:
    """A folder as LabelImg saves it: folder, path, depth and pose Unspecified in every
    file; ``images`` maps a stem to its objects as (class, difficult)."""
    folder.mkdir()
    for stem, objects in images.items():
        body = "".join(LABELIMG_OBJECT.format(name=n, difficult=d) for n, d in objects)
        (folder / f"{stem}.xml").write_text(LABELIMG.format(stem=stem, objects=body), "utf-8")
    return folder


def test_a_plain_labelimg_folder_converts_to_csv_without_a_warning(tmp_path):
    folder = labelimg_folder(tmp_path / "Annotations", {"a": [("dog", 0)], "b": [("cat", 0)]})
    for columns in ("full", "basic"):
        out = tmp_path / f"{columns}.csv"
        result = invoke("convert", "voc2csv", folder, out, "--columns", columns)
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert "2 images, 2 objects" in result.stdout


def test_basic_columns_warn_about_the_flags_and_empty_images_they_drop(tmp_path):
    folder = labelimg_folder(tmp_path / "Annotations", {"a": [("dog", 1)], "b": [("cat", 0)], "c": []})
    out = tmp_path / "labels.csv"
    result = invoke("convert", "voc2csv", folder, out, "--columns", "basic")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: csv cannot hold difficult flags, images without objects; "
        "these are not in the output\n"
    )
    # The basic columns are xml_to_csv.py's output: no row for c.jpg, and the summary
    # counts what was written.
    assert out.read_text("utf-8").splitlines() == [
        "filename,width,height,class,xmin,ymin,xmax,ymax",
        "a.jpg,640,480,dog,10,20,30,40",
        "b.jpg,640,480,cat,10,20,30,40",
    ]
    assert "2 images, 2 objects" in result.stdout
    # The full columns hold both: nothing to warn about, and c.jpg keeps its row.
    result = invoke("convert", "voc2csv", folder, tmp_path / "full.csv")
    assert (result.exit_code, result.stderr) == (0, "")
    assert (tmp_path / "full.csv").read_text("utf-8").splitlines()[-1] == "c.jpg,640,480,,,,,,3,,,"


def test_a_path_naming_another_file_is_warned_about(tmp_path):
    src = tmp_path / "in.json"
    dsxsd.write(AnnotationSet([ImageAnnotation("a.jpg", 10, 10, path="/data/b.jpg")]), src)
    result = invoke("convert", "json2csv", src, tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert result.stderr == "warning: csv cannot hold path; these are not in the output\n"


def test_full_columns_carry_the_pose_unspecified_from_either_voc_reader(tmp_path):
    folder = labelimg_folder(tmp_path / "Annotations", {"a": [("dog", 0)]})
    # A comment keeps b.xml off the LabelImg fast path: lxml reads it.
    text = LABELIMG.format(stem="b", objects=LABELIMG_OBJECT.format(name="cat", difficult=0))
    (folder / "b.xml").write_text(text.replace("<segmented>", "<!-- x --><segmented>"), "utf-8")
    from dsxsd.formats import _labelimg

    assert _labelimg.read((folder / "a.xml").read_bytes()) is not None
    assert _labelimg.read((folder / "b.xml").read_bytes()) is None
    out = tmp_path / "labels.csv"
    assert invoke("convert", "voc2csv", folder, out).exit_code == 0
    assert out.read_text("utf-8").splitlines()[1:] == [
        "a.jpg,640,480,dog,10,20,30,40,3,0,0,Unspecified",
        "b.jpg,640,480,cat,10,20,30,40,3,0,0,Unspecified",
    ]
    # And back: VOC -> CSV -> VOC keeps the pose as it was written.
    back = tmp_path / "back"
    assert invoke("convert", "csv2voc", out, back).exit_code == 0
    assert b"<pose>Unspecified</pose>" in (back / "a.xml").read_bytes()
