"""Hypothesis strategies for annotation sets, and the projection the contract test uses.

Reusable by any test: ``from strategies import annotation_sets, project``.

The generated values are the ones a format is asked to keep: labels with any printable
Unicode (punctuation, ``&``, ``<``, quotes, commas, spaces inside), float and integral
boxes, images without objects, class lists with unused classes, optional sizes, flags,
poses, occlusion and attributes. They stay inside what every format's *contract* holds:
no control characters (XML cannot hold them), no surrounding white space (names are
stripped on reading), no white space in file names and paths (the ``lines`` format
refuses it), sizes above 0 (VOC tools write 0 for "unknown"), no pose ``Unspecified``
(LabelImg's word for none), and file names with distinct stems (VOC writes one
``<stem>.xml`` per image). What a format cannot hold is removed by :func:`project`,
driven by the format's ``lossy`` list.
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any, Iterable

from hypothesis import strategies as st

from dsxsd.annotations import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation

# Printable characters of every script: letters, digits, punctuation, symbols and spaces
# (control, format, surrogate, private and unassigned code points excluded).
_PRINTABLE = st.characters(categories=("L", "N", "P", "S", "Zs"))

HOSTILE_LABELS = (
    "a&b <c>",
    'say "hi"',
    "comma, here",
    "semi;colon",
    "tv/monitor",
    "../../etc",
    "=SUM(A1)",
    "traffic light",
    "猫",
    "Ünïcödé",
    "😀",
    "#hash",
)


def names(max_size: int = 12) -> st.SearchStrategy[str]:
    """A class name, pose or folder: printable Unicode with no surrounding white space."""
    generated = st.text(_PRINTABLE, min_size=1, max_size=max_size).map(str.strip).filter(bool)
    return st.one_of(st.sampled_from(HOSTILE_LABELS), generated)


def coordinates() -> st.SearchStrategy[float]:
    """Pixel coordinates as tools write them: mostly integers, also any finite float."""
    return st.one_of(
        st.integers(min_value=0, max_value=10_000).map(float),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    )


def boxes() -> st.SearchStrategy[BBox]:
    return st.builds(BBox, coordinates(), coordinates(), coordinates(), coordinates())


def attributes(strings_only: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """Extra key/value data: strings for objects (CVAT's attributes are text), any JSON
    value for images."""
    text = st.one_of(st.just(""), names())
    values = text
    if not strings_only:
        values = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), text)
    return st.dictionaries(names(8), values, max_size=3)


def objects(labels: list[str]) -> st.SearchStrategy[ObjectAnnotation]:
    return st.builds(
        ObjectAnnotation,
        label=st.sampled_from(labels),
        bbox=boxes(),
        difficult=st.booleans(),
        truncated=st.booleans(),
        occluded=st.one_of(st.none(), st.booleans()),
        pose=st.one_of(st.none(), names().filter(lambda text: text != "Unspecified")),
        attributes=attributes(strings_only=True),
    )


_STEM_CHARACTERS = string.ascii_lowercase + string.digits


def filenames(count: int) -> st.SearchStrategy[list[str]]:
    """``count`` file names with distinct stems of one length, so that sorting them, their
    stems, or the ``<stem>.xml`` a VOC folder holds gives one and the same order."""
    stems = st.text(_STEM_CHARACTERS, min_size=6, max_size=6)
    extensions = st.sampled_from([".jpg", ".png", ".jpeg", ".JPG"])
    return st.lists(
        st.tuples(stems, extensions), min_size=count, max_size=count, unique_by=lambda t: t[0]
    ).map(lambda pairs: [stem + ext for stem, ext in pairs])


@st.composite
def images(draw, filename: str, labels: list[str]) -> ImageAnnotation:
    sizes = st.one_of(st.none(), st.integers(min_value=1, max_value=10_000))
    folder = draw(st.one_of(st.none(), names()))
    folders = st.sampled_from(["/data/VOC/JPEGImages/", "C:\\img\\", "rel/"])
    where = draw(st.one_of(st.none(), folders))
    return ImageAnnotation(
        filename=filename,
        width=draw(sizes),
        height=draw(sizes),
        depth=draw(st.one_of(st.none(), st.sampled_from([1, 3, 4]))),
        objects=draw(st.lists(objects(labels), max_size=4)) if labels else (),
        folder=folder,
        path=None if where is None else where + filename,
        attributes=draw(attributes()),
    )


@st.composite
def annotation_sets(draw, max_images: int = 6, max_classes: int = 40) -> AnnotationSet:
    """An annotation set, images in any order (a format that sorts them, as VOC reads a
    folder by file name, says ``image_order`` in its ``lossy`` list)."""
    pool = draw(st.lists(names(), max_size=max_classes, unique=True))
    count = draw(st.integers(min_value=0, max_value=max_images))
    files = draw(filenames(count))
    items = [draw(images(name, pool)) for name in files]
    explicit = draw(st.booleans())
    classes = draw(st.permutations(pool)) if explicit else None
    return AnnotationSet(items, classes)


# ----------------------------------------------------------------------------- projection

_IMAGE_DEFAULTS: dict[str, Any] = {
    "width": None,
    "height": None,
    "depth": None,
    "folder": None,
    "path": None,
    "attributes": {},
}
_OBJECT_DEFAULTS: dict[str, Any] = {
    "difficult": False,
    "truncated": False,
    "occluded": None,
    "pose": None,
    "attributes": {},
}


def _through_xywh(box: BBox) -> BBox:
    return BBox(
        box.xmin, box.ymin, box.xmin + (box.xmax - box.xmin), box.ymin + (box.ymax - box.ymin)
    )


def _last_component(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def project(annotations: AnnotationSet, lossy: Iterable[str]) -> AnnotationSet:
    """What a format with the ``lossy`` list gives back for ``annotations``.

    A field name (``width``, ``pose``, ...) resets that field to its default wherever the
    model has it; ``image.attributes``/``object.attributes`` name one level only. Three
    names are not fields:

    - ``filename``: the format keeps one path per image; it reads back as ``path`` (the
      image's path, else its filename) with the filename its last component;
    - ``classes``: no class list; the classes are the labels in order of first appearance;
    - ``image_order``: images come back sorted by file name;
    - ``bbox_xywh``: the box travels as ``[x, y, xmax - x, ymax - y]`` (COCO), so its far
      corner comes back as ``x + (xmax - x)``, which floats may round in the last bit;
    - ``bbox_normalised``: the box travels divided by the image size (YOLO), so it comes
      back only approximately; boxes are left as they are here and compared within
      :data:`BOX_TOLERANCE` by :func:`assert_matches`.
    """
    lossy = set(lossy)

    def lost(level: str, name: str) -> bool:
        return name in lossy or f"{level}.{name}" in lossy

    result = []
    for image in annotations.images:
        changes: dict[str, Any] = {}
        if "filename" in lossy:
            where = image.path or image.filename
            changes.update(filename=_last_component(where), path=where)
        changes.update({n: d for n, d in _IMAGE_DEFAULTS.items() if lost("image", n)})
        changes["objects"] = tuple(
            dataclasses.replace(
                obj,
                **{n: d for n, d in _OBJECT_DEFAULTS.items() if lost("object", n)},
                **({"bbox": _through_xywh(obj.bbox)} if "bbox_xywh" in lossy else {}),
            )
            for obj in image.objects
        )
        result.append(dataclasses.replace(image, **changes))
    if "image_order" in lossy:
        result.sort(key=lambda image: image.filename)
    classes = None if "classes" in lossy else annotations.classes
    return AnnotationSet(result, classes)


# How far a corner that travelled normalised may come back (pixels, or relative to the
# coordinate for huge ones): a millionth of a pixel, where an off-by-one or a swapped
# corner is off by one pixel or more.
BOX_TOLERANCE = 1e-6


def _box_free(annotations: AnnotationSet) -> AnnotationSet:
    empty = BBox(0, 0, 0, 0)
    return AnnotationSet(
        [
            dataclasses.replace(
                image, objects=[dataclasses.replace(obj, bbox=empty) for obj in image.objects]
            )
            for image in annotations.images
        ],
        annotations.classes,
    )


def assert_matches(actual: AnnotationSet, expected: AnnotationSet, lossy: Iterable[str]) -> None:
    """``actual == expected``, except that with ``bbox_normalised`` in ``lossy`` each box
    corner may differ by :data:`BOX_TOLERANCE` (everything else still exactly)."""
    if "bbox_normalised" not in set(lossy):
        assert actual == expected
        return
    assert _box_free(actual) == _box_free(expected)
    for image, wanted in zip(actual.images, expected.images):
        for index, (obj, want) in enumerate(zip(image.objects, wanted.objects)):
            close = all(
                math.isclose(a, b, rel_tol=BOX_TOLERANCE * 1e-6, abs_tol=BOX_TOLERANCE)
                for a, b in zip(obj.bbox.as_tuple(), want.bbox.as_tuple())
            )
            assert close, f"{image.filename} object {index}: {obj.bbox} != {want.bbox}"


__all__ = [
    "BOX_TOLERANCE",
    "assert_matches",
    "HOSTILE_LABELS",
    "annotation_sets",
    "attributes",
    "boxes",
    "coordinates",
    "filenames",
    "images",
    "names",
    "objects",
    "project",
]
