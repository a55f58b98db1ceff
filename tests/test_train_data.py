"""The input pipeline: batches, labels in manifest order, decode-once, caching, checks."""

from __future__ import annotations

import collections
import io
import random

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dsxsd.errors import HostileInputError, ImageDecodeError, ManifestError, MissingImageError, MissingPathError  # noqa: E402
from dsxsd.train import data, load_images, make_dataset  # noqa: E402
from train_support import count_reads, draw_shape, make_shapes_manifest, write_pairs  # noqa: E402,F401

SIZE = 32


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Shapes in four modes (RGB png, L jpg, RGBA png, P gif): all must come out RGB."""
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_manifest(root, per_class=10, positives=2,
                                modes=("RGB", "L", "RGBA", "P"))


def n_train(manifest) -> int:
    return int((pd.read_csv(manifest).split == "train").sum())


def collect(ds):
    lefts, rights, labels = [], [], []
    for (a, b), y in ds:
        lefts.append(a.numpy())
        rights.append(b.numpy())
        labels.append(y.numpy())
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(labels)


def test_batches_line_up_with_manifest_rows(manifest):
    rows = pd.read_csv(manifest)
    train = rows[rows.split == "train"]
    ds = make_dataset(manifest, "train", image_size=SIZE, batch_size=7, shuffle=False)
    shapes = [(tuple(a.shape), tuple(b.shape), tuple(y.shape), a.dtype, y.dtype) for (a, b), y in ds]
    assert shapes[0] == ((7, SIZE, SIZE, 3), (7, SIZE, SIZE, 3), (7,), tf.uint8, tf.float32)
    full, rest = divmod(len(train), 7)
    assert rest and [s[2] for s in shapes] == [(7,)] * full + [(rest,)]  # the last batch partial
    assert ds.cardinality().numpy() == full + 1
    dropped = make_dataset(manifest, "train", image_size=SIZE, batch_size=7, shuffle=False,
                           drop_remainder=True)
    assert [int(y.shape[0]) for _, y in dropped] == [7] * full
    assert dropped.cardinality().numpy() == full
    left, right, labels = collect(ds)
    np.testing.assert_array_equal(labels, train.label.to_numpy(np.float32))
    np.testing.assert_array_equal(labels, (train.left_class == train.right_class).to_numpy(np.float32))
    # each side holds exactly its row's image, decoded as load_images decodes it
    root = manifest.parent
    np.testing.assert_array_equal(left, load_images([root / p for p in train.left], SIZE))
    np.testing.assert_array_equal(right, load_images([root / p for p in train.right], SIZE))
    assert left.min() >= 0 and left.max() <= 255 and left.max() > 1  # raw pixels, not scaled


def test_every_image_mode_and_format_becomes_rgb(tmp_path):
    rng = random.Random(0)
    base = draw_shape("circle", rng)
    paths = []
    for name, image in [("a.png", base), ("b.jpg", base.convert("L")), ("c.png", base.convert("RGBA")),
                        ("d.bmp", base), ("e.gif", base.convert("P"))]:
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    # an animated GIF: its first frame is the image
    frames = [base.convert("P"), Image.new("P", base.size, 3)]
    frames[0].save(tmp_path / "f.gif", save_all=True, append_images=frames[1:])
    paths.append(tmp_path / "f.gif")
    out = load_images(paths, SIZE)
    assert out.shape == (6, SIZE, SIZE, 3) and out.dtype == np.float32
    grey = out[1]
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])  # grey repeated over RGB
    np.testing.assert_allclose(out[3], out[0], atol=1)  # bmp == png, lossless both
    np.testing.assert_allclose(out[5], out[4], atol=1)  # first frame of the animation


def test_letterbox_keeps_the_aspect_ratio(tmp_path):
    Image.new("RGB", (64, 16), (255, 255, 255)).save(tmp_path / "wide.png")
    stretch, letterbox = (load_images([tmp_path / "wide.png"], SIZE, resize=m)[0] for m in ("stretch", "letterbox"))
    assert stretch.min() == 255  # white everywhere
    rows_white = (letterbox == 255).all(axis=(1, 2))
    assert rows_white.sum() == 8 and letterbox[0].max() == 0 and letterbox[-1].max() == 0  # black bands
    with pytest.raises(ValueError, match="resize"):
        load_images([tmp_path / "wide.png"], SIZE, resize="crop")


def test_each_image_is_decoded_once_per_epoch_without_cache(manifest, count_reads):
    rows = pd.read_csv(manifest)
    train = rows[rows.split == "train"]
    distinct = set(train.left) | set(train.right)
    assert 2 * len(train) > len(distinct)  # images are shared between pairs
    ds = make_dataset(manifest, "train", image_size=SIZE, batch_size=8, cache="none", check=False)
    for _ in range(2):
        collect(ds)
    assert sum(count_reads.values()) == 2 * len(distinct)
    assert set(count_reads.values()) == {2}


def test_memory_cache_decodes_once_for_the_run(manifest, count_reads):
    ds = make_dataset(manifest, "train", image_size=SIZE, batch_size=8, cache="memory", check=False)
    first = collect(ds)
    second = collect(ds)
    assert set(count_reads.values()) == {1}
    np.testing.assert_array_equal(np.sort(first[2]), np.sort(second[2]))


def test_disk_cache_is_reused_by_a_later_dataset(manifest, tmp_path, count_reads):
    kwargs = dict(image_size=SIZE, batch_size=8, cache=tmp_path / "cache", shuffle=False, check=False)
    first = collect(make_dataset(manifest, "val", **kwargs))
    reads = sum(count_reads.values())
    assert reads > 0 and list((tmp_path / "cache").glob("val-*.u8"))
    second = collect(make_dataset(manifest, "val", **kwargs))
    assert sum(count_reads.values()) == reads  # read from the cache, not the images
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # another image size is another cache, never a stale one
    third = collect(make_dataset(manifest, "val", **{**kwargs, "image_size": 40}))
    assert third[0].shape[1] == 40 and sum(count_reads.values()) > reads


def test_shuffle_is_seeded_and_changes_every_epoch(manifest):
    def order(ds):
        return collect(ds)[0].reshape(n_train(manifest), -1).sum(axis=1)  # a fingerprint per pair

    ds = make_dataset(manifest, "train", image_size=SIZE, batch_size=8, seed=3)
    epoch1, epoch2 = order(ds), order(ds)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(np.sort(epoch1), np.sort(epoch2))  # the same pairs
    again = make_dataset(manifest, "train", image_size=SIZE, batch_size=8, seed=3)
    np.testing.assert_array_equal(order(again), epoch1)
    plain = make_dataset(manifest, "train", image_size=SIZE, batch_size=8, shuffle=False)
    assert not np.array_equal(order(plain), epoch1)
    val = make_dataset(manifest, "val", image_size=SIZE, batch_size=8)  # val keeps row order
    np.testing.assert_array_equal(collect(val)[2], pd.read_csv(manifest).query("split == 'val'").label)


def test_augmentation_changes_pixels_not_labels(manifest):
    kwargs = dict(image_size=SIZE, batch_size=8, shuffle=False)
    plain = collect(make_dataset(manifest, "train", **kwargs))
    augmented = collect(make_dataset(manifest, "train", augment=True, **kwargs))
    np.testing.assert_array_equal(plain[2], augmented[2])
    assert augmented[0].shape == plain[0].shape and augmented[0].dtype == np.uint8
    # int16: differences of uint8 images would wrap around
    plain, augmented = [[side.astype(np.int16) for side in run] for run in (plain, augmented)]
    changed = np.abs(augmented[0] - plain[0]).reshape(n_train(manifest), -1).max(axis=1) > 1
    assert changed.mean() > 0.9
    flipped = [np.allclose(a, p[:, ::-1], atol=60) for a, p in zip(augmented[0], plain[0])]
    assert 0 < sum(flipped) < n_train(manifest)  # some flipped, some not


def test_repeat_makes_the_training_stream_endless(manifest):
    ds = make_dataset(manifest, "train", image_size=SIZE, batch_size=8, repeat=True)
    n = n_train(manifest)
    assert n % 8 == 0
    labels = np.concatenate([y.numpy() for _, y in ds.take(3 * n // 8)])  # three epochs
    assert len(labels) == 3 * n
    np.testing.assert_array_equal(np.sort(labels[:n]), np.sort(labels[-n:]))


def test_missing_images_are_listed_before_anything_runs(tmp_path):
    make_shapes_manifest(tmp_path, per_class=6, positives=1)
    rows = pd.read_csv(tmp_path / "pairs.csv")
    gone = sorted(set(rows.left) | set(rows.right))[:7]
    for p in gone:
        (tmp_path / p).unlink()
    with pytest.raises(MissingImageError) as info:
        make_dataset(tmp_path / "pairs.csv", "train", image_size=SIZE)
    message = str(info.value)
    assert str(tmp_path / "pairs.csv") in message
    train_gone = [p for p in gone if p in set(rows[rows.split == "train"].left) | set(rows[rows.split == "train"].right)]
    assert f"{len(train_gone)} images missing: " in message
    shown = [p for p in train_gone if p in message]
    assert len(shown) == min(5, len(train_gone))
    if len(train_gone) > 5:
        assert f"and {len(train_gone) - 5} more" in message
    assert "(row " in message


def test_undecodable_images_are_listed(tmp_path):
    manifest = make_shapes_manifest(tmp_path, per_class=6, positives=1)
    rows = pd.read_csv(manifest)
    victims = sorted(set(rows[rows.split == "train"].left))[:2]
    (tmp_path / victims[0]).write_bytes(b"this is not an image")
    good = io.BytesIO()
    draw_shape("square", random.Random(1)).save(good, "PNG")
    (tmp_path / victims[1]).write_bytes(good.getvalue()[: len(good.getvalue()) // 2])  # header fine, data cut
    with pytest.raises(ImageDecodeError) as info:
        make_dataset(manifest, "train", image_size=SIZE)
    assert "2 images cannot be decoded: " in str(info.value)
    assert all(v in str(info.value) for v in victims)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    Image.new("RGB", (40, 40)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(HostileInputError, match="decompression bomb"):
        load_images([tmp_path / "big.png"], SIZE)


def test_load_images_names_the_bad_file(tmp_path):
    with pytest.raises(MissingImageError) as info:
        load_images([tmp_path / "nope.png"], SIZE)
    assert info.value.file == str(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageDecodeError) as info:
        load_images([tmp_path / "bad.jpg"], SIZE)
    assert info.value.file == str(tmp_path / "bad.jpg")
    assert load_images([], SIZE).shape == (0, SIZE, SIZE, 3)


def test_bad_manifests_are_refused(tmp_path):
    with pytest.raises(MissingPathError, match="no such file or folder"):
        make_dataset(tmp_path / "absent.csv", "train")
    manifest = make_shapes_manifest(tmp_path, per_class=6, positives=1)
    with pytest.raises(ManifestError, match="no pairs in split 'holdout'"):
        make_dataset(manifest, "holdout")
    bad = write_pairs(tmp_path / "bad.csv", [("a.png", "b.png", 7, "x", "y", "train")])
    with pytest.raises(ManifestError, match="label") as info:
        make_dataset(bad, "train")
    assert str(bad) in str(info.value)


# ------------------------------------------------------------- resampled partners

# Train: class a of 4 images, b of 1 (a self-pair: nothing else to draw), c of 3, d of 2.
# Val and test hold images of a and c too: a partner drawn from them would be a leak.
SPLIT_IMAGES = {
    "train": {"a": 4, "b": 1, "c": 3, "d": 2},
    "val": {"a": 2, "c": 1},
    "test": {"a": 1, "c": 1},
}
TRAIN_PAIRS = [("a0", "a1", 1), ("a2", "a3", 1), ("b0", "b0", 1), ("c0", "c1", 1), ("d0", "d1", 1),
               ("a0", "b0", 0), ("b0", "c2", 0), ("c0", "d0", 0), ("d1", "a3", 0), ("a1", "c2", 0),
               ("c1", "a2", 0), ("d0", "b0", 0)]


@pytest.fixture(scope="module")
def coloured(tmp_path_factory):
    """A hand-made manifest over one-colour images whose red value names the image:
    returns (manifest, red value -> image name)."""
    root = tmp_path_factory.mktemp("coloured")
    names = [f"{prefix}{cls}{i}" for prefix, split in (("", "train"), ("v", "val"), ("t", "test"))
             for cls, n in SPLIT_IMAGES[split].items() for i in range(n)]
    red = {}
    for k, name in enumerate(names):
        red[10 * k + 5] = name
        Image.new("RGB", (20, 20), (10 * k + 5, 100, 50)).save(root / f"{name}.png")
    rows = [(f"{a}.png", f"{b}.png", y, a[0], b[0], "train") for a, b, y in TRAIN_PAIRS]
    rows += [("va0.png", "va1.png", 1, "a", "a", "val"), ("va0.png", "vc0.png", 0, "a", "c", "val"),
             ("ta0.png", "tc0.png", 0, "a", "c", "test")]
    return write_pairs(root / "pairs.csv", rows), red


def names_of(side, red) -> np.ndarray:
    """The image names a batch side holds, [pairs]."""
    return np.array([red[int(v)] for v in side[:, 0, 0, 0]])


def passes(ds, red, n, per_pass=len(TRAIN_PAIRS)):
    """The first ``n`` passes of an endless dataset as (left, right, label) name arrays [n, pairs]."""
    lefts, rights, labels = [], [], []
    for (a, b), y in ds.take(n * per_pass // 4):
        lefts.append(names_of(a.numpy(), red))
        rights.append(names_of(b.numpy(), red))
        labels.append(y.numpy())
    return [np.concatenate(x).reshape(n, per_pass) for x in (lefts, rights, labels)]


def test_resampled_partners_stay_in_their_split_and_class_relation(coloured):
    manifest, red = coloured
    ds = make_dataset(manifest, "train", image_size=SIZE, batch_size=4, shuffle=False, repeat=True,
                      resample_negatives=True, resample_positives=True)
    left, right, label = passes(ds, red, 40)
    # the left side and the labels are the manifest's, pass after pass (no shuffle here)
    assert (left == np.array([a for a, _, _ in TRAIN_PAIRS])).all()
    assert (label == np.array([y for _, _, y in TRAIN_PAIRS], np.float32)).all()
    partners = {}
    for i, (a, _, y) in enumerate(TRAIN_PAIRS):
        partners.setdefault((a, y), set()).update(right[:, i])
    train = {f"{c}{i}" for c, n in SPLIT_IMAGES["train"].items() for i in range(n)}
    # over 40 passes each left image meets every possible partner, and nothing else
    for (a, y), seen in partners.items():
        same = {img for img in train if img[0] == a[0]}
        expected = same - {a} if y == 1 else train - same
        assert seen == (expected or {a}), (a, y)  # b0, alone in its class, keeps its self-pair
    assert partners[("d0", 1)] == {"d1"}  # a class of two: the other one, every pass
    assert not (right[0] == right[1]).all()  # each pass draws anew
    # draws are uniform: a0's six candidates of other classes each come up about 40/6 times
    counts = collections.Counter(right[:, TRAIN_PAIRS.index(("a0", "b0", 0))])
    assert min(counts.values()) >= 2


def test_negatives_and_positives_are_resampled_separately(coloured):
    manifest, red = coloured
    kwargs = dict(image_size=SIZE, batch_size=4, shuffle=False, repeat=True)
    fixed = np.array([b for _, b, _ in TRAIN_PAIRS])
    positive = np.array([y for _, _, y in TRAIN_PAIRS]) == 1
    _, right, _ = passes(make_dataset(manifest, "train", resample_negatives=True, **kwargs), red, 5)
    assert (right[:, positive] == fixed[positive]).all() and not (right[:, ~positive] == fixed[~positive]).all()
    _, right, _ = passes(make_dataset(manifest, "train", resample_positives=True, **kwargs), red, 5)
    assert (right[:, ~positive] == fixed[~positive]).all() and not (right[:, positive] == fixed[positive]).all()
    _, right, _ = passes(make_dataset(manifest, "train", **kwargs), red, 2)
    assert (right == fixed).all()  # off by default
    val = make_dataset(manifest, "val", image_size=SIZE, batch_size=4)  # fit resamples train only
    assert names_of(collect(val)[1], red).tolist() == ["va1", "vc0"]


def test_resampling_is_a_function_of_seed_and_pass(coloured):
    manifest, red = coloured

    def stream(seed=7, resample=True, start=0):
        pairs = data.pair_table(data.read_manifest(manifest), "train", manifest)
        ds = data.pairs_dataset(pairs, image_size=SIZE, batch_size=4, shuffle=True, seed=seed, repeat=True,
                                start=start, resample_negatives=resample, resample_positives=resample)
        return passes(ds, red, 3 - start // 3)

    first = stream()
    for got, want in zip(stream(), first):  # another dataset, built separately
        np.testing.assert_array_equal(got, want)
    from_manifest = make_dataset(manifest, "train", image_size=SIZE, batch_size=4, seed=7, repeat=True,
                                 resample_negatives=True, resample_positives=True)
    for got, want in zip(passes(from_manifest, red, 3), first):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(stream(start=3), first):  # one pass (3 batches) in: passes 2 and 3
        np.testing.assert_array_equal(got, want[1:])
    # resampling leaves the shuffled order, so the left side and labels, as they were
    plain = stream(resample=False)
    np.testing.assert_array_equal(first[0], plain[0])
    np.testing.assert_array_equal(first[2], plain[2])
    assert not (first[1] == plain[1]).all()
    assert not (stream(seed=8)[1] == first[1]).all()
    # without repeat, each iteration (each epoch of a model.fit) draws new partners
    once = make_dataset(manifest, "train", image_size=SIZE, batch_size=12, shuffle=False,
                        resample_negatives=True, resample_positives=True)
    epochs = [names_of(collect(once)[1], red) for _ in range(2)]
    assert not (epochs[0] == epochs[1]).all()


def test_an_image_of_two_classes_is_refused(tmp_path):
    for name in ("x", "y", "z"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    manifest = write_pairs(tmp_path / "pairs.csv", [("x.png", "y.png", 0, "cat", "dog", "train"),
                                                    ("z.png", "y.png", 1, "cow", "cow", "train")])
    with pytest.raises(ManifestError) as info:
        make_dataset(manifest, "train", image_size=SIZE)
    assert str(info.value) == (f"{manifest}, row 3: image {tmp_path / 'y.png'} is class 'cow' here "
                               "but 'dog' in row 2")
