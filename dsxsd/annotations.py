"""The in-memory annotation model every format reads into and writes from.

Frozen dataclasses that check themselves on construction, so a bad value is caught where
it is made (with the value in the message) rather than where it is written. Readers catch
:class:`ValueError` from these and re-raise it as an error naming the file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pandas is imported only when a frame is asked for: it is slow to load
    import pandas as pd


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _size(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0 or None, got {value!r}")
    return value


@dataclass(frozen=True)
class BBox:
    """A box in pixel corner coordinates, as VOC, CSV and line lists write them.

    Values are kept exactly as the source wrote them (floats allowed). The order of the
    corners is not enforced here: a box with ``xmin > xmax`` is a labeling mistake that
    ``validate`` reports and ``crop`` skips, and a reader must not hide it.
    """

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def __post_init__(self) -> None:
        for name in ("xmin", "ymin", "xmax", "ymax"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    def fault(self) -> str | None:
        """What makes this box no box, in the words ``validate`` and ``crop`` both use:
        :data:`BOX_OUT_OF_ORDER` (a maximum below its minimum, so the corners were
        swapped), :data:`EMPTY_BOX` (zero width or height); ``None`` for a good box."""
        if self.xmin > self.xmax or self.ymin > self.ymax:
            return BOX_OUT_OF_ORDER
        if self.xmin == self.xmax or self.ymin == self.ymax:
            return EMPTY_BOX
        return None


# The faults of BBox.fault. One wording for one fault, whichever command finds it.
BOX_OUT_OF_ORDER = "corners out of order"
EMPTY_BOX = "empty box"


# What VOC (and the pose column of CSV) writes for an object without a pose; read back
# as ``pose=None``, so a pose is either a real one or ``None``, whichever format said it.
UNSPECIFIED_POSE = "Unspecified"


@dataclass(frozen=True)
class ObjectAnnotation:
    """One labelled object. ``label`` is stripped of surrounding white space; ``pose`` is
    ``None`` where no pose was given (VOC's ``Unspecified``, see :data:`UNSPECIFIED_POSE`)."""

    label: str
    bbox: BBox
    difficult: bool = False
    truncated: bool = False
    occluded: bool | None = None
    pose: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.label, str):
            raise ValueError(f"label must be a string, got {self.label!r}")
        label = self.label.strip()
        if not label:
            raise ValueError(f"label must not be empty, got {self.label!r}")
        object.__setattr__(self, "label", label)
        if not isinstance(self.bbox, BBox):
            raise ValueError(f"bbox must be a BBox, got {self.bbox!r}")
        for name in ("difficult", "truncated"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.occluded is not None and not isinstance(self.occluded, bool):
            raise ValueError(f"occluded must be True, False or None, got {self.occluded!r}")
        if self.pose is not None and not isinstance(self.pose, str):
            raise ValueError(f"pose must be a string or None, got {self.pose!r}")
        object.__setattr__(self, "attributes", dict(self.attributes))


@dataclass(frozen=True)
class ImageAnnotation:
    """One image and its objects. An image with no objects is a valid item.

    ``width``/``height``/``depth`` are ``None`` when the source does not say and the image
    could not be consulted. ``path`` is where the source says the image is (possibly on
    another machine); ``filename`` is its name as the annotation gives it.
    """

    filename: str
    width: int | None = None
    height: int | None = None
    depth: int | None = None
    objects: tuple[ObjectAnnotation, ...] = ()
    folder: str | None = None
    path: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.filename, str) or not self.filename.strip():
            raise ValueError(f"filename must be a non-empty string, got {self.filename!r}")
        for name in ("width", "height", "depth"):
            object.__setattr__(self, name, _size(name, getattr(self, name)))
        objects = tuple(self.objects)
        for obj in objects:
            if not isinstance(obj, ObjectAnnotation):
                raise ValueError(f"objects must be ObjectAnnotation, got {obj!r}")
        object.__setattr__(self, "objects", objects)
        object.__setattr__(self, "attributes", dict(self.attributes))

    @property
    def stem(self) -> str:
        """The filename without folders and extension (``a/b/img.jpg`` -> ``img``)."""
        name = self.filename.replace("\\", "/").rsplit("/", 1)[-1]
        return name.rsplit(".", 1)[0] if "." in name[1:] else name


@dataclass(frozen=True)
class SkippedFile:
    """A file (or row, or line) a reader skipped under ``on_error="skip"``, and why."""

    file: str
    reason: str
    line: int | None = None


def classes_in_order(images: Iterable[ImageAnnotation]) -> tuple[str, ...]:
    """Class names in order of first appearance, the order a reader without a class list
    reports them in."""
    seen: dict[str, None] = {}
    for image in images:
        for obj in image.objects:
            seen.setdefault(obj.label, None)
    return tuple(seen)


def classes_by_count(counts: Mapping[str, int]) -> list[str]:
    """The classes of ``counts`` (class -> number), most first, ties by name: the order
    of every per-class table and summary, so the classes that matter lead and equal
    counts do not move between runs."""
    return sorted(counts, key=lambda name: (-counts[name], name))


@dataclass(frozen=True)
class AnnotationSet:
    """A dataset: images in order, and the class list.

    ``classes`` defaults to the labels in order of first appearance. A class list given
    explicitly may hold classes no object uses (a ``classes.txt`` does), but must hold
    every label that is used. ``skipped`` lists what a reader skipped under
    ``on_error="skip"``; it is provenance, not data, and takes no part in equality.
    """

    images: tuple[ImageAnnotation, ...] = ()
    classes: tuple[str, ...] | None = None
    skipped: tuple[SkippedFile, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        images = tuple(self.images)
        for image in images:
            if not isinstance(image, ImageAnnotation):
                raise ValueError(f"images must be ImageAnnotation, got {image!r}")
        object.__setattr__(self, "images", images)
        used = classes_in_order(images)
        if self.classes is None:
            object.__setattr__(self, "classes", used)
        else:
            classes = tuple(c.strip() if isinstance(c, str) else c for c in self.classes)
            for name in classes:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"class names must be non-empty strings, got {name!r}")
            duplicates = sorted({c for c in classes if classes.count(c) > 1})
            if duplicates:
                raise ValueError(f"class list repeats {duplicates!r}")
            missing = [c for c in used if c not in classes]
            if missing:
                raise ValueError(f"labels {missing!r} are used but not in the class list")
            object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "skipped", tuple(self.skipped))

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        return iter(self.images)

    @property
    def num_objects(self) -> int:
        return sum(len(image.objects) for image in self.images)

    def to_frame(self, include_empty: bool = False) -> "pd.DataFrame":
        """One row per object, columns in the TF Object Detection API order first.

        With ``include_empty`` an image without objects gives one row with an empty class
        and box (as the CSV format writes it).
        """
        import pandas as pd

        columns = [
            "filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax",
            "depth", "difficult", "truncated", "pose", "folder", "path", "object_index",
        ]
        rows = []
        for image in self.images:
            head = (image.filename, image.width, image.height)
            tail = (image.folder, image.path)
            for index, obj in enumerate(image.objects):
                rows.append(
                    head + (obj.label,) + obj.bbox.as_tuple()
                    + (image.depth, obj.difficult, obj.truncated, obj.pose) + tail + (index,)
                )
            if include_empty and not image.objects:
                rows.append(head + (None,) * 5 + (image.depth, None, None, None) + tail + (None,))
        frame = pd.DataFrame(rows, columns=columns)
        for name in ("width", "height", "depth", "object_index"):
            frame[name] = frame[name].astype("Int64")
        return frame


__all__ = [
    "BBox",
    "ObjectAnnotation",
    "ImageAnnotation",
    "AnnotationSet",
    "SkippedFile",
    "classes_in_order",
    "classes_by_count",
    "BOX_OUT_OF_ORDER",
    "EMPTY_BOX",
    "UNSPECIFIED_POSE",
]
