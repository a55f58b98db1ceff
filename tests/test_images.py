"""Finding, opening and converting images (dsxsd._images)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from dsxsd import HostileInputError, MissingImageError
from dsxsd._images import ImageFinder, for_output, open_image, to_rgb
from dsxsd.errors import ImageDecodeError


def touch_image(path, size=(8, 6), color=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="PNG")
    return path


# --------------------------------------------------------------------------- finding


def test_finds_the_filename_as_given_also_in_a_sub_folder(tmp_path):
    touch_image(tmp_path / "a.png")
    touch_image(tmp_path / "sub" / "b.png")
    finder = ImageFinder(tmp_path)
    assert finder.find("a.png") == tmp_path / "a.png"
    assert finder.find("sub/b.png") == tmp_path / "sub" / "b.png"
    assert finder.find("sub\\b.png") == tmp_path / "sub" / "b.png"  # written on Windows


def test_finds_by_stem_with_any_usual_extension_in_any_case(tmp_path):
    touch_image(tmp_path / "000001.JPG")
    touch_image(tmp_path / "000002.png")
    finder = ImageFinder(tmp_path)
    assert finder.find("000001.jpg") == tmp_path / "000001.JPG"
    assert finder.find("000001") == tmp_path / "000001.JPG"  # VOC variants without extension
    assert finder.find("000002.jpg") == tmp_path / "000002.png"  # re-encoded dataset


def test_the_stem_itself_is_matched_exactly_so_no_other_image_is_taken(tmp_path):
    touch_image(tmp_path / "Img.png")
    with pytest.raises(MissingImageError):
        ImageFinder(tmp_path).find("img.png")


def test_the_exact_name_wins_over_other_extensions_and_jpg_over_png(tmp_path):
    touch_image(tmp_path / "x.png")
    touch_image(tmp_path / "x.jpg")
    touch_image(tmp_path / "x.tiff")
    finder = ImageFinder(tmp_path)
    assert finder.find("x.tiff") == tmp_path / "x.tiff"
    assert finder.find("x.gif") == tmp_path / "x.jpg"


def test_a_filename_with_folders_is_also_looked_for_directly_under_images(tmp_path):
    touch_image(tmp_path / "0001.jpg")
    assert ImageFinder(tmp_path).find("JPEGImages/0001.jpg") == tmp_path / "0001.jpg"


def test_a_path_from_another_machine_is_only_a_hint_for_its_base_name(tmp_path):
    touch_image(tmp_path / "photo.jpg")
    finder = ImageFinder(tmp_path)
    windows = r"C:\Users\me\VOC\JPEGImages\photo.jpg"
    mac = "/Users/me/Desktop/photo.jpg"
    assert finder.find("renamed.jpg", path=windows) == tmp_path / "photo.jpg"
    assert finder.find("renamed.jpg", path=mac) == tmp_path / "photo.jpg"
    # The hint never reads outside the images folder, even when it exists elsewhere.
    outside = tmp_path.parent / f"{tmp_path.name}-other" / "elsewhere.jpg"
    touch_image(outside)
    with pytest.raises(MissingImageError):
        finder.find("renamed.jpg", path=str(outside))


def test_the_annotation_file_stem_is_tried_only_for_per_image_files(tmp_path):
    touch_image(tmp_path / "0042.png")
    finder = ImageFinder(tmp_path)
    xml = tmp_path / "ann" / "0042.xml"
    assert finder.find("scan.jpg", annotation_file=xml, per_image_file=True) == tmp_path / "0042.png"
    with pytest.raises(MissingImageError):
        finder.find("scan.jpg", annotation_file=xml, per_image_file=False)


def test_a_missing_image_names_the_annotation_file_and_every_name_tried(tmp_path):
    touch_image(tmp_path / "other.png")
    with pytest.raises(MissingImageError) as caught:
        ImageFinder(tmp_path).find(
            "sub/cat.jpg", path=r"D:\data\kitten.jpg",
            annotation_file="Annotations/0007.xml", per_image_file=True,
        )
    message = str(caught.value)
    assert message.startswith("Annotations/0007.xml: image 'sub/cat.jpg' not found under")
    for tried in ("sub/cat.jpg", "sub/cat.{jpg,jpeg,png,bmp,gif,tif,tiff,webp}", "cat.jpg",
                  "kitten.jpg", "kitten.{jpg", "0007.{jpg"):
        assert tried in message
    assert caught.value.file == "Annotations/0007.xml"


@pytest.mark.parametrize(
    "filename",
    ["../secret.png", "sub/../../secret.png", "..", "..\\secret.png", "C:\\secret.png",
     "//server/share/secret.png", "\\\\server\\share\\secret.png"],
)
def test_a_filename_leaving_the_images_folder_is_refused(tmp_path, filename):
    images = tmp_path / "images"
    touch_image(images / "ok.png")
    touch_image(tmp_path / "secret.png")
    with pytest.raises(HostileInputError, match="outside the images folder") as caught:
        ImageFinder(images).find(filename, annotation_file="labels.csv")
    assert caught.value.file == "labels.csv"


def test_an_absolute_filename_is_refused_outside_and_accepted_inside(tmp_path):
    images = tmp_path / "images"
    touch_image(images / "in.png")
    touch_image(tmp_path / "out.png")
    finder = ImageFinder(images)
    assert finder.find(str(images / "in.png")) == images / "in.png"
    with pytest.raises(HostileInputError, match="absolute path outside"):
        finder.find(str(tmp_path / "out.png"))
    with pytest.raises(HostileInputError):
        finder.find("/etc/passwd")


def test_dot_dot_that_stays_inside_is_fine_and_nul_is_refused(tmp_path):
    touch_image(tmp_path / "a.png")
    finder = ImageFinder(tmp_path)
    assert finder.find("sub/../a.png") == tmp_path / "a.png"
    with pytest.raises(HostileInputError, match="NUL"):
        finder.find("a\x00.png")


def test_a_folder_named_like_an_image_is_not_an_image(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(MissingImageError):
        ImageFinder(tmp_path).find("x.png")


def test_each_folder_is_listed_once_however_many_images_are_found(tmp_path, monkeypatch):
    for n in range(30):
        touch_image(tmp_path / f"{n}.png", size=(1, 1))
    calls = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: calls.append(p) or real(p))
    finder = ImageFinder(tmp_path)
    found = [finder.find(f"{n}.jpg") for n in range(30)]
    assert found == [tmp_path / f"{n}.png" for n in range(30)]
    assert len(calls) == 1


# --------------------------------------------------------------------------- opening


def test_open_image_decodes_fully_and_closes_the_file(tmp_path):
    path = touch_image(tmp_path / "a.png", size=(5, 4), color=(1, 2, 3))
    image = open_image(path)
    assert image.size == (5, 4)
    assert image.getpixel((4, 3)) == (1, 2, 3)
    os.remove(path)  # would fail on Windows if still open; the pixels stay usable
    assert np.asarray(image).shape == (4, 5, 3)


def test_a_decompression_bomb_is_refused_naming_the_file(tmp_path, monkeypatch):
    path = touch_image(tmp_path / "bomb.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 > 2 * 100: Pillow's error
    with pytest.raises(HostileInputError, match="decompression bomb") as caught:
        open_image(path)
    assert caught.value.file == str(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"not an image at all", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"],
    ids=["empty", "text", "postscript"],
)
def test_a_file_that_is_no_allowed_image_is_a_decode_error(tmp_path, content):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match="not an image Pillow can read") as caught:
        open_image(path)
    assert caught.value.file == str(path)


def test_a_truncated_image_is_a_decode_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cannot decode image") as caught:
        open_image(path)
    assert caught.value.file == str(path)


def test_exif_orientation_is_applied_only_when_asked(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 255, (20, 40, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write portrait photos
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    raw = open_image(path)
    upright = open_image(path, exif_transpose=True)
    assert raw.size == (40, 20)
    assert upright.size == (20, 40)
    assert np.array_equal(np.asarray(upright), np.rot90(pixels, k=-1))


# --------------------------------------------------------------------------- modes


def test_to_rgb_converts_every_mode_with_the_expected_values():
    grey = np.array([[0, 128, 255]], np.uint8)
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(grey))), np.stack([grey] * 3, -1))

    sixteen = np.array([[0, 256, 65535, 1000]], np.uint16)
    expected = (sixteen >> 8).astype(np.uint8)
    for image in (Image.fromarray(sixteen), Image.fromarray(sixteen.astype(np.int32))):
        assert image.mode in ("I;16", "I")
        assert np.array_equal(np.asarray(to_rgb(image))[..., 0], expected)  # scaled, not clipped

    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 0, 0], [0, 0, 255]]]

    rgba = Image.new("RGBA", (1, 1), (9, 8, 7, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (9, 8, 7)  # alpha dropped, colour kept

    floats = Image.fromarray(np.array([[-5.0, 12.4, 300.0]], np.float32))
    assert np.asarray(to_rgb(floats))[0, :, 0].tolist() == [0, 12, 255]

    for mode in ("1", "LA", "La", "PA", "CMYK", "YCbCr", "RGBX", "I;16B"):
        assert to_rgb(Image.new(mode, (2, 2))).mode == "RGB"


@pytest.mark.parametrize(
    "mode, png_mode",
    [("1", "1"), ("L", "L"), ("LA", "LA"), ("P", "P"), ("RGB", "RGB"), ("RGBA", "RGBA"),
     ("I;16", "I;16"), ("I", "I;16"), ("I;16B", "I;16"), ("PA", "RGBA"), ("La", "RGBA"),
     ("CMYK", "RGB"), ("F", "RGB"), ("YCbCr", "RGB")],
)
def test_for_output_gives_modes_each_format_can_store(mode, png_mode):
    image = Image.new(mode, (3, 2))
    assert for_output(image, "PNG").mode == png_mode
    assert for_output(image, "JPEG").mode == "RGB"
    for fmt in ("PNG", "JPEG"):
        for_output(image, fmt).save(io.BytesIO(), fmt)  # the encoder accepts it


def test_sixteen_bit_values_survive_png_output_exactly():
    values = np.array([[0, 1, 65535, 40000]], np.int32)
    out = for_output(Image.fromarray(values), "PNG")
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    assert np.asarray(Image.open(buffer)).tolist() == values.tolist()
