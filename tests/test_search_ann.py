"""The approximate index (dsxsd.ann): FAISS candidates re-ranked by the head must give
the head's own ranking where the candidates cover the index, keep the head's top 10 on
clustered entries, answer many queries as it answers one, and refuse a bad index, a bad
query folder or a -k past the index in one line. No TensorFlow: the model is
tests/search_support.TableScorer."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd import _io, _preflight, ann, inference
from dsxsd.cli import main
from search_support import TableScorer, clustered, query_files

pytestmark = pytest.mark.serve  # faiss-cpu comes with the serve extra


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def build(tmp_path, count=600, dim=24, classes=12, seed=0, name="index"):
    features, labels = clustered(count, dim, classes, seed)
    # Named .onnx, the CLI runs it on onnxruntime, not TensorFlow: these tests run in the
    # serve extra's suite, where there is no TensorFlow (the scorer itself is a stand-in).
    model = tmp_path / "model.onnx"
    model.write_bytes(b"a model file")
    paths = [tmp_path / "entries" / f"e{i}.png" for i in range(count)]
    chunks = (features[i : i + 128] for i in range(0, count, 128))
    index = ann.write_index(tmp_path / name, chunks, count, dim, paths, labels, TableScorer(features, model))
    return index, features, labels, model


def queries_near(features, count, seed=1):
    rng = np.random.default_rng(seed)
    rows = features[rng.integers(0, len(features), count)]
    return np.maximum(rows + rng.normal(0.0, 0.15, rows.shape), 0.0).astype(np.float32)


def recall(found, exact):
    return np.mean([len({h.path for h in a} & {h.path for h in b}) / len(b) for a, b in zip(found, exact)])


# --------------------------------------------------------------------------- results


def test_the_index_folder_holds_float16_features_paths_classes_and_a_manifest(tmp_path, monkeypatch):
    index, features, labels, model = build(tmp_path)
    assert sorted(p.name for p in index.file.iterdir()) == sorted([ann.MANIFEST, *ann.FILES])
    manifest = json.loads((index.file / ann.MANIFEST).read_text("utf-8"))
    assert (manifest["format"], manifest["version"], manifest["count"], manifest["feature_dim"]) == (
        "dsxsd.ann-index", 2, 600, 24,
    )
    assert manifest["model"] == "model.onnx" and manifest["model_sha256"] == _io.sha256_file(model)
    assert manifest["faiss_index"] == "Flat" and manifest["classes"] == sorted(set(labels))
    stored = np.load(index.file / ann.FEATURES, mmap_mode="r")
    assert isinstance(stored, np.memmap) and stored.dtype == np.float16
    np.testing.assert_allclose(stored, features, rtol=1e-3, atol=1e-3)
    # a search gathers rows through a map it keeps (a small file) or makes for each gather
    ids = np.array([0, 1, 2, 7, 9, 10, 11, 599])
    np.testing.assert_array_equal(index.rows(ids), np.asarray(stored[ids], dtype=np.float32))
    monkeypatch.setattr(ann, "KEEP_MAPPED_BYTES", 0)
    np.testing.assert_array_equal(ann.load(index.file).rows(ids), np.asarray(stored[ids], dtype=np.float32))
    assert index.paths[7] == str(tmp_path / "entries" / "e7.png") and index.classes[7] == labels[7]
    assert index.paths[-2:] == [str(tmp_path / "entries" / f"e{i}.png") for i in (598, 599)]


def test_candidates_covering_the_index_give_the_exact_search(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "_EXACT_CHUNK", 64)  # the exact search merges chunks' best
    index, features, _, model = build(tmp_path, count=300)
    queries = queries_near(features, 6)
    files = query_files(tmp_path / "q", 6)
    scorer = TableScorer(queries, model)
    everything = inference.search(index, files, k=300, model=scorer, candidates=300)
    exact = inference.search(index, files, k=300, model=scorer, exact=True)
    assert everything == exact
    # and the scores are the head's on the stored (float16) features
    stored = np.asarray(index.features, dtype=np.float32)
    for query, hits in zip(queries, exact):
        by_path = dict(zip(index.paths, scorer.score(query, stored)))
        # float32 rounding differs with the batch the head sees
        assert [h.score for h in hits] == pytest.approx([by_path[h.path] for h in hits], abs=1e-6)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert [h.rank for h in hits] == list(range(1, 301))


@pytest.mark.parametrize("ivf, narrow", [(False, 256), (True, 256)])
def test_the_heads_top_10_survives_the_candidates(tmp_path, monkeypatch, ivf, narrow):
    if ivf:  # an inverted file of scalar-quantised codes, as from 50,000 entries
        monkeypatch.setattr(ann, "IVF_MIN_ENTRIES", 1000)
    monkeypatch.setattr(ann, "NARROW_DIMS", narrow)  # all 48 features, 8 bits each
    index, features, _, model = build(tmp_path, count=4000, dim=48, classes=40)
    assert len(index.narrow_dims) == min(narrow, 48)
    assert index.manifest["faiss_index"] == ("IVF64,SQ8" if ivf else "Flat")
    # an inverted file searches lifted vectors by L2 (ann.lift), a flat scan by inner product
    faiss = pytest.importorskip("faiss")
    assert index.faiss_index().metric_type == (faiss.METRIC_L2 if ivf else faiss.METRIC_INNER_PRODUCT)
    assert (index.manifest["lift_norm"] > 0) == ivf
    # an inverted file's lifted vectors padded with zeros to a multiple of 8 (49 + 1 -> 56)
    assert index.faiss_index().d == (56 if ivf else 49)
    if ivf:
        np.testing.assert_array_equal(index.projection, np.eye(49, 55, dtype=np.float32))
    else:
        assert index.projection is None
    queries = queries_near(features, 40)
    files = query_files(tmp_path / "q", 40)
    scorer = TableScorer(queries, model)
    scorer.calls = 0
    found = inference.search(index, files, k=10, model=scorer, candidates=24)  # a shortlist of 768
    reranked = scorer.calls
    exact = inference.search(index, files, k=10, model=scorer, exact=True)
    assert reranked <= 40 * 24  # the head saw the candidates only
    assert recall(found, exact) >= 0.95
    assert recall(inference.search(index, files, k=10, model=scorer), exact) >= 0.95  # the default


def as_version_1(index):
    """The same index as dsxsd wrote it before the compact copy (index version 1)."""
    manifest = json.loads((index.file / ann.MANIFEST).read_text("utf-8"))
    for name in (ann.NARROW, ann.NARROW_DIMS_FILE, ann.NARROW_SCALE):
        (index.file / name).unlink()
        del manifest["files"][name]
    manifest["version"] = 1
    (index.file / ann.MANIFEST).write_text(json.dumps(manifest), "utf-8")
    return ann.load(index.file)


def test_the_compact_copy_keeps_the_features_that_count_in_8_bits(tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "NARROW_DIMS", 16)
    index, features, _, _ = build(tmp_path, dim=24)
    weights = np.load(index.file / ann.WEIGHTS)
    codes = np.load(index.file / ann.NARROW, mmap_mode="r")
    kept, scale = np.load(index.file / ann.NARROW_DIMS_FILE), np.load(index.file / ann.NARROW_SCALE)
    assert codes.dtype == np.uint8 and codes.shape == (600, 16) and list(kept) == sorted(kept)
    # the 16 features of largest |weight| x spread (the sample is 600 of 600 here)
    stored = np.asarray(np.load(index.file / ann.FEATURES), dtype=np.float32)
    importance = np.abs(weights) * stored.std(axis=0)
    assert set(kept) == set(np.argsort(-importance)[:16])
    # a code is its feature to half a step
    assert (np.abs(codes * scale[1] + scale[0] - stored[:, kept]) <= scale[1] * 0.5 + 1e-6).all()


@pytest.mark.parametrize("dims", [24, 12])
def test_the_compact_copy_finds_the_hits_full_rows_find(tmp_path, dims, monkeypatch):
    """All the features in 8 bits, or half of them: the same hits as the narrowing on
    the full float16 rows (an index of version 1, read as before) where the candidates
    hold the head's best with room to spare."""
    monkeypatch.setattr(ann, "NARROW_DIMS", dims)
    index, features, _, model = build(tmp_path, count=2000, dim=24, classes=20)
    queries = queries_near(features, 20)
    files = query_files(tmp_path / "q", 20)
    scorer = TableScorer(queries, model)
    compact = inference.search(index, files, k=5, model=scorer, candidates=60)
    assert index.manifest["version"] == 2 and index.narrow_dims is not None
    old = as_version_1(index)
    assert old.narrow_dims is None
    full_rows = inference.search(old, files, k=5, model=scorer, candidates=60)
    assert [[h.path for h in hits] for hits in compact] == [[h.path for h in hits] for hits in full_rows]
    assert compact == full_rows  # the scores too: the head re-ranks float16 rows either way
    # opened from its folder as well
    assert inference.search(old.file, files[:3], k=5, model=scorer, candidates=60) == full_rows[:3]


def test_a_compact_copy_of_half_the_features_keeps_the_top_10_of_redundant_ones(tmp_path, monkeypatch):
    """A tower's features are many mixes of fewer underlying ones: keeping the half that
    moves the head most keeps its top 10 (on independent features it would not)."""
    monkeypatch.setattr(ann, "NARROW_DIMS", 24)
    monkeypatch.setattr(ann, "PCA_DIMS", 17)  # FAISS on the 15 features that count most, as past 256
    narrow, labels = clustered(4000, 16, 40)
    rng = np.random.default_rng(5)
    mix = np.maximum(rng.normal(0.0, 1.0, (16, 48)), 0.0) / 4
    features = np.maximum(narrow @ mix + rng.normal(0.0, 0.02, (4000, 48)), 0.0).astype(np.float32)
    model = tmp_path / "model.bin"
    model.write_bytes(b"a model file")
    paths = [tmp_path / "entries" / f"e{i}.png" for i in range(4000)]
    index = ann.write_index(tmp_path / "index", [features], 4000, 48, paths, labels, TableScorer(features, model))
    assert len(index.narrow_dims) == 24
    # FAISS's vectors select features (and the squared term), those of the compact copy first
    assert index.projection.shape == (49, 16) and set(np.unique(index.projection)) == {0.0, 1.0}
    selected = np.nonzero(index.projection[:48].any(axis=1))[0]
    assert len(selected) == 15 and set(selected) <= set(index.narrow_dims) and index.projection[48, 15] == 1
    queries = queries_near(features, 40)
    files = query_files(tmp_path / "q", 40)
    scorer = TableScorer(queries, model)
    found = inference.search(index, files, k=10, model=scorer, candidates=24)
    exact = inference.search(index, files, k=10, model=scorer, exact=True)
    assert recall(found, exact) >= 0.95


def test_an_inverted_file_over_selected_features_scans_vectors_a_multiple_of_8_long(tmp_path, monkeypatch):
    """Past PCA_DIMS features, an inverted file: FAISS's lifted vectors are PCA_DIMS long
    (PCA_DIMS - 2 features, the squared term, the lift), a length its vectorised kernels
    take; candidates covering the index give the exact search, and the default keeps the
    head's top 10."""
    monkeypatch.setattr(ann, "PCA_DIMS", 24)
    monkeypatch.setattr(ann, "IVF_MIN_ENTRIES", 1000)
    monkeypatch.setattr(ann, "NARROW_DIMS", 24)
    monkeypatch.setattr(inference, "_EXACT_CHUNK", 256)
    index, features, _, model = build(tmp_path, count=2000, dim=48, classes=20)
    assert index.manifest["faiss_index"] == "IVF32,SQfp16" and index.manifest["nprobe"] == 4  # an eighth
    assert index.projection.shape == (49, 23) and index.faiss_index().d == 24
    assert len(np.nonzero(index.projection[:48].any(axis=1))[0]) == 22
    queries = queries_near(features, 12)
    files = query_files(tmp_path / "q", 12)
    scorer = TableScorer(queries, model)
    exact = inference.search(index, files, k=10, model=scorer, exact=True)
    assert recall(inference.search(index, files, k=10, model=scorer, candidates=64), exact) >= 0.95
    # every list probed and every entry a candidate: the exact search's hits and scores
    full = ann.load(index.file)
    full.manifest["nprobe"] = 32
    everything = inference.search(full, files[:3], k=2000, model=scorer, candidates=2000)
    assert everything == inference.search(index, files[:3], k=2000, model=scorer, exact=True)


def test_zeros_padding_faiss_vectors_change_no_hit_and_an_unpadded_index_is_still_read(tmp_path, monkeypatch):
    """An inverted file written before the padding (lifted vectors 50 long, no
    projection) is read and searched as before, with the same hits and scores as the
    padded one's (56 long)."""
    monkeypatch.setattr(ann, "IVF_MIN_ENTRIES", 1000)
    monkeypatch.setattr(ann, "FAISS_LENGTH_MULTIPLE", 1)  # as dsxsd wrote it before
    old, features, _, model = build(tmp_path, count=3000, dim=48, classes=30, name="old")
    monkeypatch.undo()
    monkeypatch.setattr(ann, "IVF_MIN_ENTRIES", 1000)
    new = build(tmp_path, count=3000, dim=48, classes=30, name="new")[0]
    old, new = ann.load(old.file), ann.load(new.file)
    assert old.projection is None and old.faiss_index().d == 50
    assert new.projection.shape == (49, 55) and new.faiss_index().d == 56
    queries = queries_near(features, 12)
    files = query_files(tmp_path / "q", 12)
    scorer = TableScorer(queries, model)
    found = inference.search(new, files, k=10, model=scorer)
    before = inference.search(old, files, k=10, model=scorer)
    assert found == before  # paths, classes, ranks and scores
    assert len({h.path for hits in found for h in hits}) > 10


def test_one_feature_short_of_pca_dims_every_feature_reaches_faiss_padded(tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "PCA_DIMS", 24)
    monkeypatch.setattr(ann, "IVF_MIN_ENTRIES", 1000)
    index = build(tmp_path, count=2000, dim=23, classes=20)[0]
    # 23 features and the squared term, zero columns to 31, the lift: 32 long, nothing reduced
    assert index.projection.shape == (24, 31) and index.faiss_index().d == 32
    assert np.array_equal(index.projection[:, :24], np.eye(24, dtype=np.float32))


def test_lifted_vectors_nearest_in_l2_are_the_largest_inner_products():
    rng = np.random.default_rng(3)
    entries = rng.normal(0.0, 1.0, (500, 9)).astype(np.float32) * rng.uniform(0.2, 3.0, (500, 1)).astype(np.float32)
    query = rng.normal(0.0, 1.0, 9).astype(np.float32)
    norm = float(np.linalg.norm(entries, axis=1).max())
    lifted = ann.lift(entries, norm)
    np.testing.assert_allclose(np.linalg.norm(lifted, axis=1), norm, rtol=1e-5)
    distances = ((lifted - np.append(query, 0.0)) ** 2).sum(axis=1)
    assert list(np.argsort(distances)[:20]) == list(np.argsort(-(entries @ query))[:20])


def test_many_queries_at_once_equal_one_at_a_time(tmp_path, monkeypatch):
    index, features, _, model = build(tmp_path)
    queries = queries_near(features, 9)
    files = query_files(tmp_path / "q", 9)
    scorer = TableScorer(queries, model)
    monkeypatch.setattr(inference, "_QUERY_BLOCK", 4)  # blocks of queries, a short last one
    monkeypatch.setattr(inference, "_ROWS_AT_ONCE", 1000)  # groups of queries, a short last one
    together = inference.search(index, files, k=5, model=scorer, candidates=64)
    assert len(together) == 9
    for path, hits in zip(files, together):
        assert inference.search(index, path, k=5, model=scorer, candidates=64) == hits


def test_the_cli_writes_one_row_per_query_and_hit(tmp_path, monkeypatch):
    index, features, labels, model = build(tmp_path)
    queries = queries_near(features, 5)
    folder = tmp_path / "queries"
    files = query_files(folder / "sub", 3)
    for i in (3, 4):
        files.append(folder / f"q{i}.png")
        files[-1].write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    scorer = TableScorer(queries, model)
    monkeypatch.setattr(inference.Scorer, "load", staticmethod(lambda path: scorer))
    out = tmp_path / "hits.csv"
    result = invoke("search", index.file, folder, "-k", "3", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output == f"searched 5 queries, 15 hits: wrote {out}\n"
    with open(out, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["query", "rank", "path", "class", "score"]
    expected = inference.search(index, sorted(files), k=3, model=scorer)
    assert [(tmp_path / r["query"]).resolve() for r in rows[::3]] == [p.resolve() for p in sorted(files)]
    assert [(r["rank"], str((tmp_path / r["path"]).resolve()), r["class"]) for r in rows] == [
        (str(h.rank), h.path, h.class_name) for hits in expected for h in hits
    ]
    assert [float(r["score"]) for r in rows] == pytest.approx([h.score for hits in expected for h in hits], abs=1e-6)
    again = invoke("search", index.file, folder, "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.output
    printed = json.loads(invoke("search", index.file, sorted(files)[0], "-k", "2", "--json").output)
    assert [h["path"] for h in printed] == [h.path for h in expected[0][:2]]


# --------------------------------------------------------------------------- bad input


def test_k_larger_than_the_index(tmp_path):
    index, _, _, _ = build(tmp_path, count=50)
    query = query_files(tmp_path / "q", 1)[0]
    result = invoke("search", index.file, query, "-k", "51")
    assert result.exit_code == 2
    assert result.output == f"error: {index.file}: -k 51 is more than the index holds (50 entries)\n"


def test_a_query_folder_without_images(tmp_path):
    index, _, _, _ = build(tmp_path, count=50)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    result = invoke("search", index.file, empty)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {empty}: no images in this folder (looked for .bmp, ")
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize("name", [ann.FEATURES, ann.FAISS_INDEX, ann.PATHS, ann.NARROW])
def test_a_truncated_index_file(tmp_path, name):
    index, _, _, _ = build(tmp_path, count=50)
    path = index.file / name
    path.write_bytes(path.read_bytes()[:-100])
    result = invoke("search", index.file, query_files(tmp_path / "q", 1)[0])
    assert result.exit_code == 1
    size = json.loads((index.file / ann.MANIFEST).read_text("utf-8"))["files"][name]
    assert result.output == (
        f"error: {path}: truncated or changed ({size - 100:,} bytes where the manifest says {size:,}): embed again\n"
    )


def test_a_faiss_file_that_faiss_cannot_read(tmp_path):
    index, _, _, model = build(tmp_path, count=50)
    path = index.file / ann.FAISS_INDEX
    path.write_bytes(b"\0" * path.stat().st_size)  # the size the manifest says, wrong bytes
    files = query_files(tmp_path / "q", 1)
    with pytest.raises(dsxsd.DsxsdError) as caught:
        # fewer candidates than entries: FAISS is asked
        inference.search(index.file, files, k=2, model=TableScorer(np.zeros((1, 24)), model), candidates=10)
    assert str(caught.value).startswith(f"{path}: FAISS cannot read it (")
    assert str(caught.value).endswith("): embed again") and "\n" not in str(caught.value)


def test_an_index_of_a_newer_dsxsd_or_another_model(tmp_path):
    index, _, _, model = build(tmp_path, count=50)
    query = query_files(tmp_path / "q", 1)[0]
    manifest_path = index.file / ann.MANIFEST
    manifest = json.loads(manifest_path.read_text("utf-8"))
    newer = ann.ANN_VERSION + 1
    manifest_path.write_text(json.dumps({**manifest, "version": newer, "dsxsd_version": "9.0"}), "utf-8")
    result = invoke("search", index.file, query)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {index.file}: index version {newer} (dsxsd 9.0) is newer than this dsxsd reads: "
        "upgrade dsxsd or embed again\n"
    )
    manifest_path.write_text(json.dumps(manifest), "utf-8")
    model.write_bytes(b"another model, trained again")
    result = invoke("search", index.file, query)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {index.file}: the index was made with another model than the one now at {model} "
        "(its sha256 differs): embed again, or pass --model\n"
    )
    # and a model of another feature length, given with --model, is refused as for a .npz
    with pytest.raises(dsxsd.ModelFileError, match="makes 8-long features, the index holds 24-long ones"):
        inference.search(index, query, model=TableScorer(np.zeros((1, 8)), model))


def test_a_folder_that_is_not_an_index(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    result = invoke("search", folder, query_files(tmp_path / "q", 1)[0])
    assert result.exit_code == 1
    assert result.output == (
        f"error: {folder}: a folder without manifest.json: not a dsxsd index (made by 'dsxsd embed')\n"
    )


def test_without_faiss_the_install_line_is_given(tmp_path, monkeypatch):
    index, _, _, _ = build(tmp_path, count=50)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss fails
    result = invoke("search", index.file, query_files(tmp_path / "q", 1)[0])
    assert result.exit_code == 2
    assert result.output == (
        'error: an approximate index needs faiss, which is not installed: pip install "dsxsd[serve]"\n'
    )


@pytest.mark.parametrize(
    "kind, count, name, message",
    [
        ("ann", 10, "index.npz", "an approximate index is a folder: name it without .npz"),
        ("exact", 10, "index", "an exact index is one file whose name ends in .npz"),
    ],
)
def test_the_index_kind_and_its_name(kind, count, name, message):
    with pytest.raises(dsxsd.UsageError) as caught:
        _preflight.index_kind(kind, count, name)
    assert str(caught.value) == f"{name}: {message}"


def test_the_kind_auto_picks(tmp_path):
    assert _preflight.index_kind("auto", 19_999, "i.npz") == "exact"
    assert _preflight.index_kind("auto", 10, "index") == "ann"
    assert _preflight.index_kind("exact", 10**6, "i.npz") == "exact"
    with pytest.warns(dsxsd.SettingWarning) as warned:
        assert _preflight.index_kind("auto", 20_000, "i.npz") == "exact"
    assert str(warned[0].message) == (
        "i.npz: 20,000 images in an exact index: each search scores all of them with the head, slow from "
        "20,000 on; name --out without .npz for an approximate index (--exact says you mean it)"
    )


def test_a_large_npz_is_written_as_named_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(_preflight, "ANN_MIN_ENTRIES", 4)
    features, labels = clustered(6, 8, 2)
    for i, label in enumerate(labels):
        (tmp_path / "crops" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "crops" / label / f"e{i}.png").write_bytes(b"")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"an exported model")
    monkeypatch.setattr(inference.Scorer, "load", staticmethod(lambda path: TableScorer(features, model)))
    out = tmp_path / "index.npz"
    result = invoke("embed", model, tmp_path / "crops", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"warning: {out}: 6 images in an exact index: each search scores all of them" in result.output
    assert len(inference.load_index(out).paths) == 6
    quiet = invoke("embed", model, tmp_path / "crops", "--out", out, "--exact", "--overwrite")
    assert quiet.exit_code == 0 and "warning" not in quiet.output


def test_index_spec_scales_with_the_entries():
    assert ann.index_spec(600, 24) == ("Flat", 0)
    assert ann.index_spec(99_999, 4608) == ("Flat", 0)
    assert ann.index_spec(100_000, 64) == ("IVF256,SQ8", 16)
    assert ann.index_spec(1_000_000, 4608) == ("IVF1024,SQfp16", 128)  # 16-bit codes, an eighth of the lists past 256 features
    assert ann.index_spec(4_000_000, 4608) == ("IVF2048,SQfp16", 256)
    assert ann.index_spec(1_000_000, 255) == ("IVF1024,SQ8", 64)
    assert ann.index_spec(1_000_000, 256) == ("IVF1024,SQfp16", 128)  # from 256 features on


@pytest.mark.parametrize("width, columns", [(1, 7), (7, None), (65, 71), (71, None), (254, 255), (255, None), (256, 263)])
def test_padding_makes_lifted_vectors_a_multiple_of_8_long(width, columns):
    """``width`` is an entry vector's (features and the squared term); the lift adds one."""
    projection = ann.padding(width)
    if columns is None:
        assert projection is None
    else:
        assert projection.shape == (width, columns) and (columns + 1) % ann.FAISS_LENGTH_MULTIPLE == 0
        vectors = np.random.default_rng(0).normal(size=(3, width)).astype(np.float32)
        padded = vectors @ projection
        assert np.array_equal(padded[:, :width], vectors) and not padded[:, width:].any()
    # The selection past PCA_DIMS features (PCA_DIMS - 2 of them, the squared term, the lift)
    assert ann.PCA_DIMS % ann.FAISS_LENGTH_MULTIPLE == 0
