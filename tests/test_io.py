"""Atomic, no-clobber writes; outputs that cannot be written; what killed runs leave."""

import builtins
import errno
import io
import os
import pathlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation, OutputExistsError, OutputWriteError
from dsxsd.cli import main
from dsxsd._io import atomic_directory, atomic_path, write_text
from dsxsd.report import report_path, write_skip_report
from disk_support import FullDisk
from dsxsd.annotations import SkippedFile


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


# --------------------------------------------------------------------------- outputs that cannot be written

NO_SPACE = os.strerror(errno.ENOSPC)


def _scene(root: Path) -> tuple[Path, Path, Path]:
    """labels.json, its images folder, and a crops manifest made from them."""
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"{index}.png")
        objects = [ObjectAnnotation("ab"[k % 2], BBox(k, k, 20 + k, 24 + k)) for k in range(4)]
        entries.append(ImageAnnotation(f"{index}.png", 40, 40, 3, objects))
    dsxsd.write(AnnotationSet(entries), root / "labels.json")
    dsxsd.crop(root / "labels.json", images=images, out=root / "crops")
    return root / "labels.json", images, root / "crops" / "crops.csv"


def _commands(labels: Path, images: Path, manifest: Path, out: Path) -> dict[str, list[str]]:
    """Each command that writes a big output, writing to ``out`` (plus a suffix)."""
    return {
        "convert": ["convert", "json2csv", str(labels), f"{out}.csv"],
        "crop": ["crop", str(labels), "--images", str(images), "--out", str(out)],
        "make-pairs": ["make-pairs", str(manifest), f"{out}.csv"],
    }


def _output_of(args: list[str]) -> str:
    return args[args.index("--out") + 1] if "--out" in args else args[-1]


def _cli(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("command", ["convert", "crop", "make-pairs"])
def test_an_output_in_a_folder_that_takes_no_files_names_the_output(tmp_path, command):
    """/proc takes no new files (ENOENT, even for root). The message names the output as
    typed and why, not the temporary file beside it."""
    args = _commands(*_scene(tmp_path), Path("/proc/p"))[command]
    result = _cli(args)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {_output_of(args)}: cannot create files in /proc: No such file or directory\n"
    )


@pytest.mark.parametrize("command", ["convert", "crop", "make-pairs"])
def test_an_output_under_a_file_names_the_output_and_the_file(tmp_path, command):
    labels, images, manifest = _scene(tmp_path)
    (tmp_path / "notes").write_text("a file, not a folder\n")
    before = sorted(os.listdir(tmp_path))
    args = _commands(labels, images, manifest, tmp_path / "notes" / "sub" / "out")[command]
    result = _cli(args)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {_output_of(args)}: cannot create files in {tmp_path / 'notes' / 'sub'}: "
        f"{tmp_path / 'notes'} is a file, not a folder\n"
    )
    assert sorted(os.listdir(tmp_path)) == before


def _fill_disk(monkeypatch, raw_writes: bool = True) -> None:
    """From here on the disk is full: files opened for writing (and, with
    ``raw_writes``, ``os.write`` to any file) fail with ENOSPC."""
    real_open, real_write = io.open, os.write

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        return FullDisk(opened) if set(mode) & set("wax+") else opened

    def write_on_full_disk(fd, data):
        if fd > 2:
            raise OSError(errno.ENOSPC, NO_SPACE)
        return real_write(fd, data)

    real_path_open = pathlib.Path.open

    def path_open_on_full_disk(path, mode="r", *args, **kwargs):
        opened = real_path_open(path, mode, *args, **kwargs)
        return FullDisk(opened) if set(mode) & set("wax+") else opened

    monkeypatch.setattr(io, "open", open_on_full_disk)
    monkeypatch.setattr(builtins, "open", open_on_full_disk)
    # Before Python 3.11, pathlib opened files through an io.open it held on to.
    monkeypatch.setattr(pathlib.Path, "open", path_open_on_full_disk)
    if raw_writes:
        monkeypatch.setattr(os, "write", write_on_full_disk)


@pytest.mark.parametrize(
    "command, raw_writes",
    [("convert", True), ("crop", True), ("crop", False), ("make-pairs", True)],
    ids=["convert", "crop", "crop-manifest", "make-pairs"],
)
def test_a_full_disk_names_the_output_and_leaves_nothing_behind(tmp_path, monkeypatch, command, raw_writes):
    """``crop-manifest``: the crops fit, the manifest inside the temporary folder does not."""
    labels, images, manifest = _scene(tmp_path)
    out = tmp_path / "out"
    before = sorted(os.listdir(tmp_path))
    args = _commands(labels, images, manifest, out)[command]
    _fill_disk(monkeypatch, raw_writes)
    result = _cli(args)
    monkeypatch.undo()
    assert result.exit_code == 1
    assert result.output == f"error: {_output_of(args)}: cannot write: {NO_SPACE}\n"
    assert sorted(os.listdir(tmp_path)) == before


def test_the_api_raises_output_write_error(tmp_path, monkeypatch):
    labels, _, _ = _scene(tmp_path)
    _fill_disk(monkeypatch)
    with pytest.raises(OutputWriteError) as caught:
        dsxsd.convert(labels, tmp_path / "out.csv")
    monkeypatch.undo()
    assert caught.value.file == str(tmp_path / "out.csv") and caught.value.exit_code == 1
    assert sorted(os.listdir(tmp_path)) == ["crops", "images", "labels.json"]


# A dsxsd process whose writes never end, as if the disk stalled: killed while it writes,
# it leaves its temporary output behind.
STALLED_WRITES = """
import builtins, io, pathlib, sys, time
from dsxsd.cli import main

real_open, real_path_open = io.open, pathlib.Path.open

class Stalled:
    def __init__(self, file): self.file = file
    def write(self, data): time.sleep(600)
    def __enter__(self): return self
    def __exit__(self, *exc): self.file.close()
    def __getattr__(self, name): return getattr(self.file, name)

def stalling_open(file, mode="r", *args, **kwargs):
    opened = real_open(file, mode, *args, **kwargs)
    return Stalled(opened) if set(mode) & set("wax+") else opened

def stalling_path_open(path, mode="r", *args, **kwargs):
    opened = real_path_open(path, mode, *args, **kwargs)
    return Stalled(opened) if set(mode) & set("wax+") else opened

io.open = builtins.open = stalling_open
pathlib.Path.open = stalling_path_open  # before Python 3.11 pathlib held its own io.open
main(sys.argv[1:], prog_name="dsxsd")
"""


@pytest.mark.parametrize("command", ["convert", "make-pairs"])
def test_the_next_run_removes_what_a_killed_run_was_writing(tmp_path, command):
    labels, images, manifest = _scene(tmp_path)
    out = tmp_path / "out"
    args = _commands(labels, images, manifest, out)[command]
    killed = subprocess.Popen([sys.executable, "-c", STALLED_WRITES, *args])
    try:
        deadline = time.monotonic() + 120
        while not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]:
            assert killed.poll() is None and time.monotonic() < deadline, "no temporary appeared"
            time.sleep(0.05)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".out.csv.")], "the kill left nothing"

    result = _cli(args)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ["crops", "images", "labels.json", "out.csv"]


def test_a_temporary_of_a_live_process_is_left_alone(tmp_path):
    labels, _, _ = _scene(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", STALLED_WRITES, "convert", "json2csv", str(labels),
                             str(tmp_path / "out.csv")])
    try:
        deadline = time.monotonic() + 120
        while not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]:
            assert live.poll() is None and time.monotonic() < deadline, "no temporary appeared"
            time.sleep(0.05)
        temporary = next(n for n in os.listdir(tmp_path) if n.endswith(".tmp"))
        dsxsd.convert(labels, tmp_path / "out.csv")
        assert temporary in os.listdir(tmp_path)
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()


def _dead_pid() -> int:
    """The process id of a process that has ended."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def test_an_output_set_aside_by_a_killed_overwrite_is_put_back(tmp_path):
    # --overwrite moves the old output aside, renames the new one in, then removes the
    # old one; a kill between the two renames leaves only the set-aside copy.
    labels, _, _ = _scene(tmp_path)
    assert _cli(["convert", "json2csv", str(labels), str(tmp_path / "out.csv")]).exit_code == 0
    before = (tmp_path / "out.csv").read_bytes()
    aside = tmp_path / f".out.csv.{_dead_pid()}.abcd1234.old"
    os.replace(tmp_path / "out.csv", aside)

    result = _cli(["convert", "json2csv", str(labels), str(tmp_path / "out.csv")])
    assert result.exit_code == 2 and "--overwrite" in result.output  # it is back, so guarded
    assert (tmp_path / "out.csv").read_bytes() == before and not aside.exists()
    # Once the output is in place, a set-aside copy of a dead run is only removed.
    aside.write_bytes(b"stale")
    assert _cli(["convert", "json2csv", str(labels), str(tmp_path / "out.csv"), "--overwrite"]).exit_code == 0
    assert not aside.exists() and (tmp_path / "out.csv").read_bytes() == before
