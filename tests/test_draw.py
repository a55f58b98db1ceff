"""dsxsd draw: boxes land where the annotation says, in the class's palette colour."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

import dsxsd
import dsxsd.drawing
from dsxsd.cli import main
from dsxsd.drawing import PALETTE, render
from dsxsd.annotations import BBox, ObjectAnnotation

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
CAPTION = 16  # the band under each image of a draw-pairs sheet of 128 px tiles


@pytest.fixture
def dataset(tmp_path):
    Image.new("RGB", (120, 100), (0, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (60, 60), 0).save(tmp_path / "b.png")
    (tmp_path / "ann.csv").write_text(
        HEADER + "a.png,120,100,cat,20,30,80,90\n" + "a.png,120,100,dog,5,40,15,60\n"
        + "b.png,60,60,dog,10,20,50,50\n" + "missing.png,10,10,cat,1,1,5,5\n",
        encoding="utf-8",
    )
    return tmp_path


def test_render_colours_by_class_index():
    image = Image.new("RGB", (100, 100))
    objects = [ObjectAnnotation("cat", BBox(10, 40, 90, 90)),
               ObjectAnnotation("dog", BBox(60, 60, 70, 70))]
    out = render(image, objects, {"cat": 0, "dog": 1})
    assert out.getpixel((10, 80)) == PALETTE[0]  # left edge of the cat box
    assert out.getpixel((65, 60)) == PALETTE[1]  # top edge of the dog box
    assert out.getpixel((40, 65)) == (0, 0, 0)  # inside stays untouched
    assert image.getpixel((10, 80)) == (0, 0, 0)  # the input is not modified


def test_unrenderable_name_still_draws_box():
    image = Image.new("RGB", (100, 100))
    out = render(image, [ObjectAnnotation("\U0001f431\u732b", BBox(10, 40, 90, 90))], {})
    assert out.getpixel((10, 80)) == PALETTE[0]


def test_draw_previews_and_grid(dataset):
    report = dsxsd.draw(dataset / "ann.csv", dataset, dataset / "prev", grid=dataset / "g.png")
    assert sorted(p.rsplit("/", 1)[-1] for p in report.written) == ["a.png", "b.png"]
    assert [s.file for s in report.skipped] == ["missing.png"]
    with Image.open(dataset / "prev" / "a.png") as preview:
        assert preview.size == (120, 100)
        assert preview.convert("RGB").getpixel((20, 60)) == PALETTE[0]
    with Image.open(dataset / "prev" / "b.png") as preview:
        assert preview.convert("RGB").getpixel((10, 35)) == PALETTE[1]
    with Image.open(dataset / "g.png") as sheet:
        assert sheet.size == (4 * 256, 256)


def test_cli_draw_refuses_existing_output(dataset):
    (dataset / "prev").mkdir()
    result = CliRunner().invoke(main, ["draw", str(dataset / "ann.csv"), "--images",
                                       str(dataset), "--out", str(dataset / "prev")])
    assert result.exit_code == 2 and "already exists" in result.output
    result = CliRunner().invoke(main, ["draw", str(dataset / "ann.csv"), "--images",
                                       str(dataset), "--out", str(dataset / "prev"),
                                       "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "2 preview(s)" in result.output
    assert sorted(p.name for p in (dataset / "prev").iterdir()) == ["a.png", "b.png"]


def test_cli_draw_needs_an_output(dataset):
    result = CliRunner().invoke(main, ["draw", str(dataset / "ann.csv"), "--images",
                                       str(dataset)])
    assert result.exit_code == 2 and "--out" in result.output


def test_help():
    result = CliRunner().invoke(main, ["draw", "--help"])
    assert result.exit_code == 0 and "--grid" in result.output


@pytest.fixture
def pairs(tmp_path):
    colours = {"a1": (255, 0, 0), "a2": (250, 0, 0), "b1": (0, 0, 255)}
    for name, colour in colours.items():
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{name}.png")
    (tmp_path / "pairs.csv").write_text(
        "left,right,label,left_class,right_class,split\n"
        "a1.png,a2.png,1,a,a,train\n"
        "a1.png,b1.png,0,a,b,train\n",
        encoding="utf-8",
    )
    return tmp_path


def test_draw_pairs_sheet(pairs):
    result = CliRunner().invoke(main, ["draw-pairs", str(pairs / "pairs.csv"), "--out",
                                       str(pairs / "sheet.png")])
    assert result.exit_code == 0, result.output
    assert "1 same and 1 different pair(s)" in result.output
    with Image.open(pairs / "sheet.png") as sheet:
        sheet = sheet.convert("RGB")
        assert sheet.size == (2 * (2 * 128 + 8), 128 + 8 + CAPTION)
        assert sheet.getpixel((1, 1)) == (44, 160, 44)  # same-class frame
        assert sheet.getpixel((264 + 1, 1)) == (214, 39, 40)  # different-class frame
        assert sheet.getpixel((264 + 4 + 128 + 64, 64)) == (0, 0, 255)  # b1 on the right


def caption(sheet: Image.Image, column: int, side: int, row: int = 0) -> bytes:
    """The pixels of the caption band under one image of a draw-pairs sheet (tile 128)."""
    left, top = column * (2 * 128 + 8) + 4 + side * 128, row * (128 + CAPTION + 8) + 4 + 128
    return sheet.crop((left + 1, top, left + 127, top + CAPTION)).tobytes()


def test_draw_pairs_captions_each_image_with_its_class(pairs):
    assert dsxsd.drawing.draw_pairs(pairs / "pairs.csv", pairs / "sheet.png") == (1, 1)
    with Image.open(pairs / "sheet.png") as sheet:
        sheet = sheet.convert("RGB")
        same_left, same_right = caption(sheet, 0, 0), caption(sheet, 0, 1)
        different_left, different_right = caption(sheet, 1, 0), caption(sheet, 1, 1)
        band = sheet.crop((5, 132, 131, 132 + CAPTION))
    assert band.convert("L").getextrema()[0] < 100  # dark ink on the white band
    assert same_left == same_right == different_left  # "a" under each
    assert different_right != different_left  # "b"


def ink_height(picture: Image.Image) -> int:
    """Height of the white text inside the grey picture in ``picture`` (a grid cell, or a
    rendered image): the label of its one object."""
    grey = picture.convert("L")
    inside = grey.crop(grey.point(lambda v: 255 if v < 255 else 0).getbbox())  # the picture
    return height(inside.point(lambda v: 255 if v >= 250 else 0).getbbox())


def height(box) -> int:
    return box[3] - box[1]


def grey_image_with_one_label(tmp_path, name: str, size: tuple[int, int]) -> str:
    w, h = size
    Image.new("RGB", size, (128, 128, 128)).save(tmp_path / name)
    return f"{name},{w},{h},Hg,{w // 10},{h * 4 // 10},{w * 6 // 10},{h * 9 // 10}\n"


def test_grid_labels_are_sized_for_the_cell_whatever_the_image_size(tmp_path):
    rows = [grey_image_with_one_label(tmp_path, "big.png", (1600, 1200)),
            grey_image_with_one_label(tmp_path, "small.png", (200, 150))]
    (tmp_path / "ann.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    dsxsd.draw(tmp_path / "ann.csv", tmp_path, grid=tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as sheet:
        big, small = (ink_height(sheet.crop((x, 0, x + 256, 256))) for x in (0, 256))
    # Shrinking the 1600 px image's own 14 px label into the cell left it 2 px tall.
    assert big >= 9 and abs(big - small) <= 1


def test_labels_scale_with_the_cell_size():
    image = Image.new("RGB", (1600, 1200), (128, 128, 128))
    objects = [ObjectAnnotation("Hg", BBox(160, 480, 960, 1080))]
    small, large = (ink_height(render(image, objects, {"Hg": 0}, fit=cell)) for cell in (128, 512))
    assert large >= 2.5 * small


def test_draw_pairs_missing_image_is_error(pairs):
    (pairs / "b1.png").unlink()
    result = CliRunner().invoke(main, ["draw-pairs", str(pairs / "pairs.csv"), "--out",
                                       str(pairs / "sheet.png")])
    assert result.exit_code == 1 and "b1.png" in result.output
    assert not (pairs / "sheet.png").exists()


def test_draw_pairs_help():
    result = CliRunner().invoke(main, ["draw-pairs", "--help"])
    assert result.exit_code == 0 and "--count" in result.output
