"""Data for the trainer's tests (tests/test_train_*.py): shape images drawn with Pillow
and a pairs manifest over them made by :func:`dsxsd.make_pairs`."""

from __future__ import annotations

import collections
import csv
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
IMAGE_SIZE = 32
WIDTH = 0.125


def draw_shape(shape: str, rng: random.Random, size: int = 40) -> Image.Image:
    """One filled shape of random size, position and colour on a light background."""
    image = Image.new("RGB", (size, size), tuple(rng.randrange(200, 256) for _ in range(3)))
    d = ImageDraw.Draw(image)
    side = rng.randint(int(size * 0.6), size - 6)
    x, y = rng.randint(2, size - side - 2), rng.randint(2, size - side - 2)
    colour = tuple(rng.randrange(0, 150) for _ in range(3))
    if shape == "circle":
        d.ellipse((x, y, x + side, y + side), fill=colour)
    elif shape == "square":
        d.rectangle((x, y, x + side, y + side), fill=colour)
    elif shape == "triangle":
        d.polygon([(x + side / 2, y), (x + side, y + side), (x, y + side)], fill=colour)
    else:
        raise ValueError(shape)
    return image


def make_shape_tree(root: Path, per_class: int, seed: int = 0, shapes=SHAPES, modes=("RGB",)) -> dict[str, list[str]]:
    """``root/<shape>/<shape>_<i>.png``; returns class -> relative paths."""
    rng = random.Random(seed)
    tree: dict[str, list[str]] = {}
    for shape in shapes:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mode = modes[i % len(modes)]
            ext = {"RGB": "png", "L": "jpg", "RGBA": "png", "P": "gif"}.get(mode, "png")
            rel = f"{shape}/{shape}_{i:03d}.{ext}"
            draw_shape(shape, rng).convert(mode).save(root / rel)
            tree.setdefault(shape, []).append(rel)
    return tree


def write_pairs(path: Path, rows: list[tuple[str, str, int, str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["left", "right", "label", "left_class", "right_class", "split"])
        writer.writerows(rows)
    return path


def make_shapes_manifest(
    root: Path, per_class: int = 20, positives: int = 2, seed: int = 0, modes=("RGB",)
) -> Path:
    """Shape images under ``root/shapes/<class>/`` and ``root/pairs.csv`` made by
    :func:`dsxsd.make_pairs`: ``positives`` same-class pairs per image, as many
    different-class ones, images split 60/20/20 into train/val/test."""
    import dsxsd

    make_shape_tree(root / "shapes", per_class, seed, modes=modes)
    dsxsd.make_pairs(root / "shapes", root / "pairs.csv", positives=positives, split="0.6,0.2,0.2", seed=seed)
    return root / "pairs.csv"


@pytest.fixture
def count_reads(monkeypatch):
    """Files the input pipeline reads, per path: ``data.read_file`` counted."""
    import tensorflow as tf

    from dsxsd.train import data

    reads = collections.Counter()

    def counting_read(path):
        def read(p):
            reads[p.numpy().decode()] += 1
            return tf.io.read_file(p)

        out = tf.py_function(read, [path], tf.string)
        out.set_shape([])
        return out

    monkeypatch.setattr(data, "read_file", counting_read)
    return reads


def interrupt_at(epoch: int):
    """A Keras callback that raises Ctrl-C as epoch ``epoch`` (1-based) begins: the epochs
    before it are saved."""
    import keras

    class InterruptAt(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index + 1 == epoch:
                raise KeyboardInterrupt

    return InterruptAt()


def write_legacy_vgg16_weights(path: Path, vgg, names_reversed: bool = False) -> Path:
    """``vgg``'s weights in the layout of keras.applications' download
    (``vgg16_..._notop.h5``): one group per layer named after it, ``/<layer>/<layer>/kernel:0``,
    listed in the root's ``layer_names`` (reversed on request: the order must not matter)."""
    import h5py

    names = [layer.name for layer in vgg.layers]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in (names[::-1] if names_reversed else names)]
        for layer in vgg.layers:
            group = f.create_group(layer.name)
            weights = layer.get_weights()
            weight_names = [f"{layer.name}/{w}:0" for w in ("kernel", "bias")][: len(weights)]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for w, value in zip(weight_names, weights):
                group.create_dataset(w, data=value)
    return path
