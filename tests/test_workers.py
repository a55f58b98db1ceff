"""``workers``: convert and crop in worker processes give exactly what one process gives.

The thresholds that keep small inputs in-process are lowered here so that small test
folders really go through the process pool, and each such test checks that a pool was
started.
"""

from __future__ import annotations

import csv
import dataclasses
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

import dsxsd
from dsxsd import (
    AnnotationSet,
    BBox,
    ImageAnnotation,
    InvalidValueError,
    MalformedFileError,
    ObjectAnnotation,
)
from dsxsd import _engine
from dsxsd import crops as crops_module
from dsxsd._engine import available_cores, resolve_workers
from dsxsd.conversion import lost_fields
from dsxsd.cli import main
from dsxsd.formats import voc
from dsxsd.formats import csv as csv_format

FILES = 40

CVAT_OBJECT = """<annotation>
  <filename>cvat_{index}.png</filename>
  <size><width>320</width><height>240</height><depth>3</depth></size>
  <object>
    <name> traffic light </name>
    <pose>Frontal</pose>
    <truncated>true</truncated>
    <difficult/>
    <occluded>1</occluded>
    <bndbox><xmin>10.5</xmin><ymin>20</ymin><xmax>30.25</xmax><ymax>40</ymax></bndbox>
    <attributes>
      <attribute><name>colour</name><value>red</value></attribute>
    </attributes>
    <part><name>lamp</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>
  </object>
</annotation>
"""


def _image(index: int, rng: random.Random) -> ImageAnnotation:
    objects = []
    for _ in range(rng.randint(0, 3)):
        x, y = rng.randrange(600), rng.randrange(440)
        objects.append(
            ObjectAnnotation(
                rng.choice(["person", "car", "Ünïcode class"]),
                BBox(x, y, x + rng.randint(1, 40), y + rng.randint(1, 40)),
                difficult=rng.random() < 0.2,
                truncated=rng.random() < 0.2,
                pose=rng.choice([None, "Left"]),
            )
        )
    return ImageAnnotation(f"img_{index:03d}.jpg", 640, 480, 3, objects, folder="images")


def voc_folder(root: Path, count: int = FILES, seed: int = 0) -> Path:
    """``count`` VOC files: LabelImg-shaped ones from our writer and every seventh one a
    CVAT file with flags, attributes and a ``<part>``."""
    rng = random.Random(seed)
    folder = root / "Annotations"
    folder.mkdir()
    for index in range(count):
        name = folder / f"img_{index:03d}.xml"
        if index % 7 == 3:
            name.write_text(CVAT_OBJECT.format(index=index), "utf-8")
        else:
            name.write_bytes(voc.to_bytes(_image(index, rng)))
    return folder


START_METHODS = [m for m in ("fork", "forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]


@pytest.fixture(params=START_METHODS)
def start_method(request, monkeypatch) -> str:
    """Run the test with workers started each way dsxsd may start them. A forked worker
    inherits this process's monkeypatches, a forkserver or spawned one imports dsxsd
    afresh: a test must pass with both."""
    monkeypatch.setattr(_engine, "start_method", lambda: request.param)
    return request.param


def pools_started(monkeypatch) -> list[int]:
    """The worker counts of the pools started from here on (the pools still run)."""
    started: list[int] = []
    real = _engine.process_pool
    monkeypatch.setattr(_engine, "process_pool", lambda workers: started.append(workers) or real(workers))
    return started


def no_pool(monkeypatch) -> None:
    monkeypatch.setattr(_engine, "process_pool", lambda *a: pytest.fail("a pool was started"))


_EXPECTED_POOLS: list[list[int]] = []


@pytest.fixture(autouse=True)
def _pools_were_started():
    """A test that called :func:`pool_only` fails unless it started a pool."""
    _EXPECTED_POOLS.clear()
    yield
    assert all(_EXPECTED_POOLS), "no pool was started"


def pool_only(monkeypatch) -> None:
    """From here on every folder of 4 files or more goes to the pool, in chunks of 4 to 8
    files; the test fails unless a pool was started."""
    monkeypatch.setattr(_engine, "MIN_FILES", 4)
    monkeypatch.setattr(_engine, "MIN_FILES_UNFORKED", 4)
    monkeypatch.setattr(_engine, "CHUNK_FILES", (4, 8))
    # "All cores" is two even on a one-core machine, so the default really uses a pool.
    monkeypatch.setattr(_engine, "available_cores", lambda: 2)
    _EXPECTED_POOLS.append(pools_started(monkeypatch))


def _serial(folder: Path, **options) -> AnnotationSet:
    return dsxsd.read(folder, "voc", workers=1, **options)


# --------------------------------------------------------------------------- convert


def test_parallel_read_equals_serial_read(tmp_path, monkeypatch, start_method):
    folder = voc_folder(tmp_path)
    serial = _serial(folder)
    pool_only(monkeypatch)
    parallel = dsxsd.read(folder, "voc", workers=2)
    assert parallel == serial  # images in the same order, every field equal
    assert parallel.classes == serial.classes
    assert [im.filename for im in parallel.images] == [
        f"cvat_{i}.png" if i % 7 == 3 else f"img_{i:03d}.jpg" for i in range(FILES)
    ]
    cvat = parallel.images[3].objects[0]
    assert (cvat.label, cvat.bbox.as_tuple(), cvat.truncated, cvat.difficult, cvat.occluded) == (
        "traffic light", (10.5, 20.0, 30.25, 40.0), True, False, True,
    )
    assert cvat.attributes == {"colour": "red"} and cvat.pose == "Frontal"
    assert len(parallel.images[3].objects) == 1  # the <part> is not an object


def test_images_from_workers_pass_the_model_checks_again(tmp_path, monkeypatch, start_method):
    """Workers send plain values back and the parent rebuilds the dataclasses without
    their constructors (as unpickling does); running the constructors again on what came
    back must change nothing."""
    folder = voc_folder(tmp_path)
    pool_only(monkeypatch)
    parallel = dsxsd.read(folder, "voc", workers=2)
    for image in parallel.images:
        objects = tuple(
            dataclasses.replace(obj, bbox=dataclasses.replace(obj.bbox)) for obj in image.objects
        )
        assert dataclasses.replace(image, objects=objects) == image
        assert all(type(value) is float for obj in objects for value in obj.bbox.as_tuple())
    assert AnnotationSet(parallel.images) == parallel


def _with_bad_files(folder: Path) -> None:
    (folder / "img_013.xml").write_text("<annotation>\n<filename>a.jpg</filename>\n<oops>\n", "utf-8")
    text = (folder / "img_030.xml").read_text("utf-8")
    (folder / "img_030.xml").write_text(text.replace("<xmin>", "<xmin>nan", 1), "utf-8")


@pytest.mark.parametrize("job", ["read", "convert voc2csv"])
def test_first_bad_file_in_file_order_is_the_error_raised(tmp_path, monkeypatch, start_method, job):
    folder = voc_folder(tmp_path)
    _with_bad_files(folder)
    with pytest.raises(MalformedFileError) as serial:
        _serial(folder)
    if job == "read":
        pool_only(monkeypatch)
        run = lambda: dsxsd.read(folder, "voc", workers=2)  # noqa: E731
    else:  # the workers write CSV rows (see the voc2csv tests below)
        pool_only(monkeypatch)
        run = lambda: dsxsd.convert(folder, tmp_path / "pool.csv", workers=2)  # noqa: E731
    with pytest.raises(MalformedFileError) as parallel:
        run()
    assert str(parallel.value) == str(serial.value)
    assert parallel.value.file == str(folder / "img_013.xml")
    assert parallel.value.line == 4
    assert str(parallel.value).startswith(f"{folder / 'img_013.xml'}, line 4: not well-formed XML")

    # With the first one fixed, the second bad file is the one named, with its line.
    (folder / "img_013.xml").unlink()
    with pytest.raises(InvalidValueError) as caught:
        run()
    assert caught.value.file == str(folder / "img_030.xml")
    assert caught.value.line is not None and "<bndbox><xmin>" in str(caught.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Annotations"]  # nothing written


def test_skipped_files_are_the_same_in_parallel(tmp_path, monkeypatch, start_method):
    folder = voc_folder(tmp_path)
    _with_bad_files(folder)
    serial = _serial(folder, on_error="skip")
    pool_only(monkeypatch)
    parallel = dsxsd.read(folder, "voc", workers=2, on_error="skip")
    assert parallel == serial and len(parallel.images) == FILES - 2
    assert parallel.skipped == serial.skipped
    assert [(Path(s.file).name, s.line) for s in parallel.skipped] == [
        ("img_013.xml", 4), ("img_030.xml", serial.skipped[1].line),
    ]
    assert all(s.reason for s in parallel.skipped)


def test_small_folders_stay_in_this_process(tmp_path, monkeypatch):
    folder = voc_folder(tmp_path, count=5)
    assert min(_engine.MIN_FILES, _engine.MIN_FILES_UNFORKED) > 5
    no_pool(monkeypatch)
    assert len(dsxsd.read(folder, "voc", workers=0).images) == 5  # all cores, but few files


def test_the_python_api_uses_one_process_unless_asked(tmp_path, monkeypatch):
    """Where workers cannot be forked they re-import the calling script, which needs a
    __main__ guard; so only the CLI uses every core by default."""
    folder = voc_folder(tmp_path, count=5)
    monkeypatch.setattr(_engine, "MIN_FILES", 2)
    monkeypatch.setattr(_engine, "MIN_FILES_UNFORKED", 2)
    monkeypatch.setattr(crops_module, "PARALLEL_MIN_IMAGES", 2)
    no_pool(monkeypatch)
    assert len(dsxsd.read(folder, "voc").images) == 5
    assert dsxsd.convert(folder, tmp_path / "a.csv").images == 5
    (tmp_path / "crop").mkdir()
    labels, images = _crop_scene(tmp_path / "crop")
    assert dsxsd.crop(labels, images=images, out=tmp_path / "c", on_error="skip").crops == 24


def test_workers_values(tmp_path):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cores() == cores
    assert resolve_workers(None) == resolve_workers(0) == cores
    assert resolve_workers(3) == 3
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            resolve_workers(bad)
    folder = voc_folder(tmp_path, count=2)
    with pytest.raises(ValueError, match="workers"):
        dsxsd.read(folder, "voc", workers=-2)
    # A one-file format takes the option and reads as usual; a bad value is refused alike.
    dsxsd.write(dsxsd.read(folder, "voc"), tmp_path / "a.csv")
    assert len(dsxsd.read(tmp_path / "a.csv", workers=2).images) == 2
    with pytest.raises(ValueError, match="workers"):
        dsxsd.read(tmp_path / "a.csv", workers=-1)


def test_workers_are_forked_only_from_a_linux_process_of_one_thread(monkeypatch):
    unforked = "forkserver" if "forkserver" in START_METHODS else "spawn"
    cases = [(1, "linux", "fork"), (2, "linux", unforked), (None, "linux", unforked),
             (1, "darwin", unforked)]
    for threads, platform, expected in cases:
        monkeypatch.setattr(_engine, "threads_running", lambda: threads)
        monkeypatch.setattr(sys, "platform", platform)
        assert _engine.start_method() == expected, (threads, platform)


THREADS_SEEN = """
import threading
from dsxsd import _engine

print(_engine.threads_running(), _engine.start_method())
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
print(_engine.threads_running(), _engine.start_method())
stop.set()
thread.join()
"""


def test_threads_are_counted_as_the_os_sees_them():
    """In a fresh interpreter: in this one, thread pools of earlier tests' libraries
    (TensorFlow's among them) start and end threads between any two counts."""
    if not sys.platform.startswith("linux"):
        count = _engine.threads_running()
        assert count is None or count >= 1
        return
    done = subprocess.run([sys.executable, "-c", THREADS_SEEN], capture_output=True,
                          text=True, check=True)
    alone, with_thread = (line.split() for line in done.stdout.splitlines())
    assert alone == ["1", "fork"]
    assert with_thread[0] == "2" and with_thread[1] != "fork"


FRESH_PROCESS_READ = """
import sys
import dsxsd
from dsxsd import _engine

_engine.MIN_FILES = _engine.MIN_FILES_UNFORKED = 4
_engine.CHUNK_FILES = (4, 8)
print(_engine.start_method())
dsxsd.write(dsxsd.read(sys.argv[1], "voc", workers=2), sys.argv[2], "csv")
"""


def test_a_script_reads_with_forked_workers_where_it_can(tmp_path):
    """No monkeypatching: a fresh interpreter that imported dsxsd runs one thread, so on
    Linux its workers are forked; what they read is what one process reads."""
    folder = voc_folder(tmp_path)
    dsxsd.write(_serial(folder), tmp_path / "one.csv", "csv")
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_READ, str(folder), str(tmp_path / "pool.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = {"fork"} if sys.platform.startswith("linux") else {"forkserver", "spawn"}
    assert done.stdout.strip() in expected
    assert (tmp_path / "pool.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()


def _die_in_workers(monkeypatch, module, name) -> None:
    """``module.name`` ends the process abruptly (as the kernel's out-of-memory killer or
    a crash in a decoder would) when it runs in a worker. Forked workers inherit it."""
    parent = os.getpid()
    real = getattr(module, name)

    def die_in_worker(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(9)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, die_in_worker)
    monkeypatch.setattr(_engine, "start_method", lambda: "fork")


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs fork to plant the crash")
def test_a_worker_that_dies_gives_one_clear_error(tmp_path, monkeypatch):
    folder = voc_folder(tmp_path)
    pool_only(monkeypatch)
    _die_in_workers(monkeypatch, _engine, "read_bytes")
    with pytest.raises(dsxsd.WorkerProcessError) as caught:
        dsxsd.read(folder, "voc", workers=2)
    assert caught.value.file == str(folder)
    assert "worker process ended abruptly while reading" in str(caught.value)
    assert "--workers 1" in str(caught.value)

    result = CliRunner().invoke(main, ["convert", "voc2csv", str(folder), str(tmp_path / "x.csv")])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {folder}: a worker process ended abruptly")
    assert "Traceback" not in result.output and not (tmp_path / "x.csv").exists()


@pytest.mark.skipif("fork" not in START_METHODS, reason="needs fork to plant the crash")
def test_a_crop_worker_that_dies_gives_one_clear_error(tmp_path, monkeypatch):
    labels, images = _crop_scene(tmp_path, missing=False)
    monkeypatch.setattr(crops_module, "PARALLEL_MIN_IMAGES", 2)
    _die_in_workers(monkeypatch, crops_module, "_cut_task")
    with pytest.raises(dsxsd.WorkerProcessError) as caught:
        dsxsd.crop(labels, images=images, out=tmp_path / "crops", workers=2)
    assert caught.value.file == str(images)
    assert "while cutting crops" in str(caught.value)
    assert not (tmp_path / "crops").exists()


def test_cli_workers_option(tmp_path, monkeypatch, start_method):
    folder = voc_folder(tmp_path)
    runner = CliRunner()
    help_text = runner.invoke(main, ["convert", "--help"]).output
    assert "--workers N" in help_text and "all cores" in help_text
    bad = runner.invoke(main, ["convert", "voc2csv", str(folder), str(tmp_path / "x.csv"), "--workers", "-1"])
    assert bad.exit_code == 2 and "--workers" in bad.output
    assert not (tmp_path / "x.csv").exists()

    one = runner.invoke(main, ["convert", "voc2csv", str(folder), str(tmp_path / "one.csv"), "--workers", "1"])
    assert one.exit_code == 0, one.output
    pool_only(monkeypatch)
    every = runner.invoke(main, ["convert", "voc2csv", str(folder), str(tmp_path / "all.csv"), "--workers", "0"])
    assert every.exit_code == 0, every.output
    assert (tmp_path / "all.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert f"{FILES} images" in every.output


# --------------------------------------------------------------------------- voc2csv


def _needs_quotes(folder: Path) -> None:
    """One file whose CSV row needs quotes: its image name and label hold commas and
    quotes (the rows of the others are joined without the csv module)."""
    image = ImageAnnotation('q, "x".jpg', 640, 480, 3, [ObjectAnnotation('a, "b"', BBox(1, 2, 3.5, 4))])
    (folder / "img_020.xml").write_bytes(voc.to_bytes(image))


@pytest.mark.parametrize("columns", ["full", "basic"])
def test_voc_to_csv_in_workers_writes_what_reading_then_writing_writes(
    tmp_path, monkeypatch, start_method, columns
):
    folder = voc_folder(tmp_path)
    _needs_quotes(folder)
    serial = _serial(folder)
    dsxsd.write(serial, tmp_path / "serial.csv", "csv", columns=columns)
    pool_only(monkeypatch)
    done = dsxsd.convert(folder, tmp_path / "pool.csv", "voc", "csv", workers=2,
                         write_options={"columns": columns})
    written = (tmp_path / "pool.csv").read_bytes()
    assert written == (tmp_path / "serial.csv").read_bytes()
    assert b'"q, ""x"".jpg",640,480,"a, ""b""",1,2,3.5,4' in written
    # The full columns give an image without objects a row, the basic ones none.
    empty = sum(not i.objects for i in serial.images)
    assert empty > 0
    rows = serial.num_objects + (empty if columns == "full" else 0)
    assert written.count(b"\n") == 1 + rows
    assert (done.images, done.objects, done.classes) == (
        FILES - (empty if columns == "basic" else 0), serial.num_objects, len(serial.classes)
    )
    assert done.lost == tuple(lost_fields(serial, csv_format.lossy_for(columns)))
    assert done.lost == {
        "full": ("occluded", "object attributes"),
        "basic": ("difficult flags", "truncated flags", "occluded", "pose", "object attributes",
                  "images without objects"),
    }[columns]
    if columns == "full":  # both readers' "Unspecified" pose, written as VOC writes it
        assert b",Unspecified\n" in written and b",Frontal\n" in written
    assert (done.skipped, done.report) == ((), None)


def test_voc_to_csv_in_workers_skips_what_reading_skips(tmp_path, monkeypatch, start_method):
    folder = voc_folder(tmp_path)
    _with_bad_files(folder)
    serial = _serial(folder, on_error="skip")
    dsxsd.write(serial, tmp_path / "serial.csv")
    pool_only(monkeypatch)
    done = dsxsd.convert(folder, tmp_path / "pool.csv", workers=2, on_error="skip")
    assert (tmp_path / "pool.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()
    assert done.skipped == serial.skipped and len(done.skipped) == 2
    assert done.images == FILES - 2
    assert done.report == str(tmp_path / "pool.csv.skipped.csv")
    with open(done.report, encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["file", "line", "reason"]
    assert [(Path(f).name, line) for f, line, _ in rows[1:]] == [
        ("img_013.xml", "4"), ("img_030.xml", str(serial.skipped[1].line)),
    ]


@pytest.mark.parametrize("where", ["one process", "workers"])
def test_convert_that_skipped_every_file_writes_no_output_and_fails(tmp_path, monkeypatch, where):
    folder = tmp_path / "broken"
    folder.mkdir()
    for index in range(6):
        (folder / f"img_{index}.xml").write_text("<annotation><filename>x.jpg</filename>")
    if where == "workers":
        pool_only(monkeypatch)
    result = CliRunner().invoke(main, ["convert", "voc2csv", str(folder), str(tmp_path / "out.csv"),
                                       "--on-error", "skip", "--workers", "2"])
    report = tmp_path / "out.csv.skipped.csv"
    assert result.exit_code == 1
    assert result.output == f"error: {folder}: no annotations written: 6 files skipped, reasons in {report}\n"
    assert not (tmp_path / "out.csv").exists()
    assert len(report.read_text().splitlines()) == 1 + 6


def test_convert_keeps_small_folders_in_this_process(tmp_path, monkeypatch):
    folder = voc_folder(tmp_path, count=5)
    no_pool(monkeypatch)
    done = dsxsd.convert(folder, tmp_path / "a.csv", workers=0)
    dsxsd.write(_serial(folder), tmp_path / "b.csv")
    assert done.images == 5
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# --------------------------------------------------------------------------- crop


def _crop_scene(root: Path, count: int = 8, missing: bool = True) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir()
    rng = random.Random(1)
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for index in range(count):
        picture = Image.new("RGB", (96, 64), (index * 20, 80, 160))
        draw = ImageDraw.Draw(picture)
        for n in range(3):
            x, y = rng.randrange(70), rng.randrange(40)
            draw.ellipse((x, y, x + 20, y + 20), fill=(250, 10 * n, 30))
            rows.append(f"p{index}.jpg,96,64,{'ab'[n % 2]},{x},{y},{x + 20},{y + 20}")
        picture.save(images / f"p{index}.jpg", quality=90)
    if missing:
        rows.append("missing.jpg,96,64,a,1,1,5,5")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return root / "labels.csv", images


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def cut_in_a_pool(monkeypatch) -> None:
    """From here on crop uses a pool from 2 images on, and the test fails unless it
    started one."""
    monkeypatch.setattr(crops_module, "PARALLEL_MIN_IMAGES", 2)
    monkeypatch.setattr(_engine, "available_cores", lambda: 2)
    _EXPECTED_POOLS.append(pools_started(monkeypatch))


def test_crop_on_all_cores_writes_what_one_worker_writes(tmp_path, monkeypatch, start_method):
    labels, images = _crop_scene(tmp_path)
    one = dsxsd.crop(labels, images=images, out=tmp_path / "one", workers=1, on_error="skip")
    cut_in_a_pool(monkeypatch)
    every = dsxsd.crop(labels, images=images, out=tmp_path / "every", on_error="skip", workers=0)
    assert _tree(tmp_path / "every") == _tree(tmp_path / "one")
    assert len(_tree(tmp_path / "one")) == 8 * 3 + 1  # 24 crops and crops.csv
    assert every.skipped_files == one.skipped_files and len(one.skipped_files) == 1
    assert every.skipped_objects == one.skipped_objects
    assert every.per_class == one.per_class
    with open(tmp_path / "every" / "crops.csv", newline="", encoding="utf-8") as stream:
        assert [row["path"] for row in csv.DictReader(stream)][:2] == ["a/p0_0.jpg", "b/p0_1.jpg"]


def test_crop_error_is_the_same_with_workers(tmp_path, monkeypatch, start_method):
    labels, images = _crop_scene(tmp_path, missing=False)
    (images / "p2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(dsxsd.DsxsdError) as serial:
        dsxsd.crop(labels, images=images, out=tmp_path / "one", workers=1)
    cut_in_a_pool(monkeypatch)
    with pytest.raises(dsxsd.DsxsdError) as parallel:
        dsxsd.crop(labels, images=images, out=tmp_path / "every", workers=0)
    assert type(parallel.value) is type(serial.value)
    assert str(parallel.value) == str(serial.value) and "p2.jpg" in str(parallel.value)
    assert not (tmp_path / "every").exists()


def test_crop_cli_workers_default_and_refusal(tmp_path):
    labels, images = _crop_scene(tmp_path, count=2)
    runner = CliRunner()
    help_text = runner.invoke(main, ["crop", "--help"]).output
    assert "--workers N" in help_text and "all cores" in help_text
    result = runner.invoke(
        main, ["crop", str(labels), "--images", str(images), "--out", str(tmp_path / "c"), "--on-error", "skip"]
    )
    assert result.exit_code == 0, result.output
    assert "6 crops from 2 images" in result.output
    bad = runner.invoke(main, ["crop", str(labels), "--images", str(images), "--workers", "-3"])
    assert bad.exit_code == 2 and "--workers" in bad.output
    with pytest.raises(ValueError, match="workers"):
        dsxsd.crop(labels, images=images, out=tmp_path / "d", workers=-1)


# --------------------------------------------------------------------------- grouped parsing


GOOD_DOC = b"<annotation><filename>g.jpg</filename><size><width>4</width><height>3</height></size></annotation>\n"
ODD_FILES = {
    # Each file alone is malformed, but glued together they would make two elements.
    "a_open.xml": b"<annotation><filename>x.jpg</filename>\n",
    "b_close.xml": b"<annotation/></annotation><annotation><filename>y.jpg</filename></annotation>",
    "c_two_roots.xml": b"<annotation><filename>z.jpg</filename></annotation><annotation>",
    "d_close_only.xml": b"<filename>w.jpg</filename></annotation>",
    "e_junk.xml": b"<annotation><filename>j.jpg</filename></annotation>junk\n",
    "f_nbsp_tail.xml": "<annotation><filename>n.jpg</filename></annotation>\u00a0".encode(),
    "g_good.xml": GOOD_DOC,
    "h_bom_declared.xml": b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n' + GOOD_DOC,
    "i_comment.xml": b"<annotation><!-- LabelImg --><filename>c.jpg</filename></annotation>",
    "j_latin1.xml": b'<?xml version="1.0" encoding="ISO-8859-1"?><annotation><filename>caf\xe9.jpg</filename></annotation>',
    "k_entity.xml": b'<!DOCTYPE a [<!ENTITY e "x">]><annotation><filename>&e;.jpg</filename></annotation>',
    "l_group_tag.xml": b"<annotation><filename>q.jpg</filename></annotation><group/>",
    "m_separator.xml": b"<annotation><filename>s.jpg</filename></annotation><?dsxsd-next-file?>",
    "n_empty.xml": b"",
    "p_large.xml": b"<annotation><filename>big.jpg</filename>" + b" " * (1 << 17) + b"</annotation>",
    "o_bad_number.xml": b"<annotation><filename>b.jpg</filename>\n<object><name>a</name>\n<bndbox><xmin>x</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>",
}


def _one_by_one(files):
    outcomes = []
    for file in files:
        try:
            outcomes.append(voc.read_file(file))
        except dsxsd.DsxsdError as exc:
            outcomes.append(exc)
    return outcomes


def test_the_fast_path_on_many_files_gives_what_reading_each_file_alone_gives(tmp_path):
    for name, data in ODD_FILES.items():
        (tmp_path / name).write_bytes(data)
    files = voc.annotation_files(tmp_path)
    expected = _one_by_one(files)
    read = dsxsd.read(tmp_path, "voc", on_error="skip")
    assert list(read.images) == [o for o in expected if isinstance(o, ImageAnnotation)]
    assert [(Path(s.file).name, s.reason, s.line) for s in read.skipped] == [
        (file.name, o.reason, o.line) for file, o in zip(files, expected) if isinstance(o, dsxsd.DsxsdError)
    ]
    names = {file.name: outcome for file, outcome in zip(files, expected)}
    assert [n for n, o in names.items() if isinstance(o, ImageAnnotation)] == [
        "g_good.xml", "h_bom_declared.xml", "i_comment.xml", "j_latin1.xml",
        "m_separator.xml",  # a processing instruction after the root is well-formed
        "p_large.xml",
    ]
    assert names["j_latin1.xml"].filename == "café.jpg"
    assert str(names["o_bad_number.xml"]) == (
        f"{tmp_path / 'o_bad_number.xml'}, line 3, field 'xmin': object 0: <bndbox><xmin> is 'x', not a number"
    )
    assert type(names["k_entity.xml"]) is dsxsd.HostileInputError

    # The fast path, given many files at once, vouches only for files it reads as the
    # reference reader does (none of a group that does not parse as one document), and
    # for plain good files by themselves.
    def fast(chosen):
        outcomes = voc.FILES.fast([f.read_bytes() for f in chosen], [str(f) for f in chosen], None)
        return {f.name: outcome for f, outcome in zip(chosen, outcomes) if outcome is not None}

    assert all(outcome == names[name] for name, outcome in fast(files).items())
    plain = [tmp_path / "g_good.xml", tmp_path / "h_bom_declared.xml"]
    assert fast(plain) == {"g_good.xml": names["g_good.xml"], "h_bom_declared.xml": names["h_bom_declared.xml"]}


# --------------------------------------------------------------------------- worker lifetime

# ``dsxsd crop`` with its workers started the way argv[1] names.
CROP_WITH = """
import sys
from dsxsd import _engine
from dsxsd.cli import main

method = sys.argv.pop(1)
_engine.start_method = lambda: method
main(sys.argv[1:], prog_name="dsxsd")
"""


def _long_crop_scene(root: Path) -> tuple[Path, Path]:
    """Enough images for the pool and enough work that a run lasts seconds: noisy
    photos (slow to encode) with many objects, cut to PNG."""
    images = root / "images"
    images.mkdir()
    noise = Image.frombytes("RGB", (320, 240), random.Random(3).randbytes(320 * 240 * 3))
    noise.save(images / "0.jpg", quality=95)
    data = (images / "0.jpg").read_bytes()
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for index in range(crops_module.PARALLEL_MIN_IMAGES + 8):
        (images / f"{index}.jpg").write_bytes(data)
        rows += [f"{index}.jpg,320,240,{'ab'[k % 2]},{k},{k},{200 + k},{160 + k}" for k in range(12)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return root / "labels.csv", images


def _live_processes_of_session(session: int) -> list[str]:
    """The processes of ``session`` that have not ended (zombies, ended but not yet
    reaped, do not count), as their command lines."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # ended while looked at
        state, _ppid, _group, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            found.append(command.decode(errors="replace")[:120])
    return found


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_a_killed_crop_takes_its_workers_with_it_and_the_next_run_cleans_up(tmp_path, method):
    """``kill -9`` of the ``dsxsd crop`` process alone, as an out-of-memory killer or a
    job scheduler sends it: its workers, the forkserver and the resource tracker end
    too, and the next run into the same --out removes the half-written temporary folder."""
    labels, images = _long_crop_scene(tmp_path)
    out = tmp_path / "crops"
    args = ["crop", str(labels), "--images", str(images), "--out", str(out), "--workers", "2", "--ext", "png"]
    crop = subprocess.Popen([sys.executable, "-c", CROP_WITH, method, *args], start_new_session=True,
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".crops.*.tmp/*/*.png")):  # workers are cutting
            assert crop.poll() is None, "crop ended before it could be killed"
            assert time.monotonic() < deadline, "no crop was written"
            time.sleep(0.02)
    finally:
        crop.send_signal(signal.SIGKILL)
        crop.wait()
    assert list(tmp_path.glob(".crops.*.tmp")), "the kill left nothing to clean up"

    deadline = time.monotonic() + 60
    while _live_processes_of_session(crop.pid):
        assert time.monotonic() < deadline, _live_processes_of_session(crop.pid)
        time.sleep(0.1)

    few = tmp_path / "few.csv"
    few.write_text("".join(labels.read_text().splitlines(keepends=True)[:3]), "utf-8")
    again = CliRunner().invoke(main, ["crop", str(few), "--images", str(images), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "2 crops from 1 images" in again.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
