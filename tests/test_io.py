"""Atomic, no-clobber writes."""

import os

import pytest

from dsxsd import OutputExistsError
from dsxsd._io import atomic_directory, atomic_path, write_text
from dsxsd.report import report_path, write_skip_report
from dsxsd.model import SkippedFile


def test_write_text_refuses_to_replace_without_overwrite(tmp_path):
    target = tmp_path / "out.csv"
    write_text(target, "old\n")
    with pytest.raises(OutputExistsError, match=r"out\.csv: already exists; pass --overwrite"):
        write_text(target, "new\n")
    assert target.read_text() == "old\n"
    write_text(target, "new\n", overwrite=True)
    assert target.read_text() == "new\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_atomic_directory_replaces_a_folder_whole_or_not_at_all(tmp_path):
    out = tmp_path / "Annotations"
    with atomic_directory(out) as tmp:
        (tmp / "a.xml").write_text("a")
    assert sorted(p.name for p in out.iterdir()) == ["a.xml"]

    with pytest.raises(RuntimeError):
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "b.xml").write_text("b")
            raise RuntimeError("crash")
    assert sorted(p.name for p in out.iterdir()) == ["a.xml"]

    with pytest.raises(OutputExistsError):
        with atomic_directory(out):
            pass

    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "c.xml").write_text("c")
    assert sorted(p.name for p in out.iterdir()) == ["c.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Annotations"]


def test_skip_report_lists_file_line_and_reason_beside_the_output(tmp_path):
    out = tmp_path / "labels.csv"
    assert write_skip_report(out, []) is None
    path = write_skip_report(out, [SkippedFile("a.xml", "not XML", 3), SkippedFile("b, c.xml", "empty")])
    assert path == report_path(out) == tmp_path / "labels.csv.skipped.csv"
    assert path.read_text() == 'file,line,reason\na.xml,3,not XML\n"b, c.xml",,empty\n'


def test_a_run_that_skips_nothing_removes_a_stale_report(tmp_path):
    out = tmp_path / "labels.csv"
    path = write_skip_report(out, [SkippedFile("a.xml", "not XML", 3)])
    assert path.exists()
    assert write_skip_report(out, []) is None
    assert not path.exists()


def test_outputs_get_the_umask_mode_not_the_private_temporary_one(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.csv", "x\n")
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "b.xml").write_text("b")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
