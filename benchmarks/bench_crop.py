"""How fast ``dsxsd crop`` is, against the naive loop and against the work no cropper avoids.

Generates JPEG photos-to-be (640x480, shapes and gradients drawn with Pillow, quality 90)
with about five boxes each and a CSV of their annotations, then times in the same run:

- the baseline: a loop that opens (and so decodes) the image once per object with PIL,
  crops and saves it, as most dataset scripts do;
- the limit: decoding each image once and encoding every crop as JPEG (quality 95, the
  default of ``dsxsd crop``), in one process - the work any cropper has to do;
- the same, also writing each crop to its own file: on some file systems (sandboxes,
  network disks) creating a file costs as much as encoding a crop, and no cropper can
  avoid it;
- ``dsxsd.crop`` with every core, as ``dsxsd crop`` runs by default (target: within 1.3x
  of the one-process limit), and with one process (target: within 1.3x of the limit that
  also writes the files, so reading the annotations, naming, checking and the manifest
  cost little on top; against bare decode + encode it is reported), and both against the
  baseline.

Best of a few runs each. Run ``python benchmarks/bench_crop.py [--images N] [--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import random
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks._common`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, cores, interleaved, table  # noqa: E402

STAGE = "crop"
FULL_IMAGES = 300
QUICK_IMAGES = 150
SIZE = (640, 480)
CLASSES = ("person", "car", "dog", "cat", "bicycle")


def make_dataset(root: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """``count`` JPEGs under ``root/images`` and ``root/labels.csv`` with 3-7 boxes each."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True)
    width, height = SIZE
    gradient = Image.linear_gradient("L").resize(SIZE)
    rows = [("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")]
    for index in range(count):
        tint = Image.new("RGB", SIZE, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        picture = Image.merge("RGB", (gradient, tint.getchannel(1), gradient.rotate(90 * (index % 4))))
        # Sensor-like noise: JPEGs of flat drawings decode far faster than photos do.
        noise = Image.effect_noise(SIZE, 24).convert("RGB")
        picture = Image.blend(picture, noise, 0.3)
        draw = ImageDraw.Draw(picture)
        name = f"photo_{index:05d}.jpg"
        for _ in range(rng.randint(3, 7)):
            w, h = rng.randint(40, 240), rng.randint(40, 240)
            x, y = rng.randrange(width - w), rng.randrange(height - h)
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            draw.rectangle((x, y, x + w, y + h), outline=colour, width=3)
            draw.ellipse((x + 5, y + 5, x + w - 5, y + h - 5), fill=colour)
            rows.append((name, width, height, rng.choice(CLASSES), x, y, x + w, y + h))
        picture.save(images / name, quality=90)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)
    return root / "labels.csv", images


def _objects(labels: Path) -> list[tuple[str, str, tuple[int, int, int, int]]]:
    with open(labels, newline="", encoding="utf-8") as stream:
        return [
            (row["filename"], row["class"], tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
            for row in csv.DictReader(stream)
        ]


def naive_loop(labels: Path, images: Path, out: Path) -> None:
    """Open the image once per object, crop, save: the usual script."""
    from PIL import Image

    out = _fresh(out)
    counts: dict[str, int] = {}
    for filename, label, box in _objects(labels):
        (out / label).mkdir(parents=True, exist_ok=True)
        index = counts[filename] = counts.get(filename, -1) + 1
        with Image.open(images / filename) as image:
            image.crop(box).convert("RGB").save(
                out / label / f"{Path(filename).stem}_{index}.jpg", quality=95
            )


def decode_encode_limit(labels: Path, images: Path, out: Path | None = None) -> None:
    """Decode every image once and encode every crop; with ``out``, also write each crop
    to its own file there (the file system's part of the unavoidable work)."""
    from PIL import Image

    by_image: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = {}
    for filename, label, box in _objects(labels):
        by_image.setdefault(filename, []).append((label, box))
    if out is not None:
        out = _fresh(out)
        out.mkdir()
    for filename, boxes in by_image.items():
        with Image.open(images / filename) as image:
            image.load()
            for index, (label, box) in enumerate(boxes):
                buffer = io.BytesIO()
                image.crop(box).save(buffer, "JPEG", quality=95)
                if out is not None:
                    (out / f"{label}_{Path(filename).stem}_{index}.jpg").write_bytes(buffer.getvalue())


def dsxsd_crop(labels: Path, images: Path, out: Path, workers: int | None) -> None:
    import dsxsd

    dsxsd.crop(labels, images=images, out=_fresh(out), workers=workers)


_runs = itertools.count()


def _fresh(out: Path) -> Path:
    """A new output folder per run: deleting the last run's files is not cropping."""
    return out.with_name(f"{out.name}-{next(_runs)}")


def measure(quick: bool = False, images: int | None = None) -> list[Row]:
    count = images or (QUICK_IMAGES if quick else FULL_IMAGES)
    runs = 2 if quick else 3
    n = cores()
    label = f"{count} images of {SIZE[0]}x{SIZE[1]}"
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-crop-") as tmp:
        root = Path(tmp)
        labels, folder = make_dataset(root, count)
        objects = len(_objects(labels))
        label += f", {objects} objects"
        decode_encode_limit(labels, folder)  # warm the page cache and the imports
        dsxsd_crop(labels, folder, root / "warm", 1)
        limit, limit_files, base, serial, parallel = interleaved(
            runs,
            (decode_encode_limit, labels, folder),
            (decode_encode_limit, labels, folder, root / "limit"),
            (naive_loop, labels, folder, root / "naive"),
            (dsxsd_crop, labels, folder, root / "serial", 1),
            (dsxsd_crop, labels, folder, root / "parallel", None),
        )
        crops = sum(1 for path in root.glob("serial-*/*/*.jpg")) // runs
        if crops != objects:
            raise AssertionError(f"dsxsd wrote {crops} crops per run, expected {objects}")
    limit_name = "decode once + encode crops, 1 process"
    files_name = "decode once + encode + write crop files, 1 process"
    # The 1.3x target: crop as users run it (every core, the CLI's default) against the
    # one-process limit, and one process against the one-process limit that also writes
    # the files (creating a file cost about 1 ms in the sandbox this was tuned on, more
    # than encoding a crop). One process against bare decode + encode is reported.
    return [
        Row(STAGE, f"dsxsd, all {n} cores ({label})", parallel, limit_name, limit, "overhead", 1.3),
        Row(STAGE, f"dsxsd, --workers 1 ({label})", serial, files_name, limit_files, "overhead", 1.3),
        Row(STAGE, f"dsxsd, --workers 1 ({label})", serial, limit_name, limit, "overhead", None),
        Row(STAGE, f"dsxsd, --workers 1 ({label})", serial, "PIL loop, one open per object", base, "speedup", None),
        Row(STAGE, f"dsxsd, all {n} cores ({label})", parallel, "PIL loop, one open per object", base, "speedup", None),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, help=f"how many images (default {FULL_IMAGES})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} images, fewer runs")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(table(measure(args.quick, args.images), markdown=args.markdown))


if __name__ == "__main__":
    main()
