"""From annotated pictures to a searchable similarity model, with the Python API only.

The same steps as ``dsxsd demo``, written out so each call can be copied: draw shapes
labelled as Pascal VOC, convert, crop, make pairs, train, evaluate, predict, embed and
search. Takes a few minutes on a laptop CPU (needs ``pip install "dsxsd[train]"``)::

    python examples/end_to_end.py work/
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import dsxsd
from dsxsd.demo import generate_shapes


def main(work: Path, epochs: int = 10) -> None:
    # 1. Annotations: a folder of LabelImg-style VOC XML files and their images.
    generate_shapes(work / "shapes", images=150, seed=0)

    # 2. Convert VOC -> CSV (any registered pair works the same way).
    annotations = dsxsd.read(work / "shapes" / "annotations", "voc")
    dsxsd.write(annotations, work / "labels.csv")

    # 3. One image per object, in per-class folders, with crops/crops.csv.
    crops = dsxsd.crop(work / "labels.csv", images=work / "shapes" / "images", out=work / "crops", square=True)
    print(f"{crops.crops} crops: {dict(crops.per_class)}")

    # 4. Same/different pairs, split train/val/test without sharing an image.
    dsxsd.make_pairs(crops.manifest, work / "pairs.csv", positives=4, split=(0.7, 0.15, 0.15))

    # 5. Train. TensorFlow is imported only from here on.
    from dsxsd.train import fit
    from dsxsd.train.evaluate import evaluate, evaluate_n_way
    from dsxsd.train.infer import embed, predict, search

    summary = fit(work / "pairs.csv", work / "run", epochs=epochs, image_size=32, width=0.125, lr=3e-4)
    print(f"validation accuracy {summary['val_accuracy']:.3f}")

    # 6. Honest numbers: threshold calibrated on val, measured on test.
    result = evaluate(work / "run", work / "pairs.csv", split="test")
    print(
        f"test accuracy {result.at_threshold.accuracy:.3f} at threshold {result.threshold:.3f}, "
        f"ROC AUC {result.roc_auc:.3f}, EER {result.eer:.3f}"
    )
    one_shot = evaluate_n_way(work / "run", work / "pairs.csv", n_way=5, trials=400, split="test")
    print(f"5-way one-shot accuracy {one_shot.accuracy:.3f} (chance {one_shot.chance:.3f})")

    # 7. Two images -> a score and a verdict at the calibrated threshold.
    images = sorted((work / "crops").glob("*/*.jpg"))
    same = predict(work / "run" / "model.keras", images[0], images[1])
    print(f"{images[0].name} vs {images[1].name}: {same.score:.3f} -> {'same' if same.same else 'different'}")

    # 8. Embed every crop once; a query then costs one tower pass.
    embed(work / "run" / "model.keras", crops.manifest, work / "index.npz")
    for hit in search(work / "index.npz", images[0], k=5):
        print(f"  {hit.rank}. {hit.class_name:<8} {hit.score:.3f}  {hit.path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="dsxsd-")))
