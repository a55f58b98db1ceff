"""dsxsd crop / dsxsd.crop: per-class crops and the crops manifest."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

import dsxsd
from dsxsd import (
    AnnotationSet,
    BBox,
    HostileInputError,
    ImageAnnotation,
    MissingImageError,
    ObjectAnnotation,
    OutputExistsError,
)
from dsxsd.cli import main
from dsxsd.crops import (
    BELOW_MIN_SIZE,
    BOX_OUT_OF_ORDER,
    EMPTY_BOX,
    OUTSIDE_IMAGE,
    UsageError,
    Pad,
    class_folders,
    crop,
    crop_box,
    crop_stems,
    parse_pad,
    safe_name,
)
from dsxsd.errors import ImageDecodeError, InvalidValueError

HEADER = "path,class,source,object_index,xmin,ymin,xmax,ymax"


# --------------------------------------------------------------------------- helpers


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Random RGB pixels: any off-by-one in a crop shows as a mismatch."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth(width: int, height: int) -> np.ndarray:
    """Gradients and drawn shapes: JPEG keeps them closely (unlike noise), and a crop of
    the wrong region still shows, so lossy crops can be checked by value."""
    y, x = np.mgrid[0:height, 0:width]
    image = Image.fromarray(np.dstack([
        x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
        (x + y) * 255 // max(width + height - 2, 1),
    ]).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for n in range(0, width, 16):
        draw.rectangle((n, n // 2, n + 7, n // 2 + height // 3), fill=(255 - n % 256, 40, 200))
        draw.ellipse((width - n - 10, n // 3, width - n, n // 3 + 10), fill=(0, 220, 90))
    return np.asarray(image).copy()


def luma_error(got: np.ndarray, expected: np.ndarray) -> float:
    """Mean difference in brightness: JPEG keeps luma closely (chroma is subsampled)."""
    def luma(a):
        return np.asarray(Image.fromarray(np.asarray(a, np.uint8)).convert("L"), dtype=float)
    return float(np.abs(luma(got) - luma(expected)).mean())


def save(path: Path, pixels: np.ndarray | Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, **options)
    return path


def obj(label: str, box, **flags) -> ObjectAnnotation:
    return ObjectAnnotation(label, BBox(*box), **flags)


def dataset(*images: ImageAnnotation, classes=None) -> AnnotationSet:
    return AnnotationSet(images, classes=classes)


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "crops.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def scene(tmp_path):
    """Two noisy images and boxes with known pixels."""
    images = tmp_path / "images"
    a, b = noise(64, 48, seed=1), noise(32, 40, seed=2)
    save(images / "a.png", a)
    save(images / "b.png", b)
    annotations = dataset(
        ImageAnnotation("a.png", 64, 48, 3, [obj("cat", (3, 4, 20, 30)), obj("dog", (10.4, 0.6, 40.5, 11.2))]),
        ImageAnnotation("b.png", 32, 40, 3, [obj("cat", (0, 0, 32, 40))]),
    )
    return annotations, images, {"a.png": a, "b.png": b}


# --------------------------------------------------------------------------- pixels & manifest


def test_png_crops_hold_exactly_the_source_region_and_the_manifest_lists_them(scene, tmp_path):
    annotations, images, source = scene
    out = tmp_path / "crops"
    report = crop(annotations, images=images, out=out, ext="png")

    rows = manifest(out)
    a_path = Path(os.path.abspath(images / "a.png")).as_posix()
    b_path = Path(os.path.abspath(images / "b.png")).as_posix()
    assert rows == [
        {"path": "cat/a_0.png", "class": "cat", "source": a_path, "object_index": "0",
         "xmin": "3", "ymin": "4", "xmax": "20", "ymax": "30"},
        # fractions widen outwards: floor the minimum, ceil the maximum
        {"path": "dog/a_1.png", "class": "dog", "source": a_path, "object_index": "1",
         "xmin": "10", "ymin": "0", "xmax": "41", "ymax": "12"},
        {"path": "cat/b_0.png", "class": "cat", "source": b_path, "object_index": "0",
         "xmin": "0", "ymin": "0", "xmax": "32", "ymax": "40"},
    ]
    for row in rows:
        l, t, r, b = (int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        expected = source[Path(row["source"]).name][t:b, l:r]
        assert np.array_equal(pixels(out / row["path"]), expected)
    assert report.crops == 3
    assert dict(report.per_class) == {"cat": 2, "dog": 1}
    assert report.images == 2
    assert report.manifest == out / "crops.csv"
    assert (out / "crops.csv").read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert sorted(tree(out)) == ["cat/a_0.png", "cat/b_0.png", "crops.csv", "dog/a_1.png"]


def test_jpeg_is_the_default_and_quality_is_used(tmp_path):
    source = smooth(120, 90)
    save(tmp_path / "images" / "g.png", source)
    annotations = dataset(ImageAnnotation("g.png", objects=[obj("cat", (30, 20, 90, 70))]))
    high = crop(annotations, images=tmp_path / "images", out=tmp_path / "high")
    crop(annotations, images=tmp_path / "images", out=tmp_path / "low", quality=10)
    path = high.out / "cat" / "g_0.jpg"
    with Image.open(path) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (60, 50)
    got = pixels(path)
    assert luma_error(got, source[20:70, 30:90]) < 1.5
    assert luma_error(got, source[20:70, 31:91]) > 3  # one pixel off shows
    assert (tmp_path / "low" / "cat" / "g_0.jpg").stat().st_size < path.stat().st_size


def test_an_object_in_an_image_that_is_not_needed_is_not_looked_for(tmp_path):
    images = tmp_path / "images"
    save(images / "a.png", noise(10, 10))
    annotations = dataset(
        ImageAnnotation("a.png", objects=[obj("x", (0, 0, 5, 5))]),
        ImageAnnotation("negative.png"),  # no objects, and not on disk: no error
        ImageAnnotation("hard.png", objects=[obj("x", (0, 0, 5, 5), difficult=True)]),
    )
    report = crop(annotations, images=images, out=tmp_path / "out", skip_difficult=True)
    assert report.crops == 1 and report.images == 1
    assert [(s.filename, s.reason) for s in report.skipped_objects] == [("hard.png", "difficult")]


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "box, size, options, expected",
    [
        ((10, 10, 20, 30), (100, 100), {}, (10, 10, 20, 30)),
        ((10.2, 10.7, 19.1, 29.9), (100, 100), {}, (10, 10, 20, 30)),
        ((-5, -3, 20, 30), (100, 100), {}, (0, 0, 20, 30)),  # clipped
        ((90, 90, 120, 130), (100, 100), {}, (90, 90, 100, 100)),
        ((10, 10, 20, 30), (100, 100), {"pad": 0.1}, (9, 8, 21, 32)),  # 10% of 10 and of 20
        ((10, 10, 20, 30), (100, 100), {"pad": "25%"}, (7, 5, 23, 35)),  # 2.5 rounds to 3
        ((10, 10, 20, 30), (100, 100), {"pad": "8px"}, (2, 2, 28, 38)),
        ((2, 3, 20, 30), (100, 100), {"pad": "8px"}, (0, 0, 28, 38)),  # pad clipped at the border
        ((10, 10, 20, 30), (100, 100), {"square": True}, (5, 10, 25, 30)),
        ((10, 10, 21, 30), (100, 100), {"square": True}, (6, 10, 26, 30)),  # odd extra: 4 left, 5 right
        ((0, 40, 10, 60), (100, 100), {"square": True}, (0, 40, 20, 60)),  # shifted, stays square
        ((95, 0, 100, 30), (100, 100), {"square": True}, (70, 0, 100, 30)),
        ((10, 10, 20, 30), (100, 25), {"square": True}, (8, 10, 23, 25)),  # clipped box is 10x15
        ((0, 0, 10, 40), (30, 30), {"square": True}, (0, 0, 30, 30)),  # side 40 > image: clipped
        ((0, 2, 4, 3), (4, 3), {"square": True}, (0, 0, 4, 3)),  # all the height there is
        ((10, 10, 20, 30), (100, 100), {"pad": "5px", "square": True}, (0, 5, 30, 35)),
        ((20, 20, 30, 30), (100, 100), {"min_size": 10}, (20, 20, 30, 30)),
    ],
)
def test_crop_box_rounding_padding_square_and_clipping(box, size, options, expected):
    assert crop_box(BBox(*box), *size, **options) == expected


@pytest.mark.parametrize(
    "box, options, reason",
    [
        ((20, 10, 10, 30), {}, BOX_OUT_OF_ORDER),  # corners swapped
        ((10, 30, 20, 10), {}, BOX_OUT_OF_ORDER),
        ((10, 10, 10, 30), {"pad": "8px"}, EMPTY_BOX),  # zero width: padding makes no object
        ((150, 10, 160, 30), {}, OUTSIDE_IMAGE),
        ((-20, -20, 0, 0), {"pad": 0.5}, OUTSIDE_IMAGE),
        ((100, 0, 101, 5), {}, OUTSIDE_IMAGE),  # touches the right edge only
        ((10, 10, 19, 30), {"min_size": 10}, BELOW_MIN_SIZE),
        ((-10, 10, 5, 30), {"min_size": 10}, BELOW_MIN_SIZE),  # 5 visible pixels count
    ],
)
def test_crop_box_skips_empty_outside_and_tiny_boxes(box, options, reason):
    assert crop_box(BBox(*box), 100, 100, **options) == reason


coordinate = st.floats(min_value=-50, max_value=250, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    x=st.tuples(coordinate, coordinate), y=st.tuples(coordinate, coordinate),
    width=st.integers(1, 200), height=st.integers(1, 200),
    pad=st.one_of(st.floats(0, 1), st.integers(0, 30).map(lambda n: f"{n}px")),
    square=st.booleans(),
)
def test_crop_box_is_inside_the_image_and_holds_the_visible_object(x, y, width, height, pad, square):
    box = BBox(x[0], y[0], x[1], y[1])
    result = crop_box(box, width, height, pad=pad, square=square)
    if isinstance(result, str):
        return
    left, top, right, bottom = result
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    assert left <= max(np.floor(box.xmin), 0) and right >= min(np.ceil(box.xmax), width)
    assert top <= max(np.floor(box.ymin), 0) and bottom >= min(np.ceil(box.ymax), height)
    if square:
        side = max(right - left, bottom - top)
        assert (right - left == side or right - left == width) and (
            bottom - top == side or bottom - top == height
        )


def test_empty_and_tiny_boxes_are_reported_and_never_written(scene, tmp_path):
    _, images, _ = scene
    annotations = dataset(
        ImageAnnotation("a.png", objects=[
            obj("cat", (5, 5, 5, 9)), obj("cat", (70, 50, 90, 60)), obj("cat", (1, 1, 3, 3)),
            obj("cat", (10, 10, 30, 30)),
        ]),
    )
    report = crop(annotations, images=images, out=tmp_path / "out", min_size=4)
    assert [(s.object_index, s.reason) for s in report.skipped_objects] == [
        (0, EMPTY_BOX), (1, OUTSIDE_IMAGE), (2, BELOW_MIN_SIZE)
    ]
    assert report.skipped_by_reason() == {EMPTY_BOX: 1, OUTSIDE_IMAGE: 1, BELOW_MIN_SIZE: 1}
    assert [row["path"] for row in manifest(tmp_path / "out")] == ["cat/a_3.jpg"]
    assert all(p.stat().st_size > 0 for p in (tmp_path / "out").rglob("*.jpg"))


def test_swapped_corners_are_reported_as_validate_reports_them_not_as_an_empty_box(scene, tmp_path):
    _, images, _ = scene
    annotations = dataset(
        ImageAnnotation("a.png", 64, 48, 3, [obj("cat", (30, 5, 10, 20)), obj("cat", (5, 5, 5, 9))]),
    )
    report = crop(annotations, images=images, out=tmp_path / "out")
    assert report.skipped_by_reason() == {"corners out of order": 1, "empty box": 1}
    problems = dsxsd.validate(annotations)
    assert [(p.check, p.message.split(" (")[0]) for p in problems] == [
        ("box-order", "corners out of order"), ("zero-area", "empty box")
    ]
    dsxsd.write(annotations, tmp_path / "labels.json")
    result = CliRunner().invoke(
        main, ["crop", str(tmp_path / "labels.json"), "--images", str(images), "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    assert "skipped objects: 1 corners out of order, 1 empty box" in result.output


def test_class_tables_list_the_most_crops_first_then_by_name(scene, tmp_path):
    _, images, _ = scene
    box = (0, 0, 8, 8)
    annotations = dataset(
        ImageAnnotation("a.png", objects=[obj("zebra", box), obj("ant", box), obj("cat", box),
                                          obj("cat", box), obj("cat", box), obj("bee", (9, 9, 1, 1))]),
    )
    report = crop(annotations, images=images, out=tmp_path / "out")
    assert list(report.per_class.items()) == [("cat", 3), ("ant", 1), ("zebra", 1), ("bee", 0)]
    assert [c["class"] for c in report.to_dict()["classes"]] == ["cat", "ant", "zebra", "bee"]
    dsxsd.write(annotations, tmp_path / "labels.json")
    result = run("crop", tmp_path / "labels.json", "--images", images, "--out", tmp_path / "cli")
    assert [line.split()[0] for line in result.output.splitlines()[2:7]] == [
        "cat", "ant", "zebra", "bee", "total"
    ]


def test_padding_and_square_pixels_at_the_image_border(scene, tmp_path):
    annotations, images, source = scene
    corner = dataset(ImageAnnotation("a.png", objects=[obj("cat", (58, 40, 64, 48))]))
    crop(corner, images=images, out=tmp_path / "out", ext="png", pad="4px", square=True)
    (row,) = manifest(tmp_path / "out")
    assert (row["xmin"], row["ymin"], row["xmax"], row["ymax"]) == ("52", "36", "64", "48")
    assert np.array_equal(pixels(tmp_path / "out" / row["path"]), source["a.png"][36:48, 52:64])


@pytest.mark.parametrize(
    "text, pad",
    [("0.1", Pad(0.1)), (0.25, Pad(0.25)), ("10%", Pad(0.1)), ("150%", Pad(1.5)),
     ("8px", Pad(8, "px")), (" 8PX ", Pad(8, "px")), (None, Pad(0))],
)
def test_parse_pad_accepts_fractions_percentages_and_pixels(text, pad):
    assert parse_pad(text) == pad


@pytest.mark.parametrize(
    "text, message",
    [("8", "write 8px for pixels"), ("-0.1", ">= 0"), ("2.5px", "whole number"),
     ("wide", "not a fraction"), ("nan", ">= 0")],
)
def test_parse_pad_refuses_ambiguous_or_bad_values(text, message):
    with pytest.raises(UsageError, match=message):
        parse_pad(text)


# --------------------------------------------------------------------------- filters


def test_difficult_truncated_and_class_filters(scene, tmp_path):
    _, images, _ = scene
    annotations = dataset(
        ImageAnnotation("a.png", objects=[
            obj("cat", (0, 0, 8, 8), difficult=True), obj("cat", (0, 0, 8, 8), truncated=True),
            obj("dog", (0, 0, 8, 8)), obj("cat", (0, 0, 8, 8)), obj("bird", (0, 0, 8, 8)),
        ]),
    )
    report = crop(
        annotations, images=images, out=tmp_path / "out", classes=["cat", "dog"],
        skip_difficult=True, skip_truncated=True,
    )
    assert [row["path"] for row in manifest(tmp_path / "out")] == ["dog/a_2.jpg", "cat/a_3.jpg"]
    assert [(s.object_index, s.reason) for s in report.skipped_objects] == [(0, "difficult"), (1, "truncated")]
    assert report.excluded == 1
    assert dict(report.per_class) == {"cat": 1, "dog": 1, "bird": 0}
    assert report.skipped_per_class() == {"cat": 2, "dog": 0, "bird": 0}


def test_without_the_skip_flags_difficult_and_truncated_objects_are_cut(scene, tmp_path):
    _, images, _ = scene
    annotations = dataset(ImageAnnotation("a.png", objects=[obj("cat", (0, 0, 8, 8), difficult=True, truncated=True)]))
    assert crop(annotations, images=images, out=tmp_path / "out").crops == 1


def test_unknown_or_empty_classes_are_refused_before_writing(scene, tmp_path):
    annotations, images, _ = scene
    with pytest.raises(UsageError, match=r"unknown classes \['cta'\]; the annotations have \['cat', 'dog'\]"):
        crop(annotations, images=images, out=tmp_path / "out", classes=["cat", "cta"])
    with pytest.raises(UsageError, match="name at least one class"):
        crop(annotations, images=images, out=tmp_path / "out", classes=[" "])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, message",
    [({"ext": "gif"}, "choose jpg or png"), ({"quality": 0}, "quality"), ({"workers": -1}, "workers"),
     ({"min_size": 1.5}, "min_size"), ({"on_error": "ignore"}, "on_error")],
)
def test_bad_options_are_value_errors(scene, tmp_path, options, message):
    annotations, images, _ = scene
    with pytest.raises(ValueError, match=message):
        crop(annotations, images=images, out=tmp_path / "out", **options)


# --------------------------------------------------------------------------- image modes


def mode_images(rgb: np.ndarray) -> dict[str, Image.Image]:
    grey = rgb[..., 0]
    palette = Image.fromarray(rgb).quantize(16)
    sixteen = (grey.astype(np.uint16) * 257 + 3).astype(np.uint16)
    rgba = np.dstack([rgb, grey])
    return {
        "L": Image.fromarray(grey),
        "P": palette,
        "RGBA": Image.fromarray(rgba),
        "LA": Image.fromarray(np.dstack([grey, grey])),  # mode LA
        "I;16": Image.fromarray(sixteen),
        "1": Image.fromarray(grey > 127),
        "RGB": Image.fromarray(rgb),
    }


MODES = ["L", "P", "RGBA", "LA", "I;16", "1", "RGB"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_exact_png_crops(tmp_path, mode):
    source = mode_images(noise(12, 10, seed=5))[mode]
    assert source.mode == mode
    save(tmp_path / "images" / "m.png", source)
    stored = pixels(tmp_path / "images" / "m.png")
    annotations = dataset(ImageAnnotation("m.png", objects=[obj("x", (2, 3, 9, 8))]))
    crop(annotations, images=tmp_path / "images", out=tmp_path / "png", ext="png")
    with Image.open(tmp_path / "png" / "x" / "m_0.png") as out:
        assert out.mode == mode
        assert np.array_equal(np.asarray(out), stored[3:8, 2:9])


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_rgb_jpeg_crops_of_the_right_values(tmp_path, mode):
    source = mode_images(smooth(64, 48))[mode]
    save(tmp_path / "images" / "m.png", source)
    stored = pixels(tmp_path / "images" / "m.png")
    if mode == "I;16":
        expected = np.stack([(stored >> 8).astype(np.uint8)] * 3, -1)
    else:
        expected = np.asarray(Image.open(tmp_path / "images" / "m.png").convert("RGB"))
    annotations = dataset(ImageAnnotation("m.png", objects=[obj("x", (8, 6, 40, 30))]))
    crop(annotations, images=tmp_path / "images", out=tmp_path / "jpg", quality=100)
    with Image.open(tmp_path / "jpg" / "x" / "m_0.jpg") as out:
        assert out.mode == "RGB" and out.size == (32, 24)
        got = np.asarray(out)
    assert luma_error(got, expected[6:30, 8:40]) < 2
    assert luma_error(got, expected[6:30, 9:41]) > 2 * luma_error(got, expected[6:30, 8:40])


def test_sixteen_bit_input_is_scaled_not_clipped_for_jpeg(tmp_path):
    values = np.full((8, 8), 40000, np.uint16)  # Pillow's own convert("RGB") gives 255
    save(tmp_path / "images" / "d.png", values)
    annotations = dataset(ImageAnnotation("d.png", objects=[obj("x", (0, 0, 8, 8))]))
    crop(annotations, images=tmp_path / "images", out=tmp_path / "out", quality=100)
    assert np.abs(pixels(tmp_path / "out" / "x" / "d_0.jpg").astype(int) - (40000 >> 8)).max() <= 2


def test_exif_transpose_cuts_boxes_drawn_on_the_upright_photo(tmp_path):
    raw = noise(40, 20, seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "images" / "phone.png", raw, exif=exif.tobytes())
    upright = np.rot90(raw, k=-1)  # 20 wide, 40 high
    annotations = dataset(ImageAnnotation("phone.png", 20, 40, 3, [obj("x", (2, 5, 15, 38))]))

    report = crop(annotations, images=tmp_path / "images", out=tmp_path / "up", ext="png", exif_transpose=True)
    assert np.array_equal(pixels(tmp_path / "up" / "x" / "phone_0.png"), upright[5:38, 2:15])
    assert report.warnings == ()

    report = crop(annotations, images=tmp_path / "images", out=tmp_path / "raw", ext="png")
    assert manifest(tmp_path / "raw")[0]["ymax"] == "20"  # clipped to the stored 40x20 pixels
    (warning,) = report.warnings
    assert "annotation says 20x40" in warning and "try --exif-transpose" in warning


# --------------------------------------------------------------------------- names


HOSTILE_CLASSES = ["tv/monitor", "tv_monitor", "../../x", "..", "CON", "a\x00b", "a_b", "Cat", "cat",
                   "crops.csv", "two  words", "/abs", "C:\\win", ".hidden", "trailing.", "x" * 300,
                   "\u202eevil", "né", "ne\u0301"]
# What crop takes of them (a NUL is refused: test_a_class_name_with_a_nul_is_refused) and
# names CSV must quote: before Python 3.13 csv.writer left "\r" unquoted.
CROPPED_CLASSES = [c for c in HOSTILE_CLASSES if "\x00" not in c] + ["a,b", 'say "hi"', "two\nlines", "cr\rhere"]


def test_class_folders_are_safe_distinct_and_stable():
    folders = class_folders(HOSTILE_CLASSES)
    assert set(folders) == set(HOSTILE_CLASSES)
    names = list(folders.values())
    assert len({n.casefold() for n in names}) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and ":" not in name
        assert not name.startswith(".") and name not in ("", ".", "..")
        assert not any(ord(ch) < 32 or ch == "\u202e" for ch in name)
        assert len(name.encode("utf-8")) <= 140
        assert name.casefold() != "crops.csv"
    assert folders["tv/monitor"] != folders["tv_monitor"]
    assert folders["CON"] == "_CON"
    assert folders["Cat"].startswith("Cat-") and folders["cat"].startswith("cat-")
    assert folders == class_folders(list(reversed(HOSTILE_CLASSES)))  # order does not matter
    assert class_folders(["dog", "cat"]) == {"dog": "dog", "cat": "cat"}  # plain when safe


@pytest.mark.parametrize(
    "name, safe",
    [("tv/monitor", "tv_monitor"), ("../../x", "_._.._x"), ("..", "_"), ("CON", "_CON"),
     ("con.txt", "_con.txt"), ("a\x00b", "a_b"), ("a:b*c?", "a_b_c_"), ("trailing. ", "trailing"),
     ("ne\u0301", "n\u00e9")],
)
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def test_hostile_class_names_stay_inside_the_output_and_map_back(tmp_path):
    images = tmp_path / "images"
    save(images / "a.png", noise(20, 20))
    classes = CROPPED_CLASSES
    annotations = dataset(ImageAnnotation("a.png", objects=[obj(c, (1, 1, 9, 9)) for c in classes]))
    out = tmp_path / "area" / "out"
    report = crop(annotations, images=images, out=out, ext="png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["area", "images"]
    assert sorted(p.name for p in (tmp_path / "area").iterdir()) == ["out"]
    rows = manifest(out)
    assert [row["class"] for row in rows] == classes  # RTL marks and line ends survive the CSV
    for row in rows:
        folder, name = row["path"].split("/")
        assert folder == report.folders[row["class"]]
        assert (out / folder / name).is_file()
    assert len({row["path"].split("/")[0].casefold() for row in rows}) == len(classes)


def test_the_manifest_keeps_the_crops_schema_and_reads_back_with_hostile_classes(tmp_path):
    import jsonschema

    from dsxsd._schemas import load_schema
    from dsxsd.manifests import read_crops

    images = tmp_path / "images"
    save(images / "a.png", noise(20, 20))
    annotations = dataset(ImageAnnotation("a.png", objects=[obj(c, (1, 1, 9, 9)) for c in CROPPED_CLASSES]))
    crop(annotations, images=images, out=tmp_path / "out")
    validator = jsonschema.Draft202012Validator(load_schema("crops"))
    for row in manifest(tmp_path / "out"):
        typed = {**row, **{k: int(row[k]) for k in ("object_index", "xmin", "ymin", "xmax", "ymax")}}
        validator.validate(typed)
    frame = read_crops(tmp_path / "out" / "crops.csv", need_source=True)
    assert frame["class"].tolist() == CROPPED_CLASSES


def test_a_class_name_with_a_nul_is_refused(tmp_path):
    # pandas before 3.1 (all Python 3.10 has) cuts a CSV cell at a NUL: "a\x00b" would
    # come back as the class "a".
    images = tmp_path / "images"
    save(images / "a.png", noise(20, 20))
    annotations = dataset(ImageAnnotation("a.png", objects=[obj("a", (1, 1, 9, 9)), obj("a\x00b", (2, 2, 9, 9))]))
    with pytest.raises(InvalidValueError) as caught:
        crop(annotations, images=images, out=tmp_path / "out")
    assert caught.value.reason.startswith("class 'a\\x00b' contains a NUL character")
    assert not (tmp_path / "out").exists()
    crop(annotations, images=images, out=tmp_path / "out", classes=["a"])  # left out: fine
    assert [row["class"] for row in manifest(tmp_path / "out")] == ["a"]

    dsxsd.write(annotations, tmp_path / "labels.json")
    result = CliRunner().invoke(main, ["crop", str(tmp_path / "labels.json"), "--images", str(images),
                                       "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {tmp_path / 'labels.json'}: class 'a\\x00b' contains a NUL character, which "
        "crops.csv cannot hold (CSV readers cut or refuse it); rename the class\n"
    )
    assert not (tmp_path / "cli").exists()


def test_images_with_the_same_stem_never_overwrite_each_other(tmp_path):
    images = tmp_path / "images"
    save(images / "x" / "img.png", noise(10, 10, seed=1))
    save(images / "y" / "img.png", noise(10, 10, seed=2))
    save(images / "img.jpg", noise(10, 10, seed=3))
    save(images / "IMG.png", noise(10, 10, seed=4))
    annotations = dataset(*(
        ImageAnnotation(name, objects=[obj("c", (0, 0, 5, 5))])
        for name in ("x/img.png", "y/img.png", "img.jpg", "IMG.png")
    ))
    crop(annotations, images=images, out=tmp_path / "one", ext="png")
    crop(annotations, images=images, out=tmp_path / "two", ext="png")
    paths = [row["path"] for row in manifest(tmp_path / "one")]
    assert len({p.casefold() for p in paths}) == 4
    assert all(p.startswith("c/img-") or p.startswith("c/IMG-") for p in paths)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")  # deterministic
    for name, row in zip(("x/img.png", "y/img.png", "img.jpg", "IMG.png"), manifest(tmp_path / "one")):
        assert row["source"].endswith(name)
        assert np.array_equal(pixels(tmp_path / "one" / row["path"]), pixels(images / name)[0:5, 0:5])


def test_crop_stems_of_hostile_and_repeated_filenames():
    images = [ImageAnnotation(n) for n in ("CON.jpg", "..\\..\\evil.png", "a\nb.png", "dup.png", "dup.png", "ok.png")]
    stems = crop_stems(images)
    assert stems[0] == "_CON" and stems[1] == "evil" and stems[2] == "a_b" and stems[5] == "ok"
    assert stems[3] != stems[4] and stems[3].startswith("dup-") and stems[4].startswith("dup-")


def test_an_image_annotated_twice_is_decoded_once_and_cut_for_both(tmp_path, monkeypatch):
    images = tmp_path / "images"
    save(images / "a.png", noise(20, 20))
    annotations = dataset(
        ImageAnnotation("a.png", objects=[obj("c", (0, 0, 5, 5)), obj("c", (1, 1, 6, 6)), obj("d", (2, 2, 9, 9))]),
        ImageAnnotation("a.png", objects=[obj("c", (3, 3, 8, 8))]),
    )
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    report = crop(annotations, images=images, out=tmp_path / "out")
    assert opened == [str(images / "a.png")]
    assert report.crops == 4 and report.images == 1
    assert len({row["path"] for row in manifest(tmp_path / "out")}) == 4


def test_hostile_image_filenames_are_refused(tmp_path):
    images = tmp_path / "images"
    save(images / "a.png", noise(8, 8))
    save(tmp_path / "secret.png", noise(8, 8))
    for name in ("../secret.png", str(tmp_path / "secret.png")):
        annotations = dataset(ImageAnnotation(name, objects=[obj("c", (0, 0, 4, 4))]))
        with pytest.raises(HostileInputError, match="outside the images folder"):
            crop(annotations, images=images, out=tmp_path / "out")
        assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- errors & atomicity


def test_a_missing_image_names_the_annotation_file_and_the_names_tried(scene, tmp_path):
    annotations, images, _ = scene
    dsxsd.write(dataset(*annotations.images, ImageAnnotation("gone.jpg", objects=[obj("cat", (0, 0, 4, 4))])),
                tmp_path / "Annotations", "voc")
    with pytest.raises(MissingImageError) as caught:
        crop(tmp_path / "Annotations", images=images, out=tmp_path / "out")
    assert caught.value.file == str(tmp_path / "Annotations" / "gone.xml")
    assert "image 'gone.jpg' not found" in str(caught.value)
    assert "gone.{jpg,jpeg,png" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Annotations", "images"]


def test_images_are_found_by_voc_file_stem_and_by_paths_from_another_machine(tmp_path):
    images = tmp_path / "images"
    save(images / "0042.png", noise(16, 16, seed=4))
    save(images / "photo.png", noise(16, 16, seed=5))
    scanned = ImageAnnotation("scan.jpg", objects=[obj("c", (0, 0, 8, 8))])  # renamed since
    dsxsd.write(dataset(scanned), tmp_path / "Annotations", "voc")
    os.rename(tmp_path / "Annotations" / "scan.xml", tmp_path / "Annotations" / "0042.xml")
    report = crop(tmp_path / "Annotations", images=images, out=tmp_path / "voc", ext="png")
    assert manifest(report.out)[0]["source"].endswith("/images/0042.png")

    (tmp_path / "train.txt").write_text("C:\\Users\\me\\data\\photo.png 1,2,9,10,0\n")
    (tmp_path / "classes.txt").write_text("c\n")
    report = crop(tmp_path / "train.txt", images=images, out=tmp_path / "lines", ext="png")
    (row,) = manifest(report.out)
    assert row["path"] == "c/photo_0.png" and row["source"].endswith("/images/photo.png")
    assert np.array_equal(pixels(report.out / row["path"]), noise(16, 16, seed=5)[2:10, 1:9])


def test_on_error_skip_writes_the_rest_and_a_report_beside_the_output(scene, tmp_path):
    annotations, images, _ = scene
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    bad = dataset(
        *annotations.images,
        ImageAnnotation("gone.jpg", objects=[obj("cat", (0, 0, 4, 4))]),
        ImageAnnotation("broken.png", objects=[obj("dog", (0, 0, 4, 4)), obj("dog", (1, 1, 4, 4))]),
    )
    with pytest.raises(ImageDecodeError, match="broken.png"):
        crop(dataset(*bad.images[:1], bad.images[3]), images=images, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()

    report = crop(bad, images=images, out=tmp_path / "out", on_error="skip")
    assert report.crops == 3
    assert report.report == tmp_path / "out.skipped.csv"
    with open(report.report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == ["gone.jpg", str(images / "broken.png")]
    assert "not found" in rows[0]["reason"] and "cannot" in rows[1]["reason"]
    assert report.skipped_by_reason() == {"image skipped": 3}
    assert report.skipped_per_class() == {"cat": 1, "dog": 2}

    clean = crop(annotations, images=images, out=tmp_path / "out", on_error="skip", overwrite=True)
    assert clean.report is None and not (tmp_path / "out.skipped.csv").exists()  # no stale report


def test_a_bomb_is_refused_naming_the_file_serial_and_parallel(scene, tmp_path, monkeypatch):
    annotations, images, _ = scene
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # a.png has 3072 pixels > 2 * 500
    for workers in (1, 2):
        with pytest.raises(HostileInputError, match=r"a\.png: refused as a possible decompression bomb"):
            crop(annotations, images=images, out=tmp_path / "out", workers=workers)
        assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite_and_a_failed_run_keeps_it(scene, tmp_path):
    annotations, images, _ = scene
    out = tmp_path / "out"
    crop(annotations, images=images, out=out)
    before = tree(out)
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        crop(annotations, images=images, out=out)
    broken = dataset(*annotations.images, ImageAnnotation("gone.png", objects=[obj("cat", (0, 0, 2, 2))]))
    (images / "gone.png").write_bytes(b"garbage")
    with pytest.raises(ImageDecodeError):
        crop(broken, images=images, out=out, overwrite=True, ext="png")
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out"]  # no temporaries left
    report = crop(annotations, images=images, out=out, overwrite=True, ext="png")
    assert sorted(tree(out)) == ["cat/a_0.png", "cat/b_0.png", "crops.csv", "dog/a_1.png"]
    assert report.crops == 3


def test_an_output_folder_holding_the_inputs_is_refused(scene, tmp_path):
    annotations, images, _ = scene
    for out in (images, tmp_path, images / ".."):
        with pytest.raises(UsageError, match="holds the images folder"):
            crop(annotations, images=images, out=out, overwrite=True)
    assert (images / "a.png").is_file()


def test_serial_and_parallel_runs_write_the_same_bytes(tmp_path):
    images = tmp_path / "images"
    entries = []
    for n in range(7):
        save(images / f"{n}.png", noise(30 + n, 20 + n, seed=n))
        entries.append(ImageAnnotation(f"{n}.png", objects=[
            obj("a" if k % 2 else "b", (k, k, 10 + k * 2, 12 + k)) for k in range(n % 3 + 1)
        ]))
    entries.append(ImageAnnotation("missing.png", objects=[obj("a", (0, 0, 3, 3))]))
    annotations = dataset(*entries)
    options = {"images": images, "pad": 0.2, "square": True, "on_error": "skip"}
    serial = crop(annotations, out=tmp_path / "serial", workers=1, **options)
    parallel = crop(annotations, out=tmp_path / "parallel", workers=2, **options)
    assert tree(tmp_path / "serial") == tree(tmp_path / "parallel")
    assert serial.crops == parallel.crops == 13
    assert serial.skipped_objects == parallel.skipped_objects
    assert serial.to_dict()["classes"] == parallel.to_dict()["classes"]


def test_progress_is_reported_per_source_image(scene, tmp_path):
    annotations, images, _ = scene
    calls = []
    crop(annotations, images=images, out=tmp_path / "out", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 2), (1, 2), (2, 2)]


def test_reads_annotation_files_in_any_registered_format(scene, tmp_path):
    annotations, images, _ = scene
    for name in ("labels.json", "labels.csv"):
        dsxsd.write(annotations, tmp_path / name)
        report = crop(tmp_path / name, images=images, out=tmp_path / f"out-{name}")
        assert [row["path"] for row in manifest(report.out)] == ["cat/a_0.jpg", "dog/a_1.jpg", "cat/b_0.jpg"]
    dsxsd.write(annotations, tmp_path / "train.txt")
    report = crop(tmp_path / "train.txt", images=images, out=tmp_path / "out-lines", format="lines")
    assert report.crops == 3


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_scene(scene, tmp_path):
    annotations, images, _ = scene
    dsxsd.write(annotations, tmp_path / "labels.json")
    return tmp_path / "labels.json", images


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_help_explains_the_options():
    result = run("crop", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for expected in ("--images DIR", "--pad", "8px", "--square", "--min-size", "--skip-difficult",
                     "--skip-truncated", "--classes", "--ext [jpg|png]", "--quality", "--workers",
                     "--on-error", "--overwrite", "--json", "Phone photos store rotation in EXIF"):
        assert expected in text
    assert "crop" in run("--help").output


def test_cli_writes_crops_and_prints_a_table(cli_scene, tmp_path):
    labels, images = cli_scene
    out = tmp_path / "crops"
    result = run("crop", labels, "--images", images, "--out", out, "--pad", "10%", "--ext", "png")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["class", "folder", "crops", "skipped"]
    assert lines[2].split() == ["cat", "cat", "2", "0"]
    assert lines[3].split() == ["dog", "dog", "1", "0"]
    assert lines[4].split() == ["total", "3", "0"]
    assert f"3 crops from 2 images written to {out}" in result.output
    assert [row["path"] for row in manifest(out)] == ["cat/a_0.png", "dog/a_1.png", "cat/b_0.png"]
    assert manifest(out)[0]["xmin"] == "1"  # 3 - round(0.1 * 17)


def test_cli_json_summary(cli_scene, tmp_path):
    labels, images = cli_scene
    result = run("crop", labels, "--images", images, "--out", tmp_path / "o", "--json",
                 "--classes", "dog", "--workers", "2", "--min-size", "13")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["crops"] == 0 and summary["images"] == 1 and summary["excluded"] == 2
    assert summary["classes"] == [
        {"class": "cat", "folder": "cat", "crops": 0, "skipped": 0},
        {"class": "dog", "folder": "dog", "crops": 0, "skipped": 1},
    ]
    assert summary["skipped_by_reason"] == {"below min size": 1}
    assert summary["manifest"] == str(tmp_path / "o" / "crops.csv")
    assert summary["report"] is None and summary["warnings"] == []
    assert (tmp_path / "o" / "crops.csv").read_text() == HEADER + "\n"


def test_cli_exit_codes(cli_scene, tmp_path):
    labels, images = cli_scene
    out = tmp_path / "o"
    assert run("crop", labels, "--images", images, "--out", out).exit_code == 0

    exists = run("crop", labels, "--images", images, "--out", out)
    assert exists.exit_code == 2 and "already exists; pass --overwrite" in exists.output
    assert run("crop", labels, "--images", images, "--out", out, "--overwrite").exit_code == 0

    for bad in (["--pad", "8"], ["--classes", "cow"], ["--ext", "gif"], ["--workers", "-1"]):
        result = run("crop", labels, "--images", images, "--out", tmp_path / "x", *bad)
        assert result.exit_code == 2, (bad, result.output)
    assert "write 8px for pixels" in run("crop", labels, "--images", images, "--pad", "8").output
    assert "unknown classes ['cow']" in run("crop", labels, "--images", images, "--classes", "cow").output
    assert run("crop", labels, "--out", tmp_path / "x").exit_code == 2  # --images is required

    os.remove(images / "b.png")
    missing = run("crop", labels, "--images", images, "--out", tmp_path / "m")
    assert missing.exit_code == 1
    assert missing.output.startswith(f"error: {labels}: image 'b.png' not found")
    assert "Traceback" not in missing.output and not (tmp_path / "m").exists()

    skipped = run("crop", labels, "--images", images, "--out", tmp_path / "m", "--on-error", "skip")
    assert skipped.exit_code == 0
    assert f"skipped 1 files; reasons in {tmp_path / 'm.skipped.csv'}" in skipped.output
    assert (tmp_path / "m.skipped.csv").is_file()


def test_cli_shows_a_progress_bar_and_few_warnings_on_a_terminal(tmp_path, monkeypatch):
    images = tmp_path / "images"
    entries = []
    for n in range(8):  # every image stored landscape, annotated as portrait
        save(images / f"{n}.png", noise(12, 8, seed=n))
        entries.append(ImageAnnotation(f"{n}.png", 8, 12, 3, [obj("c", (0, 0, 4, 4))]))
    dsxsd.write(dataset(*entries), tmp_path / "labels.json")
    monkeypatch.setattr("dsxsd.cli._common.stderr_is_terminal", lambda: True)
    result = CliRunner().invoke(main, ["crop", str(tmp_path / "labels.json"), "--images", str(images),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("cropping")  # click draws the bar itself only on a real tty
    assert result.stderr.count("try --exif-transpose") == 5
    assert "... and 3 more (see --json)" in result.stderr
    assert "8 crops from 8 images" in result.stdout


def test_a_crop_file_is_never_overwritten(tmp_path):
    """Crop names are made distinct up front; were a naming bug to give two crops one
    name, the second write must fail rather than silently replace the first."""
    from dsxsd.crops import _write_new

    target = tmp_path / "a.jpg"
    _write_new(target, b"first")
    with pytest.raises(FileExistsError):
        _write_new(target, b"second")
    assert target.read_bytes() == b"first"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
