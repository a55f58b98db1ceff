"""Model input without TensorFlow (dsxsd._images.model_input) against training's
TensorFlow decode_and_resize, and its errors."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from dsxsd.errors import HostileInputError, ImageDecodeError, MissingImageError
from dsxsd._images import model_input, model_inputs

SIZES = (64, 105)
MODES = ("stretch", "letterbox")


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB with what photos have: smooth gradients, noise, hard edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([255 * x, 255 * y, 128 + 100 * np.sin(9 * x + 5 * y)], axis=-1)
    image += rng.normal(0, 20, image.shape)
    image[height // 3 : height // 2, width // 4 : width // 2] = (250, 30, 40)
    image[:, (2 * width) // 3 :: 7] = 0  # thin dark lines
    return np.clip(image, 0, 255).astype(np.uint8)


def write_png16(path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow writes 16 bits only for grey)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _rgba(height, width):
    alpha = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, axis=0)
    return Image.fromarray(np.concatenate([photo(height, width), alpha], axis=2), "RGBA")


def _paletted(height, width, seed=0):
    return Image.fromarray(photo(height, width, seed)).quantize(64)


def _transparent_png(path):
    image = _paletted(90, 120)
    image.save(path, transparency=5)


def _animated_gif(path):
    frames = [_paletted(100, 140, seed) for seed in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _transparent_gif(path):
    _paletted(100, 140).save(path, transparency=5)


def _cmyk_jpeg(path):
    rgb = Image.fromarray(photo(160, 120))
    rgb.convert("CMYK").save(path, quality=92)


def _mpo(path, first, second):
    Image.fromarray(first).save(path, format="MPO", save_all=True, append_images=[Image.fromarray(second)])
    with Image.open(path) as image:
        assert image.format == "MPO"


def _png16_rgb(path):
    wide = photo(80, 110).astype(np.uint16) * 257 + np.random.default_rng(1).integers(0, 257, (80, 110, 3)).astype(np.uint16)
    write_png16(path, wide)


def _png16_grey(path):
    grey = photo(90, 70)[..., 1].astype(np.uint16) * 257 + 100
    Image.fromarray(grey).save(path)  # mode I;16


# name -> (file name, writer). Bounds per case follow the table in TOLERANCES.
CASES = {
    "jpeg small": ("a.jpg", lambda p: Image.fromarray(photo(48, 40)).save(p, quality=90)),
    "jpeg large": ("a.jpg", lambda p: Image.fromarray(photo(480, 640)).save(p, quality=90)),
    "jpeg tall": ("a.jpg", lambda p: Image.fromarray(photo(400, 150)).save(p, quality=85)),
    "jpeg 4:4:4": ("a.jpg", lambda p: Image.fromarray(photo(200, 260)).save(p, quality=95, subsampling=0)),
    "jpeg grey": ("a.jpg", lambda p: Image.fromarray(photo(200, 300)[..., 0]).save(p, quality=90)),
    "jpeg progressive": ("a.jpg", lambda p: Image.fromarray(photo(300, 200)).save(p, quality=90, progressive=True)),
    "jpeg cmyk": ("a.jpg", _cmyk_jpeg),
    # A phone's JPEG with a second picture (MPF): Pillow calls it MPO.
    "jpeg mpo": ("a.jpg", lambda p: _mpo(p, photo(120, 160), photo(60, 80))),
    "png rgb": ("a.png", lambda p: Image.fromarray(photo(90, 120)).save(p)),
    "png rgba": ("a.png", lambda p: _rgba(130, 70).save(p)),
    "png grey": ("a.png", lambda p: Image.fromarray(photo(60, 50)[..., 2]).save(p)),
    "png grey+alpha": ("a.png", lambda p: _rgba(80, 100).convert("LA").save(p)),
    "png palette+transparency": ("a.png", _transparent_png),
    "png 16-bit grey": ("a.png", _png16_grey),
    "png 16-bit rgb": ("a.png", _png16_rgb),
    "bmp rgb": ("a.bmp", lambda p: Image.fromarray(photo(110, 90)).save(p)),
    "bmp 8-bit palette": ("a.bmp", lambda p: _paletted(70, 100).save(p)),
    "gif animated": ("a.gif", _animated_gif),
    "gif transparency": ("a.gif", _transparent_gif),
}

# (max, mean) absolute difference from TensorFlow allowed per case: what was measured,
# plus a little. Formats decode identically (JPEG with simplejpeg, as TensorFlow decodes
# it), so only values at exactly .5 after the resize round the other way.
LOSSLESS = (1, 0.02)
TOLERANCES: dict[str, tuple[int, float]] = {}


def make(tmp_path, case: str):
    name, write = CASES[case]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    write(path)
    return path


def differences(path, size: int, resize: str) -> tuple[int, float]:
    import tensorflow as tf

    from dsxsd.train.data import decode_and_resize

    ours = model_input(path, size, resize).astype(int)
    theirs = decode_and_resize(tf.constant(str(path)), size, resize).numpy().astype(int)
    assert ours.shape == theirs.shape == (size, size, 3)
    diff = np.abs(ours - theirs)
    return int(diff.max()), float(diff.mean())


@pytest.mark.tf
@pytest.mark.parametrize("resize", MODES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_training_decode_and_resize(tmp_path, case, size, resize):
    pytest.importorskip("tensorflow")
    worst, mean = differences(make(tmp_path, case), size, resize)
    bound_max, bound_mean = TOLERANCES.get(case, LOSSLESS)
    assert worst <= bound_max and mean <= bound_mean, (worst, mean)


@pytest.mark.tf
def test_model_inputs_equal_training_load_images_for_lossless_files(tmp_path):
    pytest.importorskip("tensorflow")
    from dsxsd.train import load_images

    paths = [make(tmp_path / case.replace(" ", "_"), case) for case in ("png rgb", "bmp rgb", "gif animated")]
    ours, theirs = model_inputs(paths, 64, "letterbox"), load_images(paths, 64, "letterbox")
    assert ours.dtype == theirs.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1


# ------------------------------------------------------------------- without TensorFlow


@pytest.mark.parametrize("resize", MODES)
def test_output_is_uint8_s_by_s_rgb_and_model_inputs_stack_as_float32(tmp_path, resize):
    wide = make(tmp_path, "png rgb")
    tall = tmp_path / "tall.jpg"
    Image.fromarray(photo(100, 30)).save(tall)
    one = model_input(wide, 105, resize)
    assert one.shape == (105, 105, 3) and one.dtype == np.uint8
    many = model_inputs([wide, tall], 64, resize)
    assert many.shape == (2, 64, 64, 3) and many.dtype == np.float32
    assert model_inputs([], 64, resize).shape == (0, 64, 64, 3)


def test_letterbox_pads_with_black_around_the_centred_image(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((50, 100, 3), 200, np.uint8)).save(path)
    out = model_input(path, 64, "letterbox")
    assert (out[:16] == 0).all() and (out[48:] == 0).all() and (out[16:48] == 200).all()


def test_alpha_is_dropped_not_blended_and_grey_is_repeated(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(path)
    assert (model_input(path, 8) == (10, 20, 30)).all()
    grey = tmp_path / "grey.png"
    Image.new("L", (8, 8), 77).save(grey)
    assert (model_input(grey, 4) == 77).all()


def test_unknown_resize_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="crop"):
        model_input(make(tmp_path, "png rgb"), 64, "crop")


def _refused(path, error, words):
    with pytest.raises(error) as caught:
        model_input(path, 64)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def test_formats_training_cannot_decode_are_refused_by_name(tmp_path):
    Image.fromarray(photo(20, 20)).save(tmp_path / "a.tif")
    Image.fromarray(photo(20, 20)).save(tmp_path / "a.webp")
    _refused(tmp_path / "a.tif", ImageDecodeError, "not a JPEG, PNG, BMP or GIF image (TIFF)")
    _refused(tmp_path / "a.webp", ImageDecodeError, "not a JPEG, PNG, BMP or GIF image (WEBP)")


def test_a_bmp_depth_training_cannot_decode_is_refused(tmp_path):
    Image.fromarray(photo(20, 20)[..., 0]).convert("1").save(tmp_path / "a.bmp")
    _refused(tmp_path / "a.bmp", ImageDecodeError, "1-bit BMP")


def test_text_empty_and_truncated_files_are_decode_errors(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(photo(200, 200)).save(tmp_path / "cut.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:300])
    for name in ("text.jpg", "empty.png", "cut.jpg"):
        with pytest.raises(ImageDecodeError, match=rf"^{tmp_path / name}: "):
            model_input(tmp_path / name, 64)


def test_an_image_too_thin_to_letterbox_is_refused_as_training_fails_on_it(tmp_path):
    Image.new("RGB", (300, 1), (9, 9, 9)).save(tmp_path / "thin.png")
    with pytest.raises(ImageDecodeError, match="too thin to letterbox"):
        model_input(tmp_path / "thin.png", 64, "letterbox")


def test_a_missing_file_is_missing_image_error(tmp_path):
    _refused(tmp_path / "gone.jpg", MissingImageError, "not found")


def test_a_decompression_bomb_is_hostile_input(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(photo(100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _refused(path, HostileInputError, "decompression bomb")


def test_model_input_never_imports_tensorflow(tmp_path):
    path = make(tmp_path, "jpeg small")
    code = (
        "import sys; from dsxsd._images import model_inputs; "
        f"model_inputs([{str(path)!r}], 64, 'letterbox'); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
