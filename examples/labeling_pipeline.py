"""A labeling pipeline that calls dsxsd on the fly.

The usual loop of a team that labels its own data:

1. images arrive in batches (here: drawn with Pillow, standing in for a camera);
2. a pre-labeler (here: a deliberately sloppy stand-in for a detector) proposes boxes,
   which are written as Pascal VOC after every batch, so LabelImg can open the folder for
   review at any time; each write is atomic, so LabelImg never sees half a batch;
3. the reviewed folder is read back, checked and exported for training (JSON for the
   archive, CSV in the TensorFlow Object Detection API's column order).

Only the Python API is used: ``dsxsd.read``, ``dsxsd.write`` and the annotation
dataclasses. Run it with a work folder (default: a new temporary folder)::

    python examples/labeling_pipeline.py work/
"""

from __future__ import annotations

import dataclasses
import random
import sys
import tempfile
from pathlib import Path

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd.demo import draw_image

BATCHES = 3
PER_BATCH = 4


def prelabel(shapes: list[tuple[str, tuple[int, int, int, int]]], rng: random.Random) -> list[ObjectAnnotation]:
    """A stand-in detector: right boxes, but it calls one star in three a 'starfish'."""
    objects = []
    for name, box in shapes:
        if name == "star" and rng.random() < 1 / 3:
            name = "starfish"
        objects.append(ObjectAnnotation(label=name, bbox=BBox(*box)))
    return objects


def review(annotations: AnnotationSet) -> AnnotationSet:
    """What the human reviewer fixes in LabelImg, done here in code: the wrong class."""
    fixed = []
    for image in annotations.images:
        objects = [
            dataclasses.replace(o, label="star") if o.label == "starfish" else o
            for o in image.objects
        ]
        fixed.append(dataclasses.replace(image, objects=tuple(objects)))
    return AnnotationSet(tuple(fixed))


def main(work: Path) -> None:
    rng = random.Random(0)
    images_dir = work / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    prelabels = work / "prelabels"
    labeled: list[ImageAnnotation] = []

    for batch in range(BATCHES):
        for _ in range(PER_BATCH):
            picture, shapes = draw_image(rng, (160, 120), rng.randint(1, 3), (24, 40))
            filename = f"frame_{len(labeled):04d}.jpg"
            picture.save(images_dir / filename, quality=92)
            labeled.append(
                ImageAnnotation(
                    filename=filename, width=160, height=120, depth=3,
                    objects=tuple(prelabel(shapes, rng)), folder="images",
                    path=str((images_dir / filename).resolve()),
                )
            )
        # The whole folder is rewritten atomically: readers see the old or the new one.
        dsxsd.write(AnnotationSet(tuple(labeled)), prelabels, "voc", overwrite=batch > 0)
        print(f"batch {batch + 1}: {len(labeled)} images pre-labelled in {prelabels}/")

    # ... the reviewer opens prelabels/ in LabelImg (Open Dir: images/, Change Save Dir:
    # prelabels/) and corrects it. Then the pipeline picks the result up:
    reviewed = review(dsxsd.read(prelabels, "voc"))
    for target in (work / "labels.json", work / "labels.csv"):
        dsxsd.write(reviewed, target, overwrite=True)  # the format follows the suffix
        again = dsxsd.read(target)
        print(f"wrote {len(again.images)} images, {again.num_objects} objects to {target}")
    print(f"classes: {', '.join(reviewed.classes)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="labeling-")))
