"""``dsxsd stats``: what a dataset holds - counts per class, objects per image, box sizes.

Quantiles rather than means, because box sizes are skewed: a few huge boxes hide many tiny
ones in a mean, and tiny boxes are what breaks crops and training.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from .annotations import AnnotationSet, classes_by_count

QUANTILES: tuple[float, ...] = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def _quantiles(values: list[float]) -> dict[str, float] | None:
    import numpy as np

    if not values:
        return None
    points = np.quantile(np.asarray(values, dtype=float), QUANTILES)
    return {f"q{int(round(q * 100))}": round(float(v), 4) for q, v in zip(QUANTILES, points)}


def dataset_stats(
    annotations: str | os.PathLike[str] | AnnotationSet,
    *,
    format: str | None = None,
    include_boxes: bool = False,
) -> dict[str, Any]:
    """Counts and box-size quantiles of a dataset, as a JSON-ready dict.

    ``classes`` lists the classes with objects, most objects first (ties by name).
    Box quantiles use boxes with positive width and height only (``validate`` reports the
    others); ``aspect`` is width / height. ``include_boxes`` adds the raw widths and
    heights under ``"boxes"`` (what :func:`plot_stats` draws).
    """
    if isinstance(annotations, AnnotationSet):
        dataset = annotations
    else:
        from .formats import read

        dataset = read(annotations, format)
    objects: Counter[str] = Counter()
    images_per_class: Counter[str] = Counter()
    per_image: list[float] = []
    widths, heights, areas, aspects = [], [], [], []
    for image in dataset.images:
        per_image.append(len(image.objects))
        objects.update(obj.label for obj in image.objects)
        images_per_class.update({obj.label for obj in image.objects})
        for obj in image.objects:
            w, h = obj.bbox.width, obj.bbox.height
            if w > 0 and h > 0:
                widths.append(w)
                heights.append(h)
                areas.append(w * h)
                aspects.append(w / h)
    order = classes_by_count(objects)
    stats = {
        "images": len(dataset.images),
        "objects": sum(objects.values()),
        "images_without_objects": sum(1 for n in per_image if n == 0),
        "classes": {c: {"objects": objects[c], "images": images_per_class[c]} for c in order},
        "objects_per_image": _quantiles(per_image),
        "box_width": _quantiles(widths),
        "box_height": _quantiles(heights),
        "box_area": _quantiles(areas),
        "box_aspect": _quantiles(aspects),
    }
    if include_boxes:
        stats["boxes"] = {"width": widths, "height": heights}
    return stats


def plot_stats(stats: dict[str, Any], output: str | os.PathLike[str], *,
               overwrite: bool = False) -> None:
    """Class counts and box width/height histograms in one PNG (needs matplotlib).

    ``stats`` comes from :func:`dataset_stats` with ``include_boxes=True``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .errors import MissingDependencyError

        raise MissingDependencyError(
            'plotting needs matplotlib: pip install "dsxsd[plot]"', file=output
        ) from None
    import io

    from ._io import check_output, write_bytes

    check_output(Path(output), overwrite)
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    names = list(stats["classes"])
    left.bar(range(len(names)), [stats["classes"][n]["objects"] for n in names])
    left.set_xticks(range(len(names)), names, rotation=45, ha="right")
    left.set_title("objects per class")
    middle.hist(stats["boxes"]["width"], bins=30)
    middle.set_title("box width (px)")
    right.hist(stats["boxes"]["height"], bins=30)
    right.set_title("box height (px)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes(output, buffer.getvalue(), overwrite=overwrite)


__all__ = ["dataset_stats", "plot_stats", "QUANTILES"]
