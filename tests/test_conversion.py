"""``dsxsd.convert``, the API under ``dsxsd convert``: formats guessed from the paths, the
report it returns, and what it refuses. (Every pair through the CLI is in
test_cli_convert.py; VOC to CSV in worker processes in test_workers.py.)"""

from __future__ import annotations

import pytest

import dsxsd
from dsxsd import AnnotationSet, BBox, ConvertReport, ImageAnnotation, ObjectAnnotation, OutputExistsError

DATASET = AnnotationSet(
    [
        ImageAnnotation("a.jpg", 640, 480, 3, [
            ObjectAnnotation("dog", BBox(10, 20, 110, 220), difficult=True, pose="Left"),
            ObjectAnnotation("cat", BBox(1.5, 2, 30, 40.25)),
        ], path="/data/a.jpg"),
        ImageAnnotation("b.png", 32, 32, 1),
    ],
    classes=("dog", "cat", "zebra"),
)


def test_formats_are_guessed_from_the_paths_and_the_report_counts_what_was_written(tmp_path):
    source = tmp_path / "in.json"
    dsxsd.write(DATASET, source)
    done = dsxsd.convert(source, tmp_path / "out.csv")
    assert done == ConvertReport(
        source="json", target="csv", input=str(source), output=str(tmp_path / "out.csv"),
        images=2, objects=2, classes=3, lost=("classes without objects (zebra)",),
    )
    back = dsxsd.read(tmp_path / "out.csv")
    assert [i.filename for i in back] == ["a.jpg", "b.png"] and back.classes == ("dog", "cat")


def test_options_reach_the_reader_and_the_writer(tmp_path):
    source = tmp_path / "in.json"
    dsxsd.write(DATASET, source)
    done = dsxsd.convert(source, tmp_path / "out.csv", "json", "csv", write_options={"columns": "basic"})
    assert (tmp_path / "out.csv").read_text("utf-8").splitlines() == [
        "filename,width,height,class,xmin,ymin,xmax,ymax",
        "a.jpg,640,480,dog,10,20,110,220",
        "a.jpg,640,480,cat,1.5,2,30,40.25",
    ]
    # The basic columns hold no flags, pose or image without objects (b.png); depth and
    # path are facts about the image file, not named (see lost_fields).
    assert done.lost == (
        "difficult flags", "pose", "images without objects", "classes without objects (zebra)",
    )
    assert done.images == 1
    done = dsxsd.convert(source, tmp_path / "out.coco.json", "json", "coco")
    assert done.lost == ("difficult flags", "pose")
    with pytest.raises(ValueError, match="columns must be 'full' or 'basic', got 'all'"):
        dsxsd.convert(source, tmp_path / "x.csv", write_options={"columns": "all"})
    with pytest.raises(TypeError):
        dsxsd.convert(source, tmp_path / "x.csv", read_options={"colour": "red"})
    assert not (tmp_path / "x.csv").exists()


def test_an_existing_output_is_replaced_only_when_asked(tmp_path):
    source = tmp_path / "in.json"
    dsxsd.write(DATASET, source)
    (tmp_path / "out.csv").write_text("keep me", "utf-8")
    with pytest.raises(OutputExistsError):
        dsxsd.convert(source, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text("utf-8") == "keep me"
    assert dsxsd.convert(source, tmp_path / "out.csv", overwrite=True).images == 2
    assert (tmp_path / "out.csv").read_text("utf-8").startswith("filename,")


def test_a_skip_report_is_written_beside_the_output_and_removed_when_stale(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                      "a.jpg,10,10,dog,1,2,3,4\nb.jpg,10,10,cat,1,x,3,4\n", "utf-8")
    done = dsxsd.convert(source, tmp_path / "out.json", on_error="skip")
    assert (done.images, len(done.skipped), done.skipped[0].line) == (1, 1, 3)
    assert done.report == str(tmp_path / "out.json.skipped.csv")
    assert "ymin" in (tmp_path / "out.json.skipped.csv").read_text("utf-8")
    source.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,10,10,dog,1,2,3,4\n", "utf-8")
    again = dsxsd.convert(source, tmp_path / "out.json", on_error="skip", overwrite=True)
    assert (again.skipped, again.report) == ((), None)
    assert not (tmp_path / "out.json.skipped.csv").exists()


def test_bad_arguments_are_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        dsxsd.convert(tmp_path / "missing", tmp_path / "out.csv", "voc", "csv", on_error="ignore")
    with pytest.raises(dsxsd.UnknownFormatError, match="unknown format 'vocc'"):
        dsxsd.convert(tmp_path / "missing", tmp_path / "out.csv", "vocc", "csv")
    with pytest.raises(ValueError, match="workers"):
        dsxsd.convert(tmp_path, tmp_path / "out.csv", "voc", "csv", workers=-1)
