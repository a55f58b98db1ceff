"""make-pairs: the pairs manifest, its guarantees, its errors and its command."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dsxsd
from dsxsd._schemas import load_schema
from dsxsd.cli import main
from dsxsd.errors import ManifestError, MissingImageError, MissingPathError, OutputExistsError, UsageError
from dsxsd.manifests import CROPS_COLUMNS, PAIRS_COLUMNS, MissingManifestFileError
from dsxsd.pairs import make_pairs, parse_split, read_pairs, split_crops

# ------------------------------------------------------------------------------ helpers


def crops_frame(sizes: dict[str, int], sources: int | None = None) -> pd.DataFrame:
    """``sizes`` images per class; with ``sources``, crop i comes from source i % sources."""
    rows = []
    for name, count in sizes.items():
        for i in range(count):
            rows.append({"path": f"{name}/img{i}_0.png", "class": name})
    frame = pd.DataFrame(rows, columns=["path", "class"])
    if sources is not None:
        frame["source"] = [f"/data/images/{i % sources}.jpg" for i in range(len(frame))]
    return frame


def write_crops(folder: Path, frame: pd.DataFrame, text: str | None = None) -> Path:
    """A crops.csv as ``dsxsd crop`` writes it (all eight columns), or ``text`` verbatim."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crops.csv"
    if text is not None:
        path.write_bytes(text.encode("utf-8"))
        return path
    full = pd.DataFrame(
        {
            "path": frame["path"],
            "class": frame["class"],
            "source": frame["source"] if "source" in frame else "/data/images/x.jpg",
            "object_index": 0,
            "xmin": 1,
            "ymin": 2,
            "xmax": 30,
            "ymax": 40,
        },
        columns=list(CROPS_COLUMNS),
    )
    full.to_csv(path, index=False, lineterminator="\n")
    return path


def touch_images(folder: Path, frame: pd.DataFrame) -> None:
    for relative in frame["path"]:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")


def unordered(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [tuple(sorted(p)) for p in zip(frame["left"], frame["right"])]


def cross_pairs(counts: Counter) -> int:
    n = sum(counts.values())
    return (n * n - sum(c * c for c in counts.values())) // 2


def check_guarantees(
    pairs: pd.DataFrame,
    crops: pd.DataFrame,
    *,
    positives: int,
    ratio: float,
    split: tuple[float, float, float],
    split_by: str,
    seed: int,
) -> None:
    """Every promise of the pairs manifest, checked against the crops it came from."""
    class_of = dict(zip(crops["path"], crops["class"]))
    assigned = dict(zip(crops["path"], split_crops(crops, split, split_by, seed)))

    assert list(pairs.columns) == list(PAIRS_COLUMNS)
    # Label 1 exactly when the classes match, and the classes are the images' own.
    assert (pairs["left_class"] == pairs["left"].map(class_of)).all()
    assert (pairs["right_class"] == pairs["right"].map(class_of)).all()
    assert ((pairs["left_class"] == pairs["right_class"]) == (pairs["label"] == 1)).all()
    assert set(pairs["label"]) <= {0, 1}
    # No self-pairs, no duplicate unordered pair.
    assert (pairs["left"] != pairs["right"]).all()
    keys = unordered(pairs)
    assert len(set(keys)) == len(keys)
    # Both sides in the pair's split, as split_crops assigns it: so no image (source,
    # class) is in two splits.
    assert (pairs["left"].map(assigned) == pairs["split"]).all()
    assert (pairs["right"].map(assigned) == pairs["split"]).all()
    seen: dict[str, str] = {}
    for side in ("left", "right"):
        for image, name in zip(pairs[side], pairs["split"]):
            assert seen.setdefault(image, name) == name
    if split_by == "source":
        by_source = pd.DataFrame({"source": crops["source"], "split": crops["path"].map(assigned)})
        assert (by_source.groupby("source")["split"].nunique() == 1).all()
    if split_by == "class":
        by_class = pd.DataFrame({"class": crops["class"], "split": crops["path"].map(assigned)})
        assert (by_class.groupby("class")["split"].nunique() == 1).all()

    for name in ("train", "val", "test"):
        in_split = [p for p in crops["path"] if assigned[p] == name]
        counts = Counter(class_of[p] for p in in_split)
        rows = pairs[pairs["split"] == name]
        pos = rows[rows["label"] == 1]
        neg = rows[rows["label"] == 0]
        got = Counter(pos["left_class"])
        # Every class with two images in the split gets its positives there, exactly
        # min(positives per image * n, distinct pairs); one image: none.
        for cls, n in counts.items():
            assert got.get(cls, 0) == min(positives * n, n * (n - 1) // 2), (name, cls, n)
        if positives == 1:
            # Each image of a class with two or more images is in a positive pair.
            covered = set(pos["left"]) | set(pos["right"])
            assert {p for p in in_split if counts[class_of[p]] >= 2} <= covered
        # The requested ratio, rounded; fewer only when every negative there is was taken.
        wanted = math.floor(ratio * len(pos) + 0.5)
        assert len(neg) == min(wanted, cross_pairs(counts)), (name, len(neg), wanted)


# ------------------------------------------------------------------------------ guarantees


class_sizes = st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=class_sizes,
    positives=st.integers(min_value=1, max_value=3),
    ratio=st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0]),
    split=st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0), (0.34, 0.33, 0.33)]),
    split_by=st.sampled_from(["item", "source", "class"]),
    seed=st.integers(min_value=0, max_value=2**32),
    sources=st.integers(min_value=1, max_value=12),
)
def test_guarantees_hold_for_random_class_sizes(sizes, positives, ratio, split, split_by, seed, sources):
    crops = crops_frame({f"c{i}": n for i, n in enumerate(sizes)}, sources=sources)
    options = dict(positives=positives, ratio=ratio, split=split, split_by=split_by, seed=seed)
    try:
        pairs = make_pairs(
            crops, positives=positives, negatives_per_positive=ratio, split=split,
            split_by=split_by, seed=seed,
        )
    except ManifestError as exc:
        # Only when no class has two images in any one split.
        assert "no pairs can be made" in str(exc)
        assigned = split_crops(crops, split, split_by, seed)
        assert crops.assign(split=assigned).groupby(["split", "class"]).size().max() == 1
        return
    check_guarantees(pairs, crops, **options)
    summary = pairs.attrs["summary"]
    assert summary["pairs"] == len(pairs)
    assert summary["positives"] == int((pairs["label"] == 1).sum())
    assigned = crops.assign(split=split_crops(crops, split, split_by, seed))
    for name, part in summary["splits"].items():
        rows = pairs[pairs["split"] == name]
        assert part["pairs"] == len(rows)
        assert part["negatives"] == int((rows["label"] == 0).sum())
        members = assigned[assigned["split"] == name]
        assert part["images"] == len(members)
        assert part["classes"] == members["class"].nunique()
        sizes = members["class"].value_counts()
        assert part["single_image_classes"] == sorted(sizes[sizes == 1].index)


def test_columns_have_the_types_pandas_gives_the_same_values(tmp_path):
    crops = write_crops(tmp_path / "crops", crops_frame({"a": 4, "b": 5}))
    frame = make_pairs(crops, tmp_path / "pairs.csv")
    plain = pd.DataFrame({column: list(frame[column]) for column in frame.columns})
    assert frame.dtypes.to_dict() == plain.dtypes.to_dict()
    assert frame.equals(plain)
    assert frame.equals(read_pairs(tmp_path / "pairs.csv").astype({"label": "int64"}))


def test_more_pairs_do_not_move_images_between_splits():
    crops = crops_frame({f"k{i}": 15 for i in range(6)})
    few = make_pairs(crops, positives=1, seed=9)
    many = make_pairs(crops, positives=4, negatives_per_positive=2, seed=9)
    split_of = {}
    for frame in (few, many):
        for side in ("left", "right"):
            for image, name in zip(frame[side], frame["split"]):
                assert split_of.setdefault(image, name) == name


def test_large_classes_meet_the_ratio_exactly():
    crops = crops_frame({f"k{i}": 40 + 7 * i for i in range(6)})
    for ratio in (0.5, 1.0, 2.0, 2.5):
        pairs = make_pairs(crops, positives=3, negatives_per_positive=ratio, seed=3)
        check_guarantees(pairs, crops, positives=3, ratio=ratio, split=(0.8, 0.1, 0.1),
                         split_by="item", seed=3)
        for name in ("train", "val", "test"):
            rows = pairs[pairs["split"] == name]
            p = int((rows["label"] == 1).sum())
            assert p > 0
            assert int((rows["label"] == 0).sum()) == math.floor(ratio * p + 0.5)


def test_item_split_follows_the_requested_fractions():
    crops = crops_frame({f"k{i}": 100 for i in range(10)})
    assigned = split_crops(crops, (0.7, 0.2, 0.1), "item", seed=5)
    counts = assigned.value_counts()
    # Stratified: each class gives its share, give or take one image.
    assert abs(counts["train"] - 700) <= 10
    assert abs(counts["val"] - 200) <= 10
    assert abs(counts["test"] - 100) <= 10
    per_class = crops.assign(split=assigned).groupby("class")["split"].value_counts().unstack()
    assert ((per_class["train"] - 70).abs() <= 1).all()
    assert ((per_class["val"] - 20).abs() <= 1).all()


def test_a_zero_fraction_gets_nothing():
    crops = crops_frame({"a": 10, "b": 10})
    pairs = make_pairs(crops, split="1,0,0")
    assert set(pairs["split"]) == {"train"}
    assert set(split_crops(crops, "0.5,0,0.5", "item", 0)) == {"train", "test"}


def test_class_split_keeps_classes_apart():
    crops = crops_frame({f"k{i}": 5 for i in range(30)})
    pairs = make_pairs(crops, split_by="class", seed=1)
    classes = {
        name: set(rows["left_class"]) | set(rows["right_class"])
        for name, rows in pairs.groupby("split")
    }
    assert set(classes) == {"train", "val", "test"}
    assert not classes["train"] & classes["val"]
    assert not classes["train"] & classes["test"]
    assert not classes["val"] & classes["test"]
    assert len(classes["train"]) == 24  # 0.8 of 30 whole classes


def test_source_split_keeps_a_source_image_in_one_split(tmp_path):
    crops = crops_frame({f"k{i}": 12 for i in range(5)}, sources=20)
    manifest = write_crops(tmp_path / "crops", crops)
    pairs = make_pairs(manifest, split_by="source", seed=2)
    source_of = dict(zip(crops["path"], crops["source"]))
    splits_of_source: dict[str, set[str]] = {}
    for side in ("left", "right"):
        for path, name in zip(pairs[side], pairs["split"]):
            splits_of_source.setdefault(source_of[path], set()).add(name)
    assert all(len(names) == 1 for names in splits_of_source.values())
    assert len({n for names in splits_of_source.values() for n in names}) >= 2


def test_single_image_class_gives_negatives_but_no_positives():
    crops = crops_frame({"many": 8, "other": 8, "solo": 1})
    pairs = make_pairs(crops, split="1,0,0", negatives_per_positive=3.0)
    solo = pairs[(pairs["left_class"] == "solo") | (pairs["right_class"] == "solo")]
    assert len(solo) > 0
    assert (solo["label"] == 0).all()
    summary = pairs.attrs["summary"]
    assert summary["splits"]["train"]["single_image_classes"] == ["solo"]
    assert summary["skipped_classes"] == {}


def test_only_single_image_classes_is_a_clear_error():
    with pytest.raises(ManifestError, match="no pairs can be made"):
        make_pairs(crops_frame({"a": 1, "b": 1, "c": 1}))


def test_two_images_are_enough_for_a_positive():
    pairs = make_pairs(crops_frame({"a": 2, "b": 2}), split="1,0,0")
    assert sorted(unordered(pairs[pairs["label"] == 1])) == [
        ("a/img0_0.png", "a/img1_0.png"),
        ("b/img0_0.png", "b/img1_0.png"),
    ]
    assert (pairs["label"] == 0).sum() == 2


def test_min_per_class_skips_and_reports_small_classes():
    crops = crops_frame({"big": 10, "mid": 3, "tiny": 2})
    pairs = make_pairs(crops, min_per_class=3, split="1,0,0")
    assert set(pairs["left_class"]) | set(pairs["right_class"]) == {"big", "mid"}
    assert pairs.attrs["summary"]["skipped_classes"] == {"tiny": 2}
    with pytest.raises(ManifestError, match="no class has at least 11 images"):
        make_pairs(crops, min_per_class=11)


def test_skipped_classes_are_listed_most_images_first_then_by_name():
    crops = crops_frame({"big": 10, "a": 1, "zz": 3, "mid": 3, "b": 1})
    summary = make_pairs(crops, min_per_class=5, split="1,0,0").attrs["summary"]
    assert list(summary["skipped_classes"].items()) == [("mid", 3), ("zz", 3), ("a", 1), ("b", 1)]


def test_negatives_are_capped_by_what_exists():
    # Two classes of two images: 2 positives, 4 different-class pairs at most.
    pairs = make_pairs(crops_frame({"a": 2, "b": 2}), split="1,0,0", negatives_per_positive=5)
    part = pairs.attrs["summary"]["splits"]["train"]
    assert (part["positives"], part["negatives"], part["negatives_wanted"]) == (2, 4, 10)


def test_positives_per_image_scale_the_positives():
    crops = crops_frame({"a": 50, "b": 50})
    for n in (1, 2, 5):
        pairs = make_pairs(crops, positives=n, split="1,0,0")
        assert (pairs["label"] == 1).sum() == n * 100


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    crops = crops_frame({f"k{i}": 20 for i in range(8)}, sources=30)
    manifest = write_crops(tmp_path / "crops", crops)
    outputs = []
    for name, seed in (("a.csv", 7), ("b.csv", 7), ("c.csv", 8)):
        make_pairs(manifest, tmp_path / name, seed=seed, split_by="source")
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_same_bytes_whatever_the_hash_seed(tmp_path):
    root = tmp_path / "images"
    for name in ("zèbre", "Ant", "ant", "b,c", "日本"):
        for i in range(6):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{i}.png").write_bytes(b"")
    script = (
        "import sys; from dsxsd import make_pairs; "
        "make_pairs(sys.argv[1], sys.argv[2], seed=11, split='0.6,0.2,0.2')"
    )
    results = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"pairs{hash_seed}.csv"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run([sys.executable, "-c", script, str(root), str(out)], check=True, env=env)
        results.append(out.read_bytes())
    assert results[0] == results[1]
    in_process = make_pairs(root, tmp_path / "pairs3.csv", seed=11, split="0.6,0.2,0.2")
    assert (tmp_path / "pairs3.csv").read_bytes() == results[0]
    assert len(in_process) > 0


def test_folder_listing_order_does_not_matter(tmp_path):
    names = ["b.png", "a.jpg", "c.JPEG", "d.webp"]
    for root, order in ((tmp_path / "one", names), (tmp_path / "two", names[::-1])):
        for cls in (("y", "x") if root.name == "one" else ("x", "y")):
            (root / cls).mkdir(parents=True)
            for file in order:
                (root / cls / file).write_bytes(b"")
        make_pairs(root, root / "pairs.csv", split="1,0,0")
    assert (tmp_path / "one" / "pairs.csv").read_bytes() == (tmp_path / "two" / "pairs.csv").read_bytes()


# ------------------------------------------------------------------------------ inputs and paths


def test_class_folders_input(tmp_path):
    root = tmp_path / "omniglot"
    for cls, files in {
        "alpha": ["1.PNG", "2.jpg", "3.Tiff", "4.gif", "5.bmp", "6.jpeg", "7.webp", "8.tif"],
        "beta": ["1.png", "2.png", "notes.txt", ".hidden.png"],
        ".git": ["x.png", "y.png"],
    }.items():
        (root / cls).mkdir(parents=True)
        for file in files:
            (root / cls / file).write_bytes(b"")
    (root / "loose.png").write_bytes(b"")
    (root / "beta" / "nested").mkdir()
    (root / "beta" / "nested" / "z.png").write_bytes(b"")

    pairs = make_pairs(root, split="1,0,0", positives=20)
    images = set(pairs["left"]) | set(pairs["right"])
    assert images == {f"alpha/{f}" for f in ["1.PNG", "2.jpg", "3.Tiff", "4.gif", "5.bmp",
                                              "6.jpeg", "7.webp", "8.tif"]} | {"beta/1.png", "beta/2.png"}
    assert pairs.attrs["summary"]["classes"] == 2
    # All 28 + 1 distinct positives (more were asked), paths relative to the root.
    assert (pairs["label"] == 1).sum() == 28 + 1
    # Written elsewhere, the paths lead back to the files.
    out = tmp_path / "work" / "pairs.csv"
    make_pairs(root, out, split="1,0,0")
    written = read_pairs(out, check_files=True)
    assert written["left"].str.startswith("../omniglot/").all()


def test_empty_class_folders_are_a_clear_error(tmp_path):
    (tmp_path / "root" / "cat").mkdir(parents=True)
    (tmp_path / "root" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(ManifestError, match="no images in class folders"):
        make_pairs(tmp_path / "root")


def test_paths_are_relative_to_the_output_folder(tmp_path):
    crops = crops_frame({"cat": 4, "dog": 4})
    manifest = write_crops(tmp_path / "crops", crops)
    touch_images(tmp_path / "crops", crops)

    beside = make_pairs(manifest, tmp_path / "crops" / "pairs.csv", split="1,0,0")
    assert set(beside["left"]) | set(beside["right"]) <= set(crops["path"])

    elsewhere = make_pairs(manifest, tmp_path / "runs" / "a" / "pairs.csv", split="1,0,0")
    assert elsewhere["left"].str.startswith("../../crops/").all()
    inside = make_pairs(manifest, tmp_path / "crops" / "sub" / "pairs.csv", split="1,0,0")
    assert inside["right"].str.startswith("../cat/").any()

    for out in ("crops/pairs.csv", "runs/a/pairs.csv", "crops/sub/pairs.csv"):
        read_pairs(tmp_path / out, check_files=True)  # every file is found

    # The same pairs whichever folder they are written for.
    assert [p.rsplit("/", 2)[-2:] for p in beside["left"]] == [
        p.rsplit("/", 2)[-2:] for p in elsewhere["left"]
    ]

    # The folder moves with its images.
    moved = tmp_path / "moved"
    (tmp_path / "runs").rename(tmp_path / "runs_old")
    moved.mkdir()
    (tmp_path / "crops").rename(moved / "crops")
    (moved / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs_old" / "a" / "pairs.csv").rename(moved / "runs" / "a" / "pairs.csv")
    read_pairs(moved / "runs" / "a" / "pairs.csv", check_files=True)


def test_dotted_and_absolute_manifest_paths_are_made_relative(tmp_path):
    absolute = (tmp_path / "elsewhere" / "c" / "1.png").as_posix()
    crops = pd.DataFrame({"path": ["./a/1.png", "a/2.png", "../shared/b/1.png", "b/2.png",
                                   absolute, "c/2.png"],
                          "class": ["a", "a", "b", "b", "c", "c"]})
    manifest = write_crops(tmp_path / "crops", crops)
    pairs = make_pairs(manifest, tmp_path / "out" / "pairs.csv", split="1,0,0", positives=1)
    images = set(pairs["left"]) | set(pairs["right"])
    assert images == {"../crops/a/1.png", "../crops/a/2.png", "../shared/b/1.png",
                      "../crops/b/2.png", "../elsewhere/c/1.png", "../crops/c/2.png"}
    # Beside the manifest nothing needs rewriting but the absolute path.
    pairs = make_pairs(manifest, split="1,0,0", positives=1)
    images = set(pairs["left"]) | set(pairs["right"])
    assert "../elsewhere/c/1.png" in images and "./a/1.png" in images


def test_images_are_never_opened_or_looked_up(tmp_path, monkeypatch):
    # The manifest names files that do not exist: make-pairs works on the manifest alone.
    crops = crops_frame({"cat": 30, "dog": 30})
    manifest = write_crops(tmp_path / "crops", crops)
    looked_up = []
    real_stat = os.stat

    def spy(path, *args, **kwargs):
        if str(path).endswith(".png"):
            looked_up.append(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", spy)
    pairs = make_pairs(manifest, tmp_path / "pairs.csv")
    assert len(pairs) > 0 and looked_up == []


def test_csv_quoting_round_trips(tmp_path):
    names = ['a,b', 'say "hi"', "NA", "null", "  padded  ", "日本語", "line\nbreak"]
    crops = pd.DataFrame(
        [{"path": f"{i}/{j}, x.png", "class": name} for i, name in enumerate(names) for j in range(3)]
    )
    manifest = write_crops(tmp_path / "crops", crops)
    out = tmp_path / "crops" / "pairs.csv"
    pairs = make_pairs(manifest, out, split="1,0,0")
    assert "padded" in set(pairs["left_class"]) and "NA" in set(pairs["left_class"])
    # The bytes are exactly what the csv module writes for the frame.
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(PAIRS_COLUMNS)
    writer.writerows(pairs.astype({"label": str}).itertuples(index=False))
    assert out.read_bytes() == expected.getvalue().encode("utf-8")
    back = read_pairs(out)
    pd.testing.assert_frame_equal(back, pairs, check_dtype=False)


# ------------------------------------------------------------------------------ option errors


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.8,0.2", "three fractions"),
        ("0.5,0.25,0.25,0", "three fractions"),
        ("a,b,c", "not all numbers"),
        ("-0.1,0.6,0.5", ">= 0"),
        ("nan,0,1", ">= 0"),
        ("0.5,0.5,0.5", "sum to 1.5"),
        ("0.7,0.1,0.1", "sum to 0.9"),
    ],
)
def test_bad_split_is_refused(text, message):
    with pytest.raises(UsageError, match=message):
        parse_split(text)


def test_good_split_is_parsed():
    assert parse_split(" 0.8, 0.1 ,0.1") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_split((1, 0, 0)) == (1.0, 0.0, 0.0)
    assert sum(parse_split("0.3333333,0.3333333,0.3333334")) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"positives": 0}, "positives"),
        ({"negatives_per_positive": -1.0}, "negatives_per_positive"),
        ({"negatives_per_positive": float("inf")}, "negatives_per_positive"),
        ({"split_by": "image"}, "split_by"),
        ({"min_per_class": 0}, "min_per_class"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        make_pairs(crops_frame({"a": 3, "b": 3}), **options)


def test_split_by_source_needs_sources(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    with pytest.raises(UsageError, match="needs a crops manifest"):
        make_pairs(tmp_path / "root", split_by="source")
    manifest = write_crops(tmp_path / "c", None, text="path,class\na/1.png,a\na/2.png,a\n")
    with pytest.raises(ManifestError, match=r"crops\.csv, row 1: missing column 'source'"):
        make_pairs(manifest, split_by="source")
    # Without --split-by source, two columns are enough.
    assert len(make_pairs(manifest, split="1,0,0")) == 1


def test_existing_output_needs_overwrite(tmp_path):
    crops = crops_frame({"a": 4, "b": 4})
    out = tmp_path / "pairs.csv"
    out.write_text("keep me")
    with pytest.raises(OutputExistsError):
        make_pairs(crops, out)
    assert out.read_text() == "keep me"
    make_pairs(crops, out, overwrite=True)
    assert out.read_text().startswith("left,right,label,left_class,right_class,split\n")
    assert not [p for p in tmp_path.iterdir() if p.name != "pairs.csv"]  # no temporary left


# ------------------------------------------------------------------------------ manifest errors


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"crops\.csv: empty file"),
        ("path,label\na.png,x\n", r"crops\.csv, row 1: missing column 'class'"),
        ("path,class\na.png,x\nb.png,\n", r"crops\.csv, row 3, field 'class': empty value"),
        ("path,class\na.png,x\n,x\n", r"crops\.csv, row 3, field 'path': empty value"),
        ("path,class\na.png,x\nb.png,y\na.png,y\n",
         r"crops\.csv, row 4, field 'path': path 'a\.png' is listed again \(first at row 2\)"),
        ("path,class\na.png,x\nb.png,y,z\n", r"crops\.csv: malformed CSV: Expected 2 fields in line 3"),
        # A blank line does not shift the row numbers.
        ("path,class\na.png,x\n\nb.png,  \n", r"crops\.csv, row 4, field 'class': empty value"),
    ],
)
def test_bad_crops_manifest_names_file_and_row(tmp_path, text, message):
    manifest = write_crops(tmp_path, None, text=text)
    with pytest.raises(ManifestError, match=message):
        make_pairs(manifest)


def test_row_numbers_hold_in_a_large_manifest(tmp_path):
    # Above 5 MB pandas may parse in parallel chunks; the row named must still be the
    # spreadsheet's, with a quoted line break and a blank line before it.
    lines = ["path,class,source", '"odd\nname.png","a\nb",s', ""]
    lines += [f"k{i % 50}/crop_{i:07d}_0.png,k{i % 50},/data/source_{i:07d}.jpg" for i in range(120_000)]
    lines[100_002] = "bad.png, ,s"
    manifest = write_crops(tmp_path, None, text="\n".join(lines) + "\n")
    assert manifest.stat().st_size > 5 * 2**20
    with pytest.raises(ManifestError, match=r"crops\.csv, row 100003, field 'class': empty value"):
        make_pairs(manifest)


def test_crops_manifest_that_is_not_utf8(tmp_path):
    manifest = tmp_path / "crops.csv"
    manifest.write_bytes("path,class\nä.png,x\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"crops\.csv: not UTF-8"):
        make_pairs(manifest)


def test_crops_manifest_with_bom_and_spaced_header(tmp_path):
    manifest = write_crops(tmp_path, None, text="\ufeffpath , class\na.png, x\nb.png,x \n")
    pairs = make_pairs(manifest, split="1,0,0")
    assert pairs["left_class"].tolist() == ["x"]


def test_repeated_path_in_a_table_is_refused():
    crops = pd.DataFrame({"path": ["a.png", "b.png", "a.png"], "class": ["x", "x", "y"]})
    with pytest.raises(ManifestError, match="'a.png' is listed twice"):
        make_pairs(crops)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(MissingPathError, match="no such file or folder") as info:
        make_pairs(tmp_path / "nope.csv")
    assert info.value.exit_code == 2


# ------------------------------------------------------------------------------ read_pairs


PAIRS_HEADER = "left,right,label,left_class,right_class,split\n"


@pytest.mark.parametrize(
    "body, message",
    [
        ("a.png,b.png,2,x,y,train\n", r"row 2, field 'label': label must be 1 \(same class\) or 0"),
        ("a.png,b.png,yes,x,y,train\n", "not 'yes'"),
        ("a.png,b.png,0,x,y,train\na.png,c.png,0,x,z,dev\n", r"row 3, field 'split': split must be one of train, val, test, not 'dev'"),
        ("a.png,b.png,1,x,y,train\n", r"row 2, field 'label': label 1 contradicts classes 'x' and 'y'"),
        ("a.png,b.png,0,x,x,val\n", r"row 2, field 'label': label 0 contradicts"),
        ("a.png,,0,x,y,val\n", r"row 2, field 'right': empty value"),
    ],
)
def test_read_pairs_names_the_bad_row(tmp_path, body, message):
    path = tmp_path / "pairs.csv"
    path.write_text(PAIRS_HEADER + body, encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"pairs\.csv, {message}" if message.startswith("row") else message):
        read_pairs(path)


def test_read_pairs_missing_columns(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("left,right,label\na,b,1\n")
    with pytest.raises(ManifestError, match=r"row 1: missing columns 'left_class', 'right_class', 'split'"):
        read_pairs(path)


def test_read_pairs_checks_files_when_asked(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / name).write_bytes(b"")
    path = tmp_path / "pairs.csv"
    path.write_text(
        PAIRS_HEADER
        + "img/a.png,img/b.png,1,x,x,train\n"
        + "img/c.png,img/a.png,0,y,x,train\n"
        + "img/a.png,img/gone.png,0,x,y,val\n"
        + "img/lost.png,img/a.png,0,y,x,val\n"
    )
    assert len(read_pairs(path)) == 4  # files are not looked at unless asked
    with pytest.raises(MissingManifestFileError, match=r"row 4, field 'right': image 'img/gone.png' not found") as info:
        read_pairs(path, check_files=True)
    assert isinstance(info.value, ManifestError) and isinstance(info.value, MissingImageError)
    assert info.value.row == 4 and info.value.file == str(path)


def test_read_pairs_returns_typed_rows(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(PAIRS_HEADER + "a.png,b.png, 1 ,x,x, test\n\nc.png,d.png,0,NA,x,val\n")
    frame = read_pairs(path)
    assert frame["label"].tolist() == [1, 0]
    assert frame["label"].dtype == np.int64
    assert frame["split"].tolist() == ["test", "val"]
    assert frame["left_class"].tolist() == ["x", "NA"]
    assert frame.index.tolist() == [0, 1]


# ------------------------------------------------------------------------------ schemas


def test_schemas_describe_the_manifests(tmp_path):
    pairs_schema = load_schema("pairs")
    crops_schema = load_schema("crops")
    for schema in (pairs_schema, crops_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert tuple(pairs_schema["required"]) == PAIRS_COLUMNS
    assert tuple(crops_schema["required"]) == CROPS_COLUMNS
    assert "1 = same class, 0 = different" in pairs_schema["description"]
    assert pairs_schema["properties"]["split"]["enum"] == ["train", "val", "test"]

    crops = crops_frame({"a": 5, "b": 5})
    manifest = write_crops(tmp_path, crops)
    written = pd.read_csv(manifest)
    validator = jsonschema.Draft202012Validator(crops_schema)
    for row in json.loads(written.to_json(orient="records")):
        validator.validate(row)

    validator = jsonschema.Draft202012Validator(pairs_schema)
    pairs = make_pairs(manifest, split="0.6,0.2,0.2")
    for row in json.loads(pairs.to_json(orient="records")):
        validator.validate(row)
    bad = dict(json.loads(pairs.iloc[:1].to_json(orient="records"))[0], label=2)
    assert not validator.is_valid(bad)
    assert not validator.is_valid(dict(bad, label=1, split="dev"))


# ------------------------------------------------------------------------------ command line


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_help_states_the_label_convention():
    result = run_cli("make-pairs", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # help text is wrapped to the terminal
    assert "Label convention: 1 = same class, 0 = different classes." in text
    for option in ("--positives", "--negatives-per-positive", "--split", "--split-by",
                   "--min-per-class", "--seed", "--overwrite", "--json"):
        assert option in result.output


def test_cli_from_manifest_with_summary(tmp_path):
    crops = crops_frame({"cat": 20, "dog": 20, "solo": 1})
    manifest = write_crops(tmp_path / "crops", crops)
    out = tmp_path / "pairs.csv"
    result = run_cli("make-pairs", str(manifest), str(out), "--split", "1,0,0", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "80 pairs (40 positive, 40 negative) from 41 images in 3 classes" in result.output
    assert "train      41        3         40         40     80" in result.output
    assert "train: 1 class has one image (negatives only, no positives): solo" in result.output
    frame = read_pairs(out)
    assert len(frame) == 80 and frame["left"].str.startswith("crops/").all()

    again = run_cli("make-pairs", str(manifest), str(out), "--split", "1,0,0", "--seed", "4")
    assert again.exit_code == 2
    assert "already exists; pass --overwrite" in again.output
    before = out.read_bytes()
    replaced = run_cli("make-pairs", str(manifest), str(out), "--split", "1,0,0", "--seed", "5",
                       "--overwrite")
    assert replaced.exit_code == 0
    assert out.read_bytes() != before


def test_cli_json_summary(tmp_path):
    root = tmp_path / "images"
    for cls, n in (("a", 10), ("b", 10), ("c", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{i}.png").write_bytes(b"")
    out = tmp_path / "out" / "pairs.csv"
    result = run_cli("make-pairs", str(root), str(out), "--json", "--split", "1,0,0",
                     "--positives", "2", "--negatives-per-positive", "0.5", "--min-per-class", "2")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["images"] == 20 and summary["classes"] == 2
    assert summary["positives"] == 40 and summary["negatives"] == 20
    assert summary["splits"]["train"]["pairs"] == 60
    assert summary["splits"]["val"]["pairs"] == 0
    assert summary["skipped_classes"] == {"c": 1}
    assert summary["options"]["split_by"] == "item"
    assert summary["output"] == str(out)
    assert len(read_pairs(out, check_files=True)) == 60


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--split", "0.8,0.1"], "three fractions"),
        (["--split", "0.9,0.1,0.1"], "sum to 1.1"),
        (["--split-by", "image"], "'image' is not one of"),
        (["--positives", "0"], "--positives"),
        (["--negatives-per-positive", "-1"], "--negatives-per-positive"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, extra, message):
    manifest = write_crops(tmp_path, crops_frame({"a": 3, "b": 3}))
    result = run_cli("make-pairs", str(manifest), str(tmp_path / "pairs.csv"), *extra)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "pairs.csv").exists()


def test_cli_split_by_source_on_a_folder_is_a_usage_error(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    result = run_cli("make-pairs", str(tmp_path / "root"), str(tmp_path / "p.csv"),
                     "--split-by", "source")
    assert result.exit_code == 2
    assert "--split-by source needs a crops manifest" in result.output


def test_cli_data_error_exit_1_names_file_and_row(tmp_path):
    manifest = write_crops(tmp_path, None, text="path,class\na.png,x\nb.png,\n")
    result = run_cli("make-pairs", str(manifest), str(tmp_path / "pairs.csv"))
    assert result.exit_code == 1
    assert f"error: {manifest}, row 3, field 'class': empty value" in result.output
    assert not (tmp_path / "pairs.csv").exists()


def test_cli_missing_input_is_a_usage_error(tmp_path):
    result = run_cli("make-pairs", str(tmp_path / "nope.csv"), str(tmp_path / "p.csv"))
    assert result.exit_code == 2
    assert "no such file or folder" in result.output


def test_public_api_is_exported():
    assert dsxsd.make_pairs is make_pairs
    assert dsxsd.read_pairs is read_pairs
