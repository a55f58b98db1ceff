"""The contract every registered format keeps (a new format joins by registering).

read(write(x)) == project(x, FORMAT.lossy): a format gives back everything except what
its ``lossy`` list says it cannot hold (see ``strategies.project``); writing twice gives
the same bytes; writing leaves its input alone; an existing output is replaced only with
``overwrite=True``, and a refused write leaves the old output as it was. A format whose
boxes travel normalised (``bbox_normalised``: yolo) gives them back within
``strategies.BOX_TOLERANCE``; one that keeps sizes only in the images (``NEEDS_IMAGES``)
is given placeholder images.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from strategies import HOSTILE_LABELS, annotation_sets, assert_matches, project
from yolo_support import make_images, with_placeholder_sizes

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.errors import OutputExistsError
from dsxsd.formats import get_format

FORMATS = dsxsd.format_names(readable=True, writable=True)


def output_path(folder: Path, name: str) -> Path:
    fmt = get_format(name)
    suffix = "" if fmt.output_is_dir else next(s for s in fmt.suffixes if s != "/")
    return folder / f"out{suffix}"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (``None``) under ``folder``, companion files such
    as classes.txt included."""
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None
        for path in sorted(folder.rglob("*"))
    }


# Formats that keep sizes only in the images (yolo) write and read with a folder of
# placeholder images: header-only PNGs of each image's size (a default size for images
# without one), whose sizes and depth they give back.
NEEDS_IMAGES = {"yolo"}


def image_options(name: str, folder: Path, *sets: AnnotationSet) -> dict[str, Path]:
    if name not in NEEDS_IMAGES:
        return {}
    for annotations in sets:
        make_images(annotations, folder / "images")
    return {"images": folder / "images"}


def expected(annotations: AnnotationSet, name: str) -> AnnotationSet:
    """What format ``name`` gives back for ``annotations``."""
    result = project(annotations, get_format(name).lossy)
    return with_placeholder_sizes(result) if name in NEEDS_IMAGES else result


def round_trip(annotations: AnnotationSet, name: str, folder: Path) -> AnnotationSet:
    path = output_path(folder, name)
    options = image_options(name, folder, annotations)
    dsxsd.write(annotations, path, name, **options)
    return dsxsd.read(path, name, **options)


def obj(label, box, **kw):
    return ObjectAnnotation(label, BBox(*box), **kw)


EXAMPLES = {
    "empty set": AnnotationSet(),
    "only empty images": AnnotationSet([ImageAnnotation("b.jpg"), ImageAnnotation("a.jpg", 10, 20, 3)]),
    "voc-like": AnnotationSet(
        [
            ImageAnnotation(
                "000005.jpg",
                500,
                375,
                3,
                [
                    obj("chair", (263, 211, 324, 339), truncated=True, pose="Rear"),
                    obj("chair", (165, 264, 253, 372), difficult=True),
                    obj("person", (5, 6, 100.5, 200.25), occluded=True, attributes={"moving": "no"}),
                ],
                folder="VOC2007",
                path="/data/VOC2007/JPEGImages/000005.jpg",
            ),
            ImageAnnotation("000007.jpg", 500, 333, 3, [obj("car", (141, 50, 500, 330))]),
            ImageAnnotation("000001.png"),
        ],
    ),
    "hostile labels and many classes": AnnotationSet(
        [
            ImageAnnotation(
                f"img{index:03d}.jpg",
                64,
                48,
                objects=[obj(label, (index, 0.1, 0.2 + index, 1e-7))],
            )
            for index, label in enumerate(HOSTILE_LABELS)
        ],
        classes=tuple(f"class {n}" for n in range(60)) + HOSTILE_LABELS[::-1],
    ),
}


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("example", list(EXAMPLES), ids=list(EXAMPLES))
def test_round_trip_of_fixed_examples(tmp_path, name, example):
    annotations = EXAMPLES[example]
    back = round_trip(annotations, name, tmp_path)
    assert_matches(back, expected(annotations, name), get_format(name).lossy)
    assert back.skipped == ()


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=40, deadline=None)
@given(annotations=annotation_sets())
def test_round_trip_of_generated_sets(name, annotations):
    with tempfile.TemporaryDirectory() as folder:
        back = round_trip(annotations, name, Path(folder))
    assert_matches(back, expected(annotations, name), get_format(name).lossy)


@pytest.mark.parametrize("name", FORMATS)
@settings(max_examples=15, deadline=None)
@given(annotations=annotation_sets())
def test_writing_twice_gives_the_same_bytes_and_leaves_the_input_alone(name, annotations):
    before = copy.deepcopy(annotations)
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        for folder in (Path(first), Path(second)):
            options = image_options(name, folder, annotations)
            dsxsd.write(annotations, output_path(folder, name), name, **options)
        files = snapshot(Path(first))
        assert output_path(Path(first), name).name in files
        assert files == snapshot(Path(second))
    assert annotations == before  # attributes are mutable dicts: equality compares them


@pytest.mark.parametrize("name", FORMATS)
def test_projection_is_a_fixed_point(tmp_path, name):
    """What a format gives back, it gives back unchanged: converting twice loses nothing
    more than converting once."""
    once = round_trip(EXAMPLES["voc-like"], name, tmp_path / "1")
    twice = round_trip(once, name, tmp_path / "2")
    assert twice == once == expected(once, name)


@pytest.mark.parametrize("name", FORMATS)
def test_overwrite_is_refused_unless_asked_and_the_old_output_survives(tmp_path, name):
    old = EXAMPLES["voc-like"]
    new = EXAMPLES["hostile labels and many classes"]
    path = output_path(tmp_path, name)
    options = image_options(name, tmp_path, old, new)
    dsxsd.write(old, path, name, **options)
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError) as caught:
        dsxsd.write(new, path, name, **options)
    assert caught.value.exit_code == 2
    assert "--overwrite" in str(caught.value)
    assert snapshot(tmp_path) == before
    assert dsxsd.read(path, name, **options) == expected(old, name)

    dsxsd.write(new, path, name, overwrite=True, **options)
    assert_matches(dsxsd.read(path, name, **options), expected(new, name), get_format(name).lossy)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert leftovers == []


def test_every_format_of_the_design_is_registered():
    assert {"voc", "csv", "json", "lines"} <= set(FORMATS)


# A folder-of-files format may register a fast path with the engine; what it reads must
# be what the format's reference reader reads, file by file, whatever else is beside it.
FAST = [name for name in dsxsd.format_names(readable=True) if getattr(get_format(name).files, "fast", None)]


@pytest.mark.parametrize("name", FAST)
@settings(max_examples=30, deadline=None)
@given(annotations=annotation_sets())
def test_a_fast_path_reads_what_the_reference_reader_reads(name, annotations):
    files = get_format(name).files
    with tempfile.TemporaryDirectory() as folder:
        path = output_path(Path(folder), name)
        dsxsd.write(annotations, path, name)
        listed = files.open(path)
        contents = [Path(file).read_bytes() for file in listed.files]
        fast = files.fast(contents, listed.files, listed.context)
        for file, data, outcome in zip(listed.files, contents, fast):
            alone = files.read_fast(data, file, listed.context)
            reference = files.parse(data, file, listed.context)
            for vouched in (outcome, alone):
                if vouched is not None:
                    image = files.read_fast(data, file, listed.context) if type(vouched) is tuple else vouched
                    assert image == reference, file
    assert FAST == ["voc"]  # a new fast path joins this test by registering
