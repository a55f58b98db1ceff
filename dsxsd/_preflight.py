"""What the model commands read and check before TensorFlow is imported.

Importing :mod:`dsxsd.train` imports TensorFlow: seconds before anything else happens. An
argument that cannot work (an N-way test on fewer classes than N, a manifest of the wrong
shape, a split it lacks, an output that exists or cannot be written) should fail at once,
not after that wait. So the readers of what train, evaluate, predict, embed and search
consume live here, needing only numpy and pandas, with the checks built on them: the
commands run the ``check_*`` functions before they import :mod:`dsxsd.train`, and
:mod:`dsxsd.train.infer` reads its inputs with the same readers (and re-exports them)
before it loads a model, so the Python API fails as early, with the same messages.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import _io
from ._metrics_file import MetricsFile, n_way_identity, pairs_identity
from .environment import configured_backend
from .errors import (
    DsxsdError, ManifestError, MissingDependencyError, ModelFileError, OutputExistsError, RunInUseError,
    UsageError, SettingWarning, require_path,
)

if TYPE_CHECKING:
    import numpy as np

    from .ann import AnnIndex

# numpy and pandas are imported where used: the CLI imports this module, and
# ``dsxsd --help`` should not wait for them.

INDEX_FORMAT = "dsxsd.index"
INDEX_VERSION = 1
# From this many entries an exact .npz index is refused in favour of an approximate one
# (dsxsd.ann): below it the head scores every entry of a query in milliseconds
# (benchmarks/README.md, search).
ANN_MIN_ENTRIES = 20_000
# How many candidates an approximate index hands to the head per query (from a FAISS
# shortlist of dsxsd.ann.shortlist_size entries); benchmarks/README.md (search) has the
# recall of the head's top 10 against this number.
DEFAULT_CANDIDATES = 256
# The split whose pairs calibrate the decision threshold (dsxsd.train.evaluate).
CALIBRATION_SPLIT = "val"
# The lock file a training run holds in its run folder (dsxsd.train.run.lock_run_folder).
RUN_LOCK = ".lock"
# The --backbone-weights value that asks for Keras' own VGG16 ImageNet weights, as
# keras.applications.VGG16(weights="imagenet") does (dsxsd.train.network).
IMAGENET_WEIGHTS = "imagenet"
# Where training keeps a split's decoded images (dsxsd.train.store): "auto" chooses memory
# or disk by --cache-limit; any other value is a folder for the disk store.
CACHE_MODES = ("auto", "memory", "disk", "none")
# --augment's policies (dsxsd.train.augment) and --lr-schedule's schedules (dsxsd.train.fit).
AUGMENTATIONS = ("none", "basic", "crops")
LR_SCHEDULES = ("constant", "cosine", "plateau")
# Whether each policy flips images when --augment-flips is not given.
AUGMENT_FLIPS = {"none": False, "basic": True, "crops": False}


# --------------------------------------------------------------------------- image lists


@dataclass(frozen=True)
class ImageList:
    """Images with their classes, from a crops manifest, a class-folder tree or the
    images of one split of a pairs manifest. ``paths`` are as found (absolute when the
    source's folder was given absolute)."""

    paths: tuple[Path, ...]
    classes: tuple[str, ...]
    source: Path
    kind: str  # "crops", "tree" or "pairs"


def read_image_list(source: str | os.PathLike[str], split: str | None = None) -> ImageList:
    """The images ``source`` names and their classes.

    ``source`` is a crops manifest (``path,class,...``, paths relative to its folder), a
    folder of per-class subfolders (``root/<class>/*.jpg``, the Omniglot layout), or a
    pairs manifest, of which the distinct images of ``split`` are taken (all splits when
    ``split`` is ``None``). Read with :mod:`dsxsd.manifests`, the reader make-pairs uses.
    """
    from .manifests import read_crops, read_csv_manifest, scan_class_folders

    source = Path(source)
    if source.is_dir():
        frame = scan_class_folders(source)
        return ImageList(
            tuple(source / p for p in frame["path"]), tuple(frame["class"]), source, "tree"
        )
    columns = set(read_csv_manifest(source, ()).columns)
    if {"left", "right", "label"} <= columns:
        return _pair_images(source, split)
    if not {"path", "class"} <= columns:
        raise ManifestError(
            "neither a crops manifest (columns path,class,...) nor a pairs manifest "
            f"(left,right,label,...); found columns {', '.join(sorted(columns)) or 'none'}",
            file=source,
        )
    frame = read_crops(source)
    if frame.empty:
        raise ManifestError("the crops manifest lists no images", file=source)
    return ImageList(
        tuple(source.parent / p for p in frame["path"]), tuple(frame["class"]), source, "crops"
    )


def _pair_images(manifest: Path, split: str | None) -> ImageList:
    frame = read_pairs_frame(manifest, split)
    seen: dict[str, str] = {}
    for side in ("left", "right"):
        for path, name in zip(frame[side], frame[f"{side}_class"]):
            seen.setdefault(path, name)
    return ImageList(tuple(Path(p) for p in seen), tuple(seen.values()), manifest, "pairs")


def read_pairs_frame(manifest: str | os.PathLike[str], split: str | None = None):
    """The pairs manifest (validated by :func:`dsxsd.read_pairs`) as a frame with
    ``left``/``right`` made absolute against its folder and ``label`` as int, filtered to
    ``split`` when given (an error if no pair is in it)."""
    from .manifests import read_pairs

    manifest = Path(manifest)
    frame = read_pairs(manifest)
    root = manifest.resolve().parent
    for side in ("left", "right"):
        frame[side] = [p if os.path.isabs(p) else os.path.normpath(root / p) for p in frame[side].astype(str)]
    if split is not None:
        require_split(frame, split, manifest)
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def require_split(frame, split: str, manifest: str | os.PathLike[str]) -> None:
    """Refuse a split no pair of ``frame`` (read from ``manifest``) is in."""
    present = sorted(set(frame["split"]))
    if split not in present:
        raise ManifestError(
            f"no pairs in split {split!r} (splits present: {', '.join(present) or 'none'})",
            file=manifest,
        )


def distinct_images(frame) -> int:
    """How many distinct images the pairs of ``frame`` name: the length of a progress bar
    over their embedding."""
    return len(set(frame["left"]) | set(frame["right"]))


# --------------------------------------------------------------------------- indexes


@dataclass(frozen=True)
class Index:
    """An embedding index: a feature vector per image, its path and class.

    ``paths`` are absolute once loaded (stored relative to the index's folder, so a folder
    moved as a whole keeps working); ``model`` is the model that made it, likewise.
    """

    features: np.ndarray  # [N, D] float32
    paths: tuple[str, ...]
    classes: tuple[str, ...]
    model: Path
    image_size: int
    file: Path | None = None


def load_index(path: str | os.PathLike[str]) -> Index:
    """Read an index written by :func:`dsxsd.train.infer.embed`; anything else is a clear
    error."""
    import zipfile

    import numpy as np

    path = require_path(path)
    if not path.is_file():
        raise DsxsdError("a folder, not an index file", file=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != INDEX_FORMAT:
                raise KeyError("format")
            version = int(data["version"])
            features = np.asarray(data["features"], dtype=np.float32)
            paths = tuple(str(p) for p in data["paths"])
            classes = tuple(str(c) for c in data["classes"])
            model = str(data["model"])
            image_size = int(data["image_size"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        raise DsxsdError("not a dsxsd index (.npz written by 'dsxsd embed')", file=path) from None
    if version > INDEX_VERSION:
        raise DsxsdError(f"index version {version} is newer than this dsxsd reads", file=path)
    if features.ndim != 2 or not (len(paths) == len(classes) == len(features)):
        raise DsxsdError("index arrays disagree in length", file=path)
    folder = path.parent
    return Index(
        features,
        tuple(str((folder / p).resolve()) for p in paths),
        classes,
        (folder / model).resolve(),
        image_size,
        path,
    )


def open_index(path: str | os.PathLike[str]) -> Index | AnnIndex:
    """An exact ``.npz`` index or an approximate index folder, opened."""
    path = require_path(path)
    if path.is_dir():
        from .ann import load

        return load(path)
    return load_index(path)


def check_k(index: Index | AnnIndex, k: int) -> None:
    """Refuse ``k`` hits from an index with fewer entries: a usage error."""
    if k < 1:
        raise UsageError(f"-k must be at least 1, got {k}")
    if len(index.paths) == 0:
        raise DsxsdError("the index is empty", file=index.file or "index")
    if k > len(index.paths):
        raise UsageError(f"-k {k} is more than the index holds ({len(index.paths)} entries)", file=index.file or "index")


# The index kinds dsxsd embed writes: "exact" (one .npz, searched by the head over every
# entry) and "ann" (a folder, dsxsd.ann: FAISS candidates re-ranked by the head).
INDEX_KINDS = ("auto", "exact", "ann")


def index_kind(kind: str, count: int, out: str | os.PathLike[str]) -> str:
    """The kind of index ``dsxsd embed`` writes for ``count`` images into ``out``:
    ``auto`` is ``exact`` for an ``out`` named ``.npz``, else ``ann``. A
    :class:`UsageError` when the name does not fit the kind: an exact index is one
    ``.npz`` file, an approximate one a folder.

    An ``.npz`` of :data:`ANN_MIN_ENTRIES` images or more is written as asked, with a
    :class:`SettingWarning`: whoever names an ``.npz`` wants that file (to load it with
    numpy, to keep one file), and it searches right, only slower; ``exact`` (``--exact``)
    writes it without a word."""
    if kind not in INDEX_KINDS:
        raise UsageError(f"index kind must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    npz = Path(out).suffix == ".npz"
    if kind == "auto":
        if not npz:
            return "ann"
        if count >= ANN_MIN_ENTRIES:
            import warnings

            warnings.warn(
                SettingWarning(
                    f"{out}: {count:,} images in an exact index: each search scores all of them with "
                    f"the head, slow from {ANN_MIN_ENTRIES:,} on; name --out without .npz for an "
                    "approximate index (--exact says you mean it)"
                ),
                stacklevel=3,
            )
        return "exact"
    if kind == "ann" and npz:
        raise UsageError("an approximate index is a folder: name it without .npz", file=out)
    if kind == "exact" and not npz:
        # np.savez appends .npz to other names; say so rather than write elsewhere.
        raise UsageError("an exact index is one file whose name ends in .npz", file=out)
    return kind


# --------------------------------------------------------------------------- outputs


def check_output_file(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse an output file that exists (without ``overwrite``) or could not be created."""
    path = Path(path)
    _io.check_output(path, overwrite)
    _io.check_writable(path.parent, path)
    return path


def check_index_file(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """:func:`check_output_file` for an index, whose name must end in ``.npz``."""
    path = Path(path)
    if path.suffix != ".npz":
        # np.savez appends .npz to other names; say so rather than write elsewhere.
        raise DsxsdError("the index file name must end in .npz", file=path)
    return check_output_file(path, overwrite)


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that is a file or could not be created or written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError("exists and is not a folder", file=path)
    _io.check_writable(path, path)
    return path


# --------------------------------------------------------------------------- per command


def check_model(path: str | os.PathLike[str]) -> Path:
    """The model file ``path`` names (a run folder means its ``model.keras``)."""
    path = Path(path)
    model = path / "model.keras" if path.is_dir() else path
    if not model.is_file():
        raise ModelFileError("model file not found", file=model)
    return model


def check_one_shot(images: ImageList, n_way: int, seed: int | None) -> None:
    """Refuse N-way trials the images cannot make (fewer than N classes...)."""
    from . import metrics

    try:
        metrics.one_shot_trials(images.classes, n_way, 1, seed)
    except ValueError as exc:
        raise ManifestError(str(exc), file=images.source) from None


# The Keras backends dsxsd trains under: Keras fits from the tf.data pipeline under both,
# and the run folder's promises (a resumed run equals an uninterrupted one) are tested
# under both. PyTorch runs a trained model (Keras code only), but does not train here.
TRAIN_BACKENDS = ("tensorflow", "jax")


def check_train_backend(backend: str) -> None:
    """Refuse a Keras backend that dsxsd does not train under. ``dsxsd train`` passes the
    one Keras would read (KERAS_BACKEND, keras.json) before Keras is imported;
    :func:`dsxsd.train.fit` the backend Keras runs."""
    if backend not in TRAIN_BACKENDS:
        raise UsageError(
            f"training runs under Keras' tensorflow or jax backend, not {backend!r}: "
            "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
        )


def check_backbone_weights(backbone_weights: str | os.PathLike[str] | None, width: float) -> None:
    """Refuse ImageNet weights for a tower they cannot fit: Keras publishes VGG16's
    weights at full width only, while any image size fits them (no-top convolutions)."""
    if isinstance(backbone_weights, str) and backbone_weights == IMAGENET_WEIGHTS and width != 1.0:
        raise UsageError(
            f"--backbone-weights imagenet needs --width 1.0, not {width:g}: Keras' ImageNet VGG16 "
            "weights exist at full width only"
        )


def check_frozen_backbone(freeze_backbone: bool, fine_tune_epochs: int, augment: bool) -> None:
    """Refuse what a frozen tower cannot do. Its features are computed once per image and
    the head trains on those; an augmented image is a new image every batch, whose
    features would have to be computed every batch: the tower run per pair, which is what
    freezing it exists to avoid. Refused rather than quietly run that slow way."""
    if fine_tune_epochs < 0:
        raise UsageError(f"fine-tune epochs must be at least 0, got {fine_tune_epochs}")
    if fine_tune_epochs and not freeze_backbone:
        raise UsageError("--fine-tune-epochs needs --freeze-backbone: it fine-tunes after the frozen stage")
    if freeze_backbone and augment:
        raise UsageError(
            "--augment cannot be combined with --freeze-backbone: the frozen tower's features are computed "
            "once per image, and augmented images would need the tower run for every pair; drop one of the two"
        )


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(size: str | int, what: str = "--cache-limit") -> int:
    """Bytes from ``500MB``, ``8GB``, ``1.5GiB`` or a plain number of bytes (MB and GB are
    powers of ten, MiB and GiB of two); anything else is a :class:`UsageError`."""
    if isinstance(size, int) and not isinstance(size, bool):
        value, unit = float(size), ""
    else:
        import re

        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(size))
        value, unit = (float(match[1]), match[2].lower()) if match else (-1.0, "")
        if unit not in _SIZE_UNITS:
            value = -1.0
    if value < 0:
        raise UsageError(f"{what} must be a size such as 500MB or 8GB, got {size!r}")
    return int(value * _SIZE_UNITS[unit])


# Where a container's memory limit is: cgroup v2, then v1.
CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def container_memory_limit() -> int | None:
    """This container's memory limit in bytes (the lowest :data:`CGROUP_MEMORY_LIMITS`
    gives), or ``None`` where there is none (``max``) or no cgroup says."""
    limits = []
    for limit_file in CGROUP_MEMORY_LIMITS:
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits, default=None)


def default_cache_limit() -> int:
    """Half the memory this process may use: the machine's, or its container's limit
    (:func:`container_memory_limit`) where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 8 * 10**9
    limit = container_memory_limit()
    return min(total, limit if limit is not None else total) // 2


def check_cache(cache: str | os.PathLike[str], cache_limit: str | int | None) -> int:
    """``--cache``'s value must be a mode or a folder (not a file); ``--cache-limit`` a
    size. Returns the limit in bytes (:func:`default_cache_limit` when ``None``)."""
    if str(cache) not in CACHE_MODES and Path(cache).exists() and not Path(cache).is_dir():
        raise UsageError(f"--cache must be auto, memory, disk, none or a folder; {cache} is a file")
    return default_cache_limit() if cache_limit is None else parse_size(cache_limit)


def augment_policy(augment: bool | str | None) -> str:
    """``augment`` as one of :data:`AUGMENTATIONS`: ``True`` is ``basic`` (what
    ``augment=True`` meant before there were policies), ``False``/``None`` ``none``."""
    if augment is None or augment is False:
        return "none"
    if augment is True:
        return "basic"
    if augment not in AUGMENTATIONS:
        raise UsageError(f"unknown augmentation {augment!r}; expected one of {', '.join(AUGMENTATIONS)}")
    return augment


def augment_flips(policy: str, flips: bool | None) -> bool:
    """Whether ``policy`` flips images: ``flips``, or the policy's default when ``None``
    (``basic`` flips; ``crops`` does not, as a mirrored digit or word is another object)."""
    return AUGMENT_FLIPS[policy] if flips is None else bool(flips)


def check_recipe(
    *, augment: bool | str | None = None, weight_decay: float = 0.0, lr_schedule: str = "constant",
    flips: bool | None = None,
) -> None:
    """Refuse an augmentation, weight decay or learning-rate schedule that does not exist,
    and flips without an augmentation to flip in."""
    if augment_policy(augment) == "none" and flips:
        raise UsageError("--augment-flips needs --augment basic or --augment crops")
    if not isinstance(weight_decay, numbers.Real) or isinstance(weight_decay, bool) or not 0 <= weight_decay < math.inf:
        raise UsageError(f"weight decay must be a number of at least 0, got {weight_decay!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"unknown learning-rate schedule {lr_schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")


def check_train(
    manifest: str | os.PathLike[str], out: str | os.PathLike[str], *, width: float = 1.0,
    backbone_weights: str | os.PathLike[str] | None = None, augment: bool | str = False, freeze_backbone: bool = False,
    fine_tune_epochs: int = 0, weight_decay: float = 0.0, lr_schedule: str = "constant", augment_flips: bool | None = None,
    cache: str | os.PathLike[str] = "auto", cache_limit: str | int | None = None,
) -> None:
    """What ``dsxsd train`` can refuse at once: settings that cannot work together, a
    Keras backend it does not train under, a bad pairs manifest, one without train or val
    pairs, a run folder that cannot be written or that another run holds."""
    check_cache(cache, cache_limit)
    check_recipe(augment=augment, weight_decay=weight_decay, lr_schedule=lr_schedule, flips=augment_flips)
    check_backbone_weights(backbone_weights, width)
    check_frozen_backbone(freeze_backbone, fine_tune_epochs, augment_policy(augment) != "none")
    check_train_backend(configured_backend())
    check_output_folder(out)
    holder = _io.lock_holder(Path(out) / RUN_LOCK)
    if holder is not None:
        raise RunInUseError(holder, file=out)
    frame = read_pairs_frame(manifest)
    for split in ("train", "val"):
        require_split(frame, split, manifest)


def check_evaluate(
    model: str | os.PathLike[str], source: str | os.PathLike[str], split: str,
    n_way: int | None, seed: int | None, out: str | os.PathLike[str] | None, overwrite: bool = False,
) -> int:
    """What ``dsxsd evaluate`` can refuse at once, results already in metrics.json among
    them; returns how many images it will embed."""
    model = check_model(model)
    folder = Path(out) if out is not None else model.parent
    if out is not None:
        check_output_folder(out)
    if n_way is not None:
        images = read_image_list(source, split)
        check_one_shot(images, n_way, seed)
        identity = n_way_identity(n_way, source, split if images.kind == "pairs" else None, folder)
        count = len(images.paths)
    else:
        frame = read_pairs_frame(source)
        require_split(frame, split, source)
        identity = pairs_identity(source, split, folder)
        count = distinct_images(frame[frame["split"].isin([split, CALIBRATION_SPLIT])])
    MetricsFile(folder, model, overwrite).check("n_way" if n_way is not None else "pairs", identity)
    return count


def check_predict_pairs(
    model: str | os.PathLike[str], pairs: str | os.PathLike[str], out: str | os.PathLike[str],
    split: str | None, overwrite: bool,
) -> int:
    """What ``dsxsd predict --pairs`` can refuse at once; returns how many images it will
    embed."""
    check_model(model)
    check_output_file(out, overwrite)
    return distinct_images(read_pairs_frame(pairs, split))


def check_embed(
    model: str | os.PathLike[str], source: str | os.PathLike[str], out: str | os.PathLike[str],
    split: str | None, overwrite: bool, kind: str = "auto",
) -> tuple[int, str]:
    """What ``dsxsd embed`` can refuse at once; returns how many images it will embed and
    the kind of index it will write (:func:`index_kind`)."""
    check_model(model)
    count = len(read_image_list(source, split).paths)
    kind = index_kind(kind, count, out)
    check_output_file(out, overwrite)
    if kind == "ann":
        from .ann import need_faiss

        need_faiss()
    return count, kind


def check_search(
    index: str | os.PathLike[str], model: str | os.PathLike[str] | None, k: int | None = None,
    exact: bool = False,
) -> Index | AnnIndex:
    """What ``dsxsd search`` can refuse at once; returns the index, opened."""
    from .ann import AnnIndex, check_model_identity, need_faiss

    loaded = open_index(index)
    if model is None:
        check_index_model(loaded)
        if isinstance(loaded, AnnIndex):
            check_model_identity(loaded)
    else:
        check_model(model)
    if k is not None:
        check_k(loaded, k)
    if isinstance(loaded, AnnIndex) and not exact:
        need_faiss()
    return loaded


def check_index_model(index: Index | AnnIndex) -> None:
    """Refuse an index whose model, named inside it rather than by the caller, is gone: a
    data error, not a usage one."""
    if not index.model.exists():
        raise ModelFileError(
            f"the model the index was made with is missing: {index.model}", file=index.file or "index"
        )


# --------------------------------------------------------------------------- export

EXPORT_FORMATS = ("onnx", "saved_model", "litert")
# siamese: a pair of images -> P(same); tower: an image -> its feature vector.
EXPORT_PARTS = ("siamese", "tower")
EXPORT_MODELS = {"best": "best.keras", "final": "model.keras"}


def export_source(run: str | os.PathLike[str], model: str = "best") -> Path:
    """The ``.keras`` file an export of ``run`` reads: ``best.keras`` or ``model.keras``
    of a run folder (``model`` = ``best`` or ``final``), or ``run`` itself when it is a
    file."""
    run = require_path(run)
    if model not in EXPORT_MODELS:
        raise UsageError(f"--model must be one of {', '.join(EXPORT_MODELS)}, not {model!r}")
    if run.is_file():
        return run
    path = run / EXPORT_MODELS[model]
    if not path.is_file():
        other = next((k for k, name in EXPORT_MODELS.items() if k != model and (run / name).is_file()), None)
        hint = f" (it has {EXPORT_MODELS[other]}: --model {other})" if other else ": not a trained run folder"
        raise ModelFileError(f"no {EXPORT_MODELS[model]} in this folder{hint}", file=run)
    return path


def info_file(export: str | os.PathLike[str]) -> Path:
    """The JSON beside a SavedModel folder or a LiteRT file: ``<name>.json``."""
    export = Path(export)
    return export.with_name(export.name + ".json")


def check_export(
    run: str | os.PathLike[str], out: str | os.PathLike[str], format: str, part: str,
    model: str = "best", overwrite: bool = False,
) -> Path:
    """What ``dsxsd export`` can refuse at once: an unknown format or part, a run without
    the model, a backend or converter export cannot use, an output in the way (the export
    and, beside a SavedModel or LiteRT file, its JSON). Returns the ``.keras`` file."""
    import importlib.util

    if format not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if part not in EXPORT_PARTS:
        raise UsageError(f"unknown part {part!r}; expected one of {', '.join(EXPORT_PARTS)}")
    source = export_source(run, model)
    backend = configured_backend()
    if backend != "tensorflow":
        raise UsageError(
            f"export runs TensorFlow's converters, under Keras' tensorflow backend, not {backend!r}: "
            "set KERAS_BACKEND=tensorflow"
        )
    if format == "onnx":
        if Path(out).suffix.lower() != ".onnx":
            # predict, embed and search tell an ONNX model by its name.
            raise UsageError("an ONNX export's name must end in .onnx", file=out)
        if importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnx") is None:
            raise MissingDependencyError(
                'the ONNX export needs tf2onnx and onnx, which are not installed: pip install "dsxsd[train]"'
            )
    else:
        check_output_file(info_file(out), overwrite)
    check_output_file(out, overwrite)
    return source


__all__ = [
    "ANN_MIN_ENTRIES",
    "CACHE_MODES",
    "CALIBRATION_SPLIT",
    "DEFAULT_CANDIDATES",
    "EXPORT_FORMATS",
    "EXPORT_MODELS",
    "EXPORT_PARTS",
    "IMAGENET_WEIGHTS",
    "RUN_LOCK",
    "INDEX_FORMAT",
    "INDEX_KINDS",
    "INDEX_VERSION",
    "ImageList",
    "Index",
    "check_backbone_weights",
    "check_cache",
    "check_embed",
    "check_export",
    "check_evaluate",
    "check_index_file",
    "check_index_model",
    "check_k",
    "check_model",
    "check_one_shot",
    "check_output_file",
    "check_output_folder",
    "check_predict_pairs",
    "check_search",
    "check_train",
    "check_train_backend",
    "container_memory_limit",
    "default_cache_limit",
    "distinct_images",
    "export_source",
    "index_kind",
    "load_index",
    "open_index",
    "parse_size",
    "read_image_list",
    "read_pairs_frame",
    "require_split",
]
