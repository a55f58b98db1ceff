"""How fast ``voc2csv`` is, against the TF Object Detection API's ``xml_to_csv.py`` loop.

Generates LabelImg-style VOC files (folder, filename, path, source, size, segmented and
1-4 objects with name, pose, truncated, difficult and bndbox, tab-indented as LabelImg
writes them) into a temporary folder, then times on those same files, in the same run:

- the baseline: the loop of the TF Object Detection API tutorials' ``xml_to_csv.py``
  (``glob``, ``xml.etree.ElementTree.parse``, one tuple per object, ``pd.DataFrame``,
  ``to_csv``);
- ``dsxsd.convert`` (what ``dsxsd convert voc2csv`` runs) with one process and with
  every core; ``dsxsd.read`` + ``dsxsd.write`` with every core (a script that reads the
  dataset into memory first, where workers send back the images rather than CSV rows);
  and the CLI end to end once.

Figures are speed-ups over the baseline: the best of a few runs each, the contenders
taking turns within a round, so that load from other work on the machine falls on all
of them alike. Each run is a fresh interpreter that imports its library (pandas, or
dsxsd) and then times its own work, as a user's script would run: how a process starts
its workers depends on the threads it already runs, which earlier benchmarks in the
same process (pandas' BLAS threads, TensorFlow's) would change. dsxsd validates more
than the baseline does (hostile XML, numbers, flags, sizes) and writes four more
columns; the comparison is of what a user runs to get the CSV. Run ``python benchmarks/bench_convert.py [--files N] [--quick]``.
"""

from __future__ import annotations

import argparse
import glob
import random
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks._common`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Row, cores, in_fresh_process, interleaved, table, timed  # noqa: E402

STAGE = "convert voc2csv"
BASELINE = "ElementTree loop (xml_to_csv.py)"
FULL_FILES = 17_000
QUICK_FILES = 5_000
CLASSES = ("person", "car", "dog", "cat", "bicycle", "bird", "traffic light", "bus")
POSES = ("Unspecified", "Unspecified", "Unspecified", "Left", "Right", "Frontal")

_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>{pose}</pose>
\t\t<truncated>{truncated}</truncated>
\t\t<difficult>{difficult}</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
\t</object>
"""

_DOCUMENT = """<annotation>
\t<folder>images</folder>
\t<filename>{filename}</filename>
\t<path>/home/labeller/datasets/street/images/{filename}</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""


def labelimg_document(index: int, rng: random.Random) -> str:
    """One file as LabelImg saves it, with 1-4 objects."""
    width, height = rng.choice(((640, 480), (1280, 720), (1920, 1080), (800, 600)))
    objects = []
    for _ in range(rng.randint(1, 4)):
        xmin, ymin = rng.randrange(width - 20), rng.randrange(height - 20)
        objects.append(
            _OBJECT.format(
                name=rng.choice(CLASSES),
                pose=rng.choice(POSES),
                truncated=int(rng.random() < 0.1),
                difficult=int(rng.random() < 0.05),
                xmin=xmin,
                ymin=ymin,
                xmax=rng.randint(xmin + 10, width),
                ymax=rng.randint(ymin + 10, height),
            )
        )
    return _DOCUMENT.format(
        filename=f"img_{index:06d}.jpg", width=width, height=height, objects="".join(objects)
    )


def make_files(folder: Path, count: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"img_{index:06d}.xml").write_text(labelimg_document(index, rng), "utf-8")
    return folder


def xml_to_csv(path: str, output: str) -> None:
    """The TF Object Detection API tutorials' ``xml_to_csv.py``, as people run it."""
    import pandas as pd

    xml_list = []
    for xml_file in glob.glob(path + "/*.xml"):
        tree = ET.parse(xml_file)
        root = tree.getroot()
        for member in root.findall("object"):
            bndbox = member.find("bndbox")
            value = (
                root.find("filename").text,
                int(root.find("size")[0].text),
                int(root.find("size")[1].text),
                member.find("name").text,
                int(bndbox.find("xmin").text),
                int(bndbox.find("ymin").text),
                int(bndbox.find("xmax").text),
                int(bndbox.find("ymax").text),
            )
            xml_list.append(value)
    column_name = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    xml_df = pd.DataFrame(xml_list, columns=column_name)
    xml_df.to_csv(output, index=None)


def dsxsd_convert(folder: Path, output: Path, workers: int | None) -> None:
    import dsxsd

    dsxsd.convert(folder, output, "voc", "csv", workers=workers, overwrite=True)


def dsxsd_read_write(folder: Path, output: Path, workers: int | None) -> None:
    import dsxsd

    annotations = dsxsd.read(folder, "voc", workers=workers)
    dsxsd.write(annotations, output, "csv", overwrite=True)


# contender -> (what runs it, its workers); the baseline is xml_to_csv
CONTENDERS = {
    "serial": (dsxsd_convert, 1),
    "parallel": (dsxsd_convert, None),
    "read-write": (dsxsd_read_write, None),
}


def run_one(contender: str, folder: str, output: str) -> float:
    """One timed run in this (fresh) process: ``baseline`` or one of CONTENDERS."""
    if contender == "baseline":
        import pandas  # noqa: F401  the script's own import, before its clock starts

        _, seconds = timed(xml_to_csv, folder, output)
    else:
        import dsxsd  # noqa: F401

        function, workers = CONTENDERS[contender]
        _, seconds = timed(function, Path(folder), Path(output), workers)
    return seconds


def _fresh_run(contender: str, folder: Path, output: Path) -> float:
    return in_fresh_process(__file__, "--run-one", contender, str(folder), str(output))


def measure(quick: bool = False, files: int | None = None) -> list[Row]:
    count = files or (QUICK_FILES if quick else FULL_FILES)
    runs = 2 if quick else 5
    n = cores()
    label = f"{count:,} files"
    with tempfile.TemporaryDirectory(prefix="dsxsd-bench-convert-") as tmp:
        folder = make_files(Path(tmp) / "Annotations", count)
        out = Path(tmp) / "out"
        out.mkdir()
        _fresh_run("serial", folder, out / "warm.csv")  # warm the page cache, outside every timing
        names = ("baseline", *CONTENDERS)
        base, serial, parallel, read_write = interleaved(
            runs, *((_fresh_run, name, folder, out / f"{name}.csv") for name in names), self_timed=True,
        )
        lines = {name: len((out / f"{name}.csv").read_bytes().splitlines()) for name in names}
        if len(set(lines.values())) != 1:  # one row per object, and the header, in each
            raise AssertionError(f"the outputs disagree on the number of rows: {lines}")
        if len({(out / f"{name}.csv").read_bytes() for name in CONTENDERS}) != 1:
            raise AssertionError("dsxsd wrote different files with different workers")
        rows = [
            Row(STAGE, f"dsxsd.convert, --workers 1 ({label})", serial, BASELINE, base, "speedup", None),
            Row(STAGE, f"dsxsd.convert, all {n} cores ({label})", parallel, BASELINE, base, "speedup", 2.0),
            Row(STAGE, f"dsxsd.read + dsxsd.write, all {n} cores ({label})", read_write, BASELINE, base,
                "speedup", None),
        ]
        # The CLI as a user runs it, starting Python and importing included; against the
        # baseline's own work (its interpreter and pandas import left out), once.
        command = [sys.executable, "-c", "from dsxsd.cli import main; main()", "convert",
                   "voc2csv", str(folder), str(out / "cli.csv"), "--overwrite"]
        _, cli = timed(subprocess.run, command, check=True, capture_output=True)
        rows.append(
            Row(STAGE, f"dsxsd convert CLI, all cores, whole command, 1 run ({label})", cli,
                BASELINE, base, "speedup", None)
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, help=f"how many VOC files (default {FULL_FILES:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FILES:,} files, fewer runs")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--run-one", nargs=3, metavar=("CONTENDER", "FOLDER", "OUTPUT"),
                        help=argparse.SUPPRESS)  # one timed run, for measure()
    args = parser.parse_args(argv)
    if args.run_one:
        print(run_one(*args.run_one))
        return
    print(table(measure(args.quick, args.files), markdown=args.markdown))


if __name__ == "__main__":
    main()
