"""The image cache: memory or a disk store by --cache-limit, one decode pass that checks and
caches, batches from disk equal to those from memory, stores killed, stale, truncated or
edited handled, a resumed run decoding nothing."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no O_DIRECT either
    fcntl = None

import numpy as np
import pandas as pd
import pytest

from dsxsd import _preflight
from dsxsd.errors import HostileInputError, ImageDecodeError, ImageStoreError, OutputWriteError, UsageError

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dsxsd.train import data, fit, store  # noqa: E402
from train_support import IMAGE_SIZE, WIDTH, count_reads, make_shapes_manifest  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(width=WIDTH, image_size=IMAGE_SIZE, verbose=0, batch_size=8, lr=1e-3)
STREAM = dict(image_size=IMAGE_SIZE, batch_size=8, shuffle=True, seed=7, augment=True,
              resample_negatives=True, resample_positives=True, repeat=True)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_shapes_manifest(tmp_path_factory.mktemp("store"), per_class=8, positives=1)


def batches(ds, n: int):
    return [(a.numpy(), b.numpy(), y.numpy()) for (a, b), y in ds.take(n)]


def assert_same(first, second):
    assert len(first) == len(second)
    for x, y in zip(first, second):
        for a, b in zip(x, y):
            np.testing.assert_array_equal(a, b)


def train_paths(manifest) -> list[str]:
    return data.pair_table(data.read_manifest(manifest), "train", manifest).paths


def prepare(manifest, folder, **kwargs):
    settings = dict(image_size=IMAGE_SIZE, resize="stretch", cache="disk", folder=folder)
    return data.prepare({"train": train_paths(manifest)}, **{**settings, **kwargs})["train"]


# ------------------------------------------------------------------ sizes and settings


@pytest.mark.parametrize("text, size", [("500MB", 500 * 10**6), ("8GB", 8 * 10**9), ("1.5GiB", int(1.5 * 2**30)),
                                        ("64kb", 64_000), ("0", 0), ("1000", 1000), (" 2 GB ", 2 * 10**9)])
def test_cache_limits_are_sizes(text, size):
    assert _preflight.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1GB", "8 gigabytes", "", "1e9"])
def test_a_bad_cache_limit_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--cache-limit must be a size such as 500MB or 8GB") as info:
        _preflight.parse_size(text)
    assert info.value.exit_code == 2


def test_a_cache_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="--cache must be auto, memory, disk, none or a folder; .*notes.txt is a file"):
        _preflight.check_cache(tmp_path / "notes.txt", None)
    assert _preflight.check_cache(tmp_path / "new-folder", "2GB") == 2 * 10**9


def test_a_store_is_read_in_batch_order_only_where_the_memory_available_holds_it(manifest, tmp_path, monkeypatch):
    rows = prepare(manifest, tmp_path)
    assert 0 < store.available_memory()
    assert store.reads_in_batch_order(rows)  # a test's store fits any machine's memory
    monkeypatch.setattr(store, "available_memory", lambda: rows.array.nbytes - 1)
    assert not store.reads_in_batch_order(rows)


def mapped_resident_bytes(file: Path) -> int:
    """The resident bytes of this process's mappings of ``file`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:  # a mapping's first line: its address range, ..., its path
            inside = line.endswith(" " + str(file))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="resident pages per mapping: Linux")
def test_a_store_past_the_limit_keeps_no_more_of_its_pages_mapped_than_the_limit_leaves(manifest, tmp_path):
    rows = prepare(manifest, tmp_path)
    row_bytes, every = rows.array[0].nbytes, np.arange(len(rows.array))
    assert rows.mapped_budget >= rows.array.nbytes  # the default limit: all of a test's store may stay mapped
    rows.read(every, every[::-1].copy())
    assert mapped_resident_bytes(rows.file) >= rows.array.nbytes // 2
    # A limit of two rows, none of it taken by images in memory: the store's pages are
    # released whenever a read may have mapped more (a row's neighbours count with it).
    small = prepare(manifest, tmp_path / "small", cache_limit=2 * row_bytes)  # a store of its own: its own mapping
    assert small.mapped_budget == 2 * row_bytes
    read = sum(int(batch.sum() > 0) for batch in small.batches(2))  # what the frozen tower's features read
    assert read == -(-len(small.array) // 2)
    assert mapped_resident_bytes(small.file) <= 2 * row_bytes + 8192 < small.array.nbytes
    small.read(every, every[::-1].copy())
    assert mapped_resident_bytes(small.file) <= 2 * row_bytes + 8192
    # What the limit leaves beside the splits held in memory, the stores share.
    paths = train_paths(manifest)
    assert len(paths) >= 12
    splits = {"train": paths, "val": paths[:4], "test": paths[4:8]}
    found = data.prepare(splits, image_size=IMAGE_SIZE, resize="stretch", cache="auto", cache_limit=10 * row_bytes,
                         folder=tmp_path / "auto")
    assert [found[k].kind for k in splits] == ["disk", "memory", "memory"]
    assert found["train"].mapped_budget == 2 * row_bytes
    splits = {"train": paths, "val": paths[1:], "small": paths[:4]}
    found = data.prepare(splits, image_size=IMAGE_SIZE, resize="stretch", cache="auto", cache_limit=10 * row_bytes,
                         folder=tmp_path / "auto")
    assert [found[k].kind for k in splits] == ["disk", "disk", "memory"]
    assert found["train"].mapped_budget == found["val"].mapped_budget == 3 * row_bytes


def test_the_default_limit_is_half_the_memory():
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < _preflight.default_cache_limit() <= physical // 2


# -------------------------------------------------------------------- memory or disk


@pytest.mark.parametrize("in_batch_order", [True, False], ids=["page-cache-holds-it", "sorted-reads"])
def test_a_tiny_limit_puts_the_images_in_a_store_whose_batches_equal_memory(manifest, tmp_path, monkeypatch,
                                                                            in_batch_order):
    # Both ways of reading a store: in batch order (the page cache holds it) and in
    # ascending order put back in batch order (it does not).
    monkeypatch.setattr(store, "reads_in_batch_order", lambda rows: in_batch_order)
    on_disk = data.make_dataset(manifest, "train", cache=tmp_path / "c", **STREAM)
    auto = data.make_dataset(manifest, "train", cache="auto", cache_limit=1, **STREAM)
    in_memory = data.make_dataset(manifest, "train", cache="memory", **STREAM)
    decoded = data.make_dataset(manifest, "train", cache="none", **STREAM)
    n = 3 * data.pair_table(data.read_manifest(manifest), "train").batches(8)  # three passes
    expected = batches(in_memory, n)
    for ds in (on_disk, auto, decoded):
        assert_same(batches(ds, n), expected)
    stores = sorted(p.suffix for p in (tmp_path / "c").iterdir())
    assert stores == [".json", ".u8"]


def test_auto_keeps_what_fits_the_limit_in_memory(manifest, tmp_path):
    paths = train_paths(manifest)
    one_split = len(paths) * IMAGE_SIZE * IMAGE_SIZE * 3
    splits = {"train": paths, "val": paths[:5]}
    kinds = {k: r.kind for k, r in data.prepare(
        splits, image_size=IMAGE_SIZE, resize="stretch", cache="auto", cache_limit=one_split, folder=tmp_path,
    ).items()}
    assert kinds == {"train": "memory", "val": "disk"}  # the limit is for all splits together
    kinds = {k: r.kind for k, r in data.prepare(
        splits, image_size=IMAGE_SIZE, resize="stretch", cache="auto", cache_limit=2 * one_split, folder=tmp_path,
    ).items()}
    assert kinds == {"train": "memory", "val": "memory"}


# ------------------------------------------------------------- one pass, and reuse


def test_one_pass_checks_and_caches_and_a_finished_store_is_reused(manifest, tmp_path, count_reads):
    first = prepare(manifest, tmp_path)
    n = len(train_paths(manifest))
    assert first.kind == "disk" and first.decoded == n
    assert set(count_reads.values()) == {1} and len(count_reads) == n  # each image read once, checked and stored
    again = prepare(manifest, tmp_path)
    assert again.decoded == 0 and sum(count_reads.values()) == n  # nothing read again
    np.testing.assert_array_equal(first.array, again.array)


def test_an_undecodable_image_is_listed_and_leaves_no_store(manifest, tmp_path):
    paths = train_paths(manifest)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    with pytest.raises(ImageDecodeError, match=f"1 image cannot be decoded: {broken}"):
        data.prepare({"train": paths[:4] + [str(broken)] + paths[4:]}, image_size=IMAGE_SIZE, resize="stretch",
                      cache="disk", folder=tmp_path / "c", source="pairs.csv")
    assert list((tmp_path / "c").iterdir()) == []  # nothing half-written stays


BOMB_FORMATS = {  # every format TensorFlow decodes, each header read without Pillow
    "jpeg": dict(format="JPEG"), "jpeg-progressive": dict(format="JPEG", progressive=True),
    "jpeg-exif": dict(format="JPEG", exif=True),  # 10 kB of Exif before the frame header
    "png": dict(format="PNG"), "gif": dict(format="GIF"), "bmp": dict(format="BMP"),
    "webp-lossy": dict(format="WEBP"), "webp-lossless": dict(format="WEBP", lossless=True),
    "webp-extended": dict(format="WEBP", exif=True),  # with Exif: a VP8X header, the canvas size
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns, then we refuse
@pytest.mark.parametrize("kind", sorted(BOMB_FORMATS))
def test_decompression_bombs_are_listed_and_never_stored(tmp_path, monkeypatch, kind):
    from PIL import Image

    paths = []
    for name, size in (("small", (20, 15)), ("big", (37, 29)), ("other", (20, 15))):  # 300 and 1073 pixels
        paths.append(str(tmp_path / f"{name}.{kind}"))
        settings = dict(BOMB_FORMATS[kind])
        if settings.get("exif"):
            settings["exif"] = Image.Exif()
            settings["exif"][0x010E] = "a description " * 700
        Image.new("RGB", size, (200, 10, 10)).save(paths[-1], **settings)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1072)  # big by one pixel
    with pytest.raises(HostileInputError) as info:
        data.prepare({"train": paths}, image_size=IMAGE_SIZE, resize="stretch", cache="disk", folder=tmp_path / "c",
                     source="pairs.csv")
    assert str(info.value) == f"pairs.csv: 1 image over 1072 pixels (decompression bomb?): {paths[1]}"
    assert list((tmp_path / "c").iterdir()) == []
    if kind != "gif":  # the header's bytes bound the size: Pillow never opens the file
        monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("opened by Pillow"))
    for limit in (1073, None):  # at the limit, and Pillow's limit off: nothing is a bomb
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        images = data.prepare({"train": paths}, image_size=IMAGE_SIZE, resize="stretch", cache="memory")["train"]
        assert images.decoded == 3 and images.array[1].max() > 100


def _gif_screen_smaller_than_its_frame(path, size):
    """A GIF whose header's screen size says 2 x 2 around a frame of ``size``, which the
    decoder reads whole."""
    from PIL import Image

    stream = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(stream, format="GIF")
    gif = bytearray(stream.getvalue())
    gif[6:10] = bytes([2, 0, 2, 0])
    path.write_bytes(bytes(gif))


def _webp_without_its_chunk_name(path, size):
    """A lossless WebP stream straight after ``RIFF....WEBP``, no ``VP8L`` chunk: libwebp
    decodes it, Pillow does not open it."""
    from PIL import Image

    stream = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(stream, format="WEBP", lossless=True)
    payload = stream.getvalue()[20:]
    path.write_bytes(b"RIFF" + (4 + len(payload)).to_bytes(4, "little") + b"WEBP" + payload)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_files_whose_header_bytes_do_not_bound_their_size_are_opened_by_pillow_first(tmp_path, monkeypatch):
    from PIL import Image

    small, bomb, bare = tmp_path / "small.png", tmp_path / "bomb.gif", tmp_path / "bare.webp"
    Image.new("RGB", (20, 15), (200, 10, 10)).save(small)
    _gif_screen_smaller_than_its_frame(bomb, (37, 29))  # 1,073 pixels in a 4-pixel screen
    _webp_without_its_chunk_name(bare, (20, 15))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1072)
    with pytest.raises(HostileInputError) as info:
        data.prepare({"train": [str(small), str(bomb)]}, image_size=IMAGE_SIZE, resize="stretch", cache="memory",
                     source="pairs.csv")
    assert str(info.value) == f"pairs.csv: 1 image over 1072 pixels (decompression bomb?): {bomb}"
    with pytest.raises(ImageDecodeError) as info:
        data.prepare({"train": [str(small), str(bare)]}, image_size=IMAGE_SIZE, resize="stretch", cache="memory",
                     source="pairs.csv")
    assert str(info.value) == f"pairs.csv: 1 image cannot be decoded: {bare}"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1073)  # at the limit: the GIF is an image like any other
    images = data.prepare({"train": [str(small), str(bomb)]}, image_size=IMAGE_SIZE, resize="stretch",
                          cache="disk", folder=tmp_path / "c")["train"]
    assert images.decoded == 2 and images.array[1, ..., 0].min() > 150


def write_in_small_chunks(monkeypatch):
    """Around the page cache, where the system allows it: in chunks of a 4 KiB block, so
    test-sized stores fill several, their rows across chunk and batch ends."""
    monkeypatch.setattr(store, "DIRECT_CHUNK", 4096)
    monkeypatch.setattr(data, "DECODE_BATCH", 5)


def write_without_o_direct(monkeypatch):
    """A system without O_DIRECT (macOS, Windows): through the page cache."""
    write_in_small_chunks(monkeypatch)
    monkeypatch.delattr(os, "O_DIRECT", raising=False)


def refuse_o_direct_at_open(monkeypatch):
    """A file system that refuses O_DIRECT when the file is opened (tmpfs before Linux 6.6)."""
    write_in_small_chunks(monkeypatch)
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


def refuse_o_direct_writes(monkeypatch):
    """A file system that takes the flag but refuses the writes (some FUSE file systems)."""
    write_in_small_chunks(monkeypatch)
    real_write = os.write

    def refusing(fd, buffer):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, buffer)

    monkeypatch.setattr(os, "write", refusing)


WRITE_WAYS = {f.__name__: f for f in (write_in_small_chunks, write_without_o_direct, refuse_o_direct_at_open,
                                      refuse_o_direct_writes)}
DIRECT_WAYS = ("write_in_small_chunks", "refuse_o_direct_at_open", "refuse_o_direct_writes")


@pytest.mark.parametrize("way", sorted(WRITE_WAYS))
def test_a_store_holds_what_memory_holds_however_the_system_lets_it_be_written(manifest, tmp_path, monkeypatch, way):
    if way in DIRECT_WAYS and not hasattr(os, "O_DIRECT"):
        pytest.skip("O_DIRECT: Linux")
    expected = prepare(manifest, tmp_path, cache="memory").array
    WRITE_WAYS[way](monkeypatch)
    written = prepare(manifest, tmp_path / "c")
    assert written.kind == "disk" and written.decoded == len(expected)
    np.testing.assert_array_equal(written.array, expected)
    meta = json.loads(next((tmp_path / "c").glob("*.json")).read_text())
    assert meta["bytes"] == expected.nbytes and meta["sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()
    monkeypatch.undo()
    again = prepare(manifest, tmp_path / "c")
    assert again.decoded == 0
    np.testing.assert_array_equal(again.array, expected)


@pytest.mark.parametrize("way", ["write_in_small_chunks", "write_without_o_direct"])
def test_a_store_whose_writer_fails_other_than_by_the_disk_is_one_error_naming_it(manifest, tmp_path, monkeypatch,
                                                                                  way):
    def fails(fd):
        raise ValueError("not a disk error")

    WRITE_WAYS[way](monkeypatch)
    monkeypatch.setattr(store, "SYNC_EVERY", 1)  # through the page cache: flushed after each batch
    monkeypatch.setattr(os, "fdatasync", fails)
    paths = train_paths(manifest)
    with pytest.raises(OutputWriteError) as info:
        data.prepare({"train": paths}, image_size=IMAGE_SIZE, resize="stretch", cache="disk", folder=tmp_path)
    store_file = store.store_files(tmp_path, "train", paths, IMAGE_SIZE, "stretch")[0]
    assert str(info.value) == f"{store_file}: writing the image store failed: ValueError('not a disk error')"
    assert list(tmp_path.iterdir()) == []


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from dsxsd.train import data
    from dsxsd.errors import OutputWriteError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    try:
        data.prepare({"train": sys.argv[2:]}, image_size=%d, resize="stretch", cache="disk", folder=sys.argv[1])
    except OutputWriteError as exc:
        print(exc)
    """ % IMAGE_SIZE
)


def test_a_store_that_cannot_be_written_is_one_error_naming_it(manifest, tmp_path):
    paths = train_paths(manifest)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path), *paths], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store_file = store.store_files(tmp_path, "train", paths, IMAGE_SIZE, "stretch")[0]
    assert done.stdout.strip() == f"{store_file}: cannot write the image store: File too large"
    assert list(tmp_path.iterdir()) == []  # nothing half-written stays


def test_a_store_of_other_settings_or_changed_images_is_not_read(manifest, tmp_path):
    first = prepare(manifest, tmp_path)
    other_size = prepare(manifest, tmp_path, image_size=IMAGE_SIZE + 8)
    letterbox = prepare(manifest, tmp_path, resize="letterbox")
    assert other_size.decoded and letterbox.decoded and other_size.array.shape[1] == IMAGE_SIZE + 8
    changed = Path(train_paths(manifest)[0])
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an image edited since
    rebuilt = prepare(manifest, tmp_path)
    assert rebuilt.decoded == len(first.array)
    assert len(list(tmp_path.glob("*.u8"))) == 4 and len(list(tmp_path.glob("*.json"))) == 4


KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from dsxsd.train import data, store
    data.DECODE_BATCH = 4
    write = store.StoreWriter.write
    def write_then_die(self, first, rows):
        write(self, first, rows)
        if self.written >= 8:
            os.kill(os.getpid(), signal.SIGKILL)
    store.StoreWriter.write = write_then_die
    data.prepare({"train": sys.argv[2:]}, image_size=%d, resize="stretch", cache="disk", folder=sys.argv[1])
    """ % IMAGE_SIZE
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_store_killed_during_its_build_is_rebuilt(manifest, tmp_path):
    paths = train_paths(manifest)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(tmp_path), *paths], env=env,
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    left = [p.name for p in tmp_path.iterdir()]
    assert left and not any(name.endswith((".json", ".u8")) for name in left)  # only the temporary
    rebuilt = prepare(manifest, tmp_path)
    assert rebuilt.decoded == len(paths)
    np.testing.assert_array_equal(rebuilt.array, prepare(manifest, tmp_path, cache="memory").array)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".u8"]  # the temporary is gone


def test_rows_without_their_json_are_an_unfinished_store_and_rebuilt(manifest, tmp_path):
    first = prepare(manifest, tmp_path)
    meta = next(tmp_path.glob("*.json"))
    meta.unlink()  # killed between renaming the rows into place and writing the .json
    again = prepare(manifest, tmp_path)
    assert again.decoded == len(first.array) and meta.is_file()
    next(tmp_path.glob("*.u8")).unlink()  # the rows deleted by hand: built again too
    assert prepare(manifest, tmp_path).decoded == len(first.array)


# --------------------------------------------------------------------- refusals


def test_a_truncated_store_is_refused_naming_its_file(manifest, tmp_path):
    prepare(manifest, tmp_path)
    rows = next(tmp_path.glob("*.u8"))
    size = rows.stat().st_size
    os.truncate(rows, size - 100)
    with pytest.raises(ImageStoreError) as info:
        prepare(manifest, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{rows}: image store is truncated: {size - 100} bytes, ")
    assert "\n" not in message and "Delete it to rebuild it" in message


def test_an_edited_store_is_refused_and_a_copied_one_is_read(manifest, tmp_path):
    first = prepare(manifest, tmp_path)
    rows = next(tmp_path.glob("*.u8"))
    stat = rows.stat()
    os.utime(rows, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # copied: same bytes, new time
    np.testing.assert_array_equal(prepare(manifest, tmp_path).array, first.array)
    with open(rows, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ImageStoreError, match=f"^{rows}: image store was modified after it was written"):
        prepare(manifest, tmp_path)


def test_a_json_that_is_not_a_stores_is_refused(manifest, tmp_path):
    prepare(manifest, tmp_path)
    meta = next(tmp_path.glob("*.json"))
    meta.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ImageStoreError, match=f"^{meta}: not the .json of a dsxsd image store"):
        prepare(manifest, tmp_path)


# --------------------------------------------------------------------------- fit


def test_a_run_past_its_limit_trains_from_its_store_as_from_memory_and_resumes_without_decoding(
    manifest, tmp_path, count_reads
):
    table = pd.read_csv(manifest)
    distinct = len(set(table.left) | set(table.right))
    summary = fit(manifest, tmp_path / "disk", epochs=1, cache_limit="1KB", **SMALL)
    assert summary["image_cache"] == {"train": "disk", "val": "disk"}
    assert summary["images_decoded"] == distinct  # train, val and test, each once
    assert set(count_reads.values()) == {1} and len(count_reads) == distinct
    stores = sorted(p.name.split("-")[0] + p.suffix for p in (tmp_path / "disk" / "cache").iterdir())
    assert stores == ["train.json", "train.u8", "val.json", "val.u8"]
    assert json.loads((tmp_path / "disk" / "config.json").read_text())["cache_limit"] == 1000
    resumed = fit(manifest, tmp_path / "disk", epochs=2, cache_limit="1KB", **SMALL)
    assert resumed["initial_epoch"] == 1 and resumed["images_decoded"] == 0
    assert sum(count_reads.values()) == distinct  # nothing read again
    in_memory = fit(manifest, tmp_path / "memory", epochs=2, cache="memory", **SMALL)
    assert in_memory["image_cache"] == {"train": "memory", "val": "memory"}
    disk_history = pd.read_csv(tmp_path / "disk" / "history.csv")
    pd.testing.assert_frame_equal(disk_history, pd.read_csv(tmp_path / "memory" / "history.csv"))


def test_a_bad_image_refuses_a_new_run_and_leaves_no_folder(tmp_path):
    manifest = make_shapes_manifest(tmp_path / "data", per_class=8, positives=1)
    bad = pd.read_csv(manifest).query("split == 'val'").left.iloc[0]
    (manifest.parent / bad).write_bytes(b"GIF89a but not really")
    with pytest.raises(ImageDecodeError, match="1 image cannot be decoded: .*" + bad):
        fit(manifest, tmp_path / "run", epochs=1, cache="disk", **SMALL)
    assert not (tmp_path / "run").exists()


def test_a_run_killed_while_it_built_its_store_is_taken_up_again(manifest, tmp_path):
    run = tmp_path / "run"
    (run / "cache").mkdir(parents=True)
    (run / ".lock").write_text("4242\n")  # its holder is gone: nobody holds the flock
    (run / "cache" / ".train-0123456789abcdef.u8.4242.abcdefgh.tmp").write_bytes(b"\0" * 100)
    summary = fit(manifest, run, epochs=1, cache="disk", **SMALL)
    assert summary["epochs"] == 1 and summary["images_decoded"] > 0
    assert not list((run / "cache").glob(".*.tmp"))  # what the killed build left is cleared away
    (tmp_path / "foreign" / "cache").mkdir(parents=True)
    (tmp_path / "foreign" / "cache" / "thesis.tex").write_text("mine")
    with pytest.raises(Exception, match="not a dsxsd run folder"):
        fit(manifest, tmp_path / "foreign", epochs=1, **SMALL)
