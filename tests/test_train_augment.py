"""Augmentation (``--augment basic|crops``): what it returns, that a seed fixes it, that
epochs differ, and that ``crops`` flips only when asked to."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dsxsd.train import augment, data  # noqa: E402
from train_support import make_shapes_manifest  # noqa: E402

# crops' every random operation switched off: what is left is the resampling, and flips.
IDENTITY = dict(area=(1.0, 1.0), ratio=(1.0, 1.0), rotation=0.0, brightness=0.0, contrast=(1.0, 1.0),
                saturation=(1.0, 1.0))


@pytest.fixture(scope="module")
def images():
    return tf.constant(np.random.default_rng(0).integers(0, 256, (8, 24, 24, 3)), tf.float32)


@pytest.mark.parametrize("policy", ["basic", "crops"])
def test_each_policy_keeps_shape_dtype_and_range_and_a_seed_fixes_it(images, policy):
    seed = tf.constant([3, 4])
    out = augment.augment_batch(images, seed, policy)
    assert out.shape == images.shape and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    np.testing.assert_array_equal(out.numpy(), augment.augment_batch(images, seed, policy).numpy())
    other = augment.augment_batch(images, tf.constant([3, 5]), policy).numpy()
    changed = np.abs(other - out.numpy()).reshape(len(out), -1).max(axis=1) > 1
    assert changed.all()  # another seed (another batch or epoch) changes every image
    assert (np.abs(out.numpy() - images.numpy()).reshape(len(out), -1).max(axis=1) > 1).all()
    small = augment.augment_uint8(tf.cast(images, tf.uint8), seed, policy)
    assert small.dtype == tf.uint8 and small.shape == images.shape
    np.testing.assert_array_equal(small.numpy(), np.round(out.numpy()).astype(np.uint8))


def test_none_returns_the_images_and_an_unknown_policy_is_refused(images):
    np.testing.assert_array_equal(augment.augment_batch(images, tf.constant([1, 2]), "none").numpy(), images.numpy())
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'; expected one of none, basic, crops"):
        augment.augment_batch(images, tf.constant([1, 2]), "rotate")


def test_crops_flips_only_when_asked(images):
    seed = tf.constant([7, 8], tf.int64)
    # Its random operations off, crops gives back the images: the affine map is exact.
    np.testing.assert_allclose(augment.crops(images, seed, **IDENTITY).numpy(), images.numpy(), atol=1e-3)
    flipped = augment.crops(images, seed, flips=True, **IDENTITY).numpy()
    mirrored = [np.allclose(f, x[:, ::-1], atol=1e-3) for f, x in zip(flipped, images.numpy())]
    kept = [np.allclose(f, x, atol=1e-3) for f, x in zip(flipped, images.numpy())]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)
    assert augment.FLIPS == {"none": False, "basic": True, "crops": False}


def test_crops_zooms_and_turns_the_object(images):
    # A white square in the middle of black: a random resized crop keeps it (a part of the
    # image scaled back up) but moves its edges; the rotation tilts them.
    square = np.zeros((4, 32, 32, 3), np.float32)
    square[:, 10:22, 10:22] = 255.0
    out = augment.crops(tf.constant(square), tf.constant([1, 1], tf.int64), brightness=0.0, contrast=(1.0, 1.0),
                        saturation=(1.0, 1.0)).numpy()
    for image in out:
        assert image[16, 16].min() > 200  # the object is still there
        assert not np.array_equal(image > 127, square[0] > 127)  # but not where it was


def test_the_pipeline_augments_each_epoch_anew_and_the_same_for_a_seed(tmp_path):
    manifest = make_shapes_manifest(tmp_path, per_class=6, positives=1)
    table = data.read_manifest(manifest)
    pairs = data.pair_table(table, "train", manifest)
    n = pairs.batches(4)

    def stream(**kwargs):
        ds = data.pairs_dataset(pairs, image_size=32, batch_size=4, augment="crops", shuffle=False, seed=1,
                                repeat=True, **kwargs)
        return [a.numpy() for (a, _), _ in ds.take(2 * n)]

    first, again = stream(), stream()
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    # A stream started an epoch in (a resumed run) continues exactly where the first one was.
    for x, y in zip(stream(start=n)[:n], first[n:]):
        np.testing.assert_array_equal(x, y)
    plain = [a.numpy() for (a, _), _ in data.pairs_dataset(
        pairs, image_size=32, batch_size=4, shuffle=False, seed=1, repeat=True).take(2 * n)]
    # Unshuffled, both epochs hold the same images in the same order; augmented, each
    # epoch changes every image, and differently.
    plain = np.concatenate(plain).astype(np.int16)
    np.testing.assert_array_equal(plain[: len(plain) // 2], plain[len(plain) // 2:])
    epoch1, epoch2 = (np.concatenate(half).astype(np.int16) for half in (first[:n], first[n:]))
    for augmented in (epoch1, epoch2):
        assert (np.abs(augmented - plain[: len(augmented)]).reshape(len(augmented), -1).max(axis=1) > 1).all()
    assert (np.abs(epoch1 - epoch2).reshape(len(epoch1), -1).max(axis=1) > 1).all()
