"""``voc`` -> ``csv --columns basic`` reproduces the classic TF Object Detection API
``xml_to_csv.py`` row for row, on a folder written the way LabelImg writes it.

The script below is a faithful copy of the one in every TF Object Detection API tutorial
(datitran/raccoon_dataset), with one change: the glob is sorted, since its order is the
file system's and the script's output is not deterministic without it. Everything else,
positional ``member[4][0]`` access and ``int()`` included, is kept; that is what the
tutorials' ``generate_tfrecord.py`` expects to read.
"""

from __future__ import annotations

import glob
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

import pandas as pd
from lxml import etree

import dsxsd
from dsxsd.annotations import AnnotationSet


# ---- the classic script (xml_to_csv.py), verbatim apart from sorted() --------------------
def xml_to_csv(path):
    xml_list = []
    for xml_file in sorted(glob.glob(path + '/*.xml')):
        tree = ET.parse(xml_file)
        root = tree.getroot()
        for member in root.findall('object'):
            value = (root.find('filename').text,
                     int(root.find('size')[0].text),
                     int(root.find('size')[1].text),
                     member[0].text,
                     int(member[4][0].text),
                     int(member[4][1].text),
                     int(member[4][2].text),
                     int(member[4][3].text)
                     )
            xml_list.append(value)
    column_name = ['filename', 'width', 'height', 'class', 'xmin', 'ymin', 'xmax', 'ymax']
    xml_df = pd.DataFrame(xml_list, columns=column_name)
    return xml_df
# ------------------------------------------------------------------------------------------


def labelimg_xml(folder, filename, path, size, boxes, verified=False) -> bytes:
    """What LabelImg's PascalVocWriter saves: ElementTree built in its order, re-printed
    by lxml, two spaces turned into tabs, no XML declaration."""
    top = Element("annotation")
    if verified:
        top.set("verified", "yes")
    SubElement(top, "folder").text = folder
    SubElement(top, "filename").text = filename
    SubElement(top, "path").text = path
    SubElement(SubElement(top, "source"), "database").text = "Unknown"
    size_part = SubElement(top, "size")
    for tag, value in zip(("width", "height", "depth"), size):
        SubElement(size_part, tag).text = str(value)
    SubElement(top, "segmented").text = "0"
    width, height = size[0], size[1]
    for name, (xmin, ymin, xmax, ymax), difficult in boxes:
        item = SubElement(top, "object")
        SubElement(item, "name").text = name
        SubElement(item, "pose").text = "Unspecified"
        touches = ymax == height or ymin == 1 or xmax == width or xmin == 1
        SubElement(item, "truncated").text = "1" if touches else "0"
        SubElement(item, "difficult").text = str(bool(difficult) & 1)
        bndbox = SubElement(item, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax)):
            SubElement(bndbox, tag).text = str(value)
    root = etree.fromstring(ET.tostring(top, "utf8"))
    return etree.tostring(root, pretty_print=True, encoding="utf-8").replace(b"  ", b"\t")


IMAGES = [
    # (xml stem, image file name, (width, height, depth), [(class, box, difficult)])
    ("raccoon-1", "raccoon-1.jpg", (650, 417, 3), [("raccoon", (81, 88, 522, 408), 0)]),
    ("raccoon-2", "raccoon-2.jpg", (640, 480, 3), [
        ("raccoon", (1, 12, 300, 480), 0),
        ("raccoon", (310, 40, 640, 470), 1),
        ("traffic light", (5, 6, 25, 60), 0),
    ]),
    ("empty", "empty.jpg", (320, 240, 3), []),
    ("IMG 0001, copy", "IMG 0001, copy.jpg", (1024, 768, 1), [
        ('say "hi"', (100, 200, 300, 400), 0),
        ("猫", (0, 0, 1023, 767), 0),
    ]),
    ("zebra", "zebra.png", (200, 100, 4), [("raccoon", (10, 10, 20, 20), 0)]),
]


def make_labelimg_folder(root: Path) -> Path:
    folder = root / "annotations"
    folder.mkdir()
    for stem, filename, size, boxes in IMAGES:
        data = labelimg_xml(
            "images", filename, f"/home/me/data/images/{filename}", size, boxes,
            verified=stem == "zebra",
        )
        (folder / f"{stem}.xml").write_bytes(data)
    (folder / "classes.txt").write_text("raccoon\n")  # LabelImg leaves one in YOLO mode
    return folder


def classic_csv(folder: Path, out: Path) -> str:
    xml_to_csv(str(folder)).to_csv(out, index=None)
    return out.read_text(encoding="utf-8")


def test_labelimg_folder_matches_xml_to_csv_row_for_row(tmp_path):
    folder = make_labelimg_folder(tmp_path)
    expected = classic_csv(folder, tmp_path / "classic.csv")
    annotations = dsxsd.read(folder)
    with_objects = AnnotationSet(tuple(im for im in annotations.images if im.objects))
    dsxsd.write(with_objects, tmp_path / "dsxsd.csv", "csv", columns="basic")
    assert (tmp_path / "dsxsd.csv").read_text(encoding="utf-8") == expected
    # The data really is there: 7 objects, the quoted names quoted as pandas quotes them.
    lines = expected.splitlines()
    assert len(lines) == 1 + 7
    assert lines[0] == "filename,width,height,class,xmin,ymin,xmax,ymax"
    assert '"IMG 0001, copy.jpg",1024,768,"say ""hi""",100,200,300,400' in lines


def test_image_without_objects_has_no_basic_row_and_one_full_row(tmp_path):
    # xml_to_csv.py drops an image without objects, and so do the basic columns (they
    # are its output); the full columns keep it as one row with an empty class and box,
    # in its sorted place.
    folder = make_labelimg_folder(tmp_path)
    expected = classic_csv(folder, tmp_path / "classic.csv")
    dsxsd.write(dsxsd.read(folder), tmp_path / "basic.csv", "csv", columns="basic")
    assert (tmp_path / "basic.csv").read_text(encoding="utf-8") == expected
    dsxsd.write(dsxsd.read(folder), tmp_path / "full.csv", "csv")
    full = (tmp_path / "full.csv").read_text(encoding="utf-8").splitlines()
    # Sorted by XML file name: "IMG 0001, copy.xml" (two rows) < "empty.xml" < "raccoon-1.xml".
    assert full[2].startswith('"IMG 0001, copy.jpg"') and full[4].startswith("raccoon-1")
    assert full[3] == "empty.jpg,320,240,,,,,,3,,,"


def test_cli_voc2csv_basic_matches_xml_to_csv(tmp_path):
    from click.testing import CliRunner

    from dsxsd.cli import main

    folder = make_labelimg_folder(tmp_path)
    expected = classic_csv(folder, tmp_path / "classic.csv").splitlines()
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(
        main, ["convert", "voc2csv", "--columns", "basic", str(folder), str(out)]
    )
    assert result.exit_code == 0, result.output
    ours = out.read_text(encoding="utf-8").splitlines()
    assert ours == expected
