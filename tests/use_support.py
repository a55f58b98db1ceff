"""Data for the tests of evaluate/predict/embed/search (tests/test_use_*.py).

Small images of shapes drawn with Pillow, in every layout the commands take: a
class-folder tree, a crops manifest and a pairs manifest with train/val/test splits; and a
tiny Siamese model saved as a run folder. Images deliberately come in several sizes and
modes (RGB, L, RGBA, P), which the commands must all accept.
"""

from __future__ import annotations

import csv
import json
import random
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross")
PER_CLASS = 6
IMAGE_SIZE = 32
WIDTH = 0.125
MODES = ("RGB", "L", "RGBA", "P")


def draw(shape: str, size: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (size, size + rng.randint(-4, 8)), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(image)
    w, h = image.size
    m = max(2, size // 8)
    colour = tuple(rng.randrange(256) for _ in range(3))
    if shape == "circle":
        d.ellipse((m, m, w - m, h - m), fill=colour)
    elif shape == "square":
        d.rectangle((m, m, w - m, h - m), fill=colour)
    elif shape == "triangle":
        d.polygon([(w / 2, m), (w - m, h - m), (m, h - m)], fill=colour)
    else:
        d.rectangle((m, h / 2 - m, w - m, h / 2 + m), fill=colour)
        d.rectangle((w / 2 - m, m, w / 2 + m, h - m), fill=colour)
    return image


def make_tree(root: Path, seed: int = 0) -> list[tuple[str, str]]:
    """``root/<class>/<class>_<i>.<ext>``; returns ``(relative path, class)`` rows."""
    rng = random.Random(seed)
    rows = []
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            mode = MODES[i % len(MODES)]
            image = draw(name, rng.choice((24, 40, 57)), rng).convert(mode)
            ext = "jpg" if mode in ("RGB", "L") else "png"
            relative = f"{name}/{name}_{i}.{ext}"
            image.save(root / relative)
            rows.append((relative, name))
    return rows


def write_crops_manifest(root: Path, rows: list[tuple[str, str]]) -> Path:
    path = root / "crops.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "class", "source", "object_index", "xmin", "ymin", "xmax", "ymax"])
        for relative, name in rows:
            writer.writerow([relative, name, f"src/{name}.jpg", 0, 0, 0, 10, 10])
    return path


def write_pairs_manifest(root: Path, rows: list[tuple[str, str]]) -> Path:
    """Images 0-1 of each class in test, 2-3 in val, 4-5 in train; within each split
    every same-class pair and the different-class pairs of neighbouring classes."""
    by_split: dict[str, list[tuple[str, str]]] = {"test": [], "val": [], "train": []}
    for relative, name in rows:
        index = int(relative.rsplit("_", 1)[1].split(".")[0])
        by_split[("test", "test", "val", "val", "train", "train")[index]].append((relative, name))
    out = []
    for split, items in by_split.items():
        for i, (a, ca) in enumerate(items):
            for b, cb in items[i + 1 :]:
                if ca == cb or abs(CLASSES.index(ca) - CLASSES.index(cb)) == 1:
                    out.append((a, b, int(ca == cb), ca, cb, split))
    path = root / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["left", "right", "label", "left_class", "right_class", "split"])
        writer.writerows(out)
    return path


def make_run(run: Path, seed: int = 0) -> Path:
    """A tiny untrained model saved as ``run/model.keras`` with a ``config.json``."""
    import keras

    from dsxsd.train.network import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(image_size=IMAGE_SIZE, width=WIDTH)
    # An untrained head scores every pair about 0.5; a steeper one spreads the scores over
    # (0, 1), so that orderings and thresholds in the tests are not decided by rounding.
    score = model.get_layer("score")
    kernel, bias = score.get_weights()
    score.set_weights([kernel * 20000.0, bias])
    run.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Keras' saving calls np.array(tensor), which numpy 2 flags; not dsxsd's concern.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        model.save(run / "model.keras")
    config = {"format": "dsxsd.run", "image_size": IMAGE_SIZE, "width": WIDTH, "resize": "stretch"}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return run / "model.keras"


class Workspace:
    """Everything the use tests share: made once per session (a model costs seconds)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.rows = make_tree(self.data)
        self.crops = write_crops_manifest(self.data, self.rows)
        self.pairs = write_pairs_manifest(self.data, self.rows)
        self.model_path = make_run(root / "run")
        self.run = self.model_path.parent

    @property
    def images(self) -> list[Path]:
        return [self.data / relative for relative, _ in self.rows]

    def keras_model(self):
        import keras

        if not hasattr(self, "_model"):
            self._model = keras.models.load_model(self.model_path)
        return self._model

    def reference_scores(self, left, right):
        """What the full model says of these pairs, fed by load_images: the ground truth
        every faster path (tower once, head vectorised) must agree with."""
        import numpy as np

        from dsxsd.train import load_images

        a = load_images([str(p) for p in left], IMAGE_SIZE)
        b = load_images([str(p) for p in right], IMAGE_SIZE)
        return np.asarray(self.keras_model().predict([a, b], verbose=0)).reshape(-1)


def fresh_run(workspace: Workspace, target: Path) -> Path:
    """A copy of the shared run folder, for tests that write into it."""
    import shutil

    shutil.copytree(workspace.run, target)
    for name in ("metrics.json", "roc.png", "scores.png"):
        (target / name).unlink(missing_ok=True)
    return target


_SHARED: dict[str, Workspace] = {}


@pytest.fixture()
def workspace(tmp_path_factory) -> Workspace:
    """One :class:`Workspace` for the whole session, whichever test file asks first."""
    if "workspace" not in _SHARED:
        _SHARED["workspace"] = Workspace(tmp_path_factory.mktemp("use"))
    return _SHARED["workspace"]
