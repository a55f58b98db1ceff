"""The run folder: what ``dsxsd train`` leaves behind and reads back to resume.

    run/model.keras      the final model           run/best.keras   best validation loss
    run/config.json      every setting, the manifest's path and sha256, versions
    run/history.csv      epoch,loss,accuracy,val_loss,val_accuracy,lr (one row per epoch)
    run/logs/            TensorBoard              run/curves.png   loss and accuracy per epoch
    run/checkpoints/     epoch-N.keras (model + optimizer) and state.json (which epoch)
    run/.lock            while a ``dsxsd train`` runs: flock'ed, holds its process id
    run/cache/           the image stores of --cache auto (past --cache-limit) and disk

Every file is written atomically, so a kill at any moment leaves each file either as it
was or complete, and a full disk leaves no half-written file (:class:`RunSaveError`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from .. import _preflight
from .._io import atomic_path, remove_abandoned, sha256_file, write_bytes, write_text
from ..errors import DsxsdError, ModelFileError, OutputWriteError, RunInUseError, RunSaveError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs into one folder are not guarded there
    fcntl = None  # type: ignore[assignment]

RUN_FORMAT = "dsxsd.run"
LOCK_NAME = _preflight.RUN_LOCK
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")
# Settings that must match for a rerun to continue an interrupted run; the rest (epochs,
# strategy, cache, verbosity) may change between the two commands. So may the Keras
# backend: a checkpoint is a .keras file, which loads the same under TensorFlow and JAX.
RESUME_KEYS = (
    "manifest_sha256",
    "image_size",
    "width",
    "resize",
    "augment",
    "augment_flips",
    "weight_decay",
    "lr_schedule",
    "resample_negatives",
    "resample_positives",
    "batch_size",
    "lr",
    "optimizer",
    "seed",
    "steps_per_epoch",
    "backbone_weights_sha256",
    "precision",
    "freeze_backbone",
    "fine_tune_epochs",
)


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``run/config.json`` as a dict (a run folder or the config file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ModelFileError("no config.json: not a dsxsd run folder", file=path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"not valid JSON ({exc})", file=path) from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise ModelFileError(f"not a dsxsd run config (no \"format\": \"{RUN_FORMAT}\")", file=path)
    return config


def write_config(out: Path, config: dict[str, Any]) -> None:
    write_text(out / "config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n", overwrite=True)


# Resume keys added after runs were first written, and the value a run without one had:
# an older run folder still resumes when the new setting is left at that value.
RESUME_DEFAULTS = {
    "resample_negatives": False, "resample_positives": False, "freeze_backbone": False, "fine_tune_epochs": 0,
    "augment_flips": False, "weight_decay": 0.0, "lr_schedule": "constant",
}


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The resume-relevant settings that differ, as ``name: old -> new``.

    ``epochs`` may change, except where fine-tuning follows a frozen stage (there it is
    the frozen stage's length, and the epochs after it were trained fine-tuning) and
    under ``lr_schedule`` cosine (the rate of every epoch depends on how many there are).
    """
    old = {**RESUME_DEFAULTS, **old}
    if isinstance(old.get("augment"), bool):  # written before augmentation policies
        old["augment"], old["augment_flips"] = ("basic", True) if old["augment"] else ("none", False)
    fixed_epochs = new.get("fine_tune_epochs") or new.get("lr_schedule") == "cosine"
    keys = RESUME_KEYS + (("epochs",) if fixed_epochs else ())
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def read_history(out: Path) -> list[dict[str, float]]:
    path = out / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def write_history(out: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (row[k] if k == "epoch" else f"{row[k]:.6g}") for k in HISTORY_COLUMNS if k in row})
    write_text(out / "history.csv", buffer.getvalue(), overwrite=True)


def plot_curves(out: Path, rows: list[dict[str, float]]) -> None:
    """``curves.png``: loss and accuracy per epoch, train and validation."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and never a window from a training job
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = [r.get(prefix + metric) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=("val " if prefix else "train ") + metric, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes(out / "curves.png", buffer.getvalue(), overwrite=True)


@contextlib.contextmanager
def saving(out: Path, what: str) -> Iterator[None]:
    """Turn an OSError while writing ``what`` into one :class:`RunSaveError` naming the
    run folder: the atomic writes have already removed their temporary files."""
    try:
        yield
    except (OSError, OutputWriteError) as exc:
        # dsxsd's atomic writes name the file they could not write; a user wants the run
        # folder and the reason the system gave.
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc
        raise RunSaveError(f"could not save {what}: {reason}", file=out) from exc


def save_model(model, path: Path) -> None:
    """``model.save`` made atomic (Keras insists on the ``.keras`` suffix, so the
    temporary file gets one).

    A ``.keras`` file is a zip written by Python with the weights' HDF5 built in
    memory, so a full disk is a plain OSError; HDF5 writing to a full disk itself
    (``save_weights``) crashed the process when its objects were finalised.
    """
    with atomic_path(path, overwrite=True) as tmp:
        staged = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)


@contextlib.contextmanager
def lock_run_folder(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (created with ``out``) while training writes the folder.

    The lock is ``flock`` on the file, which holds the holder's process id: a second
    run into the folder gets :class:`RunInUseError` naming it. The system drops the lock
    when its process dies, so a lock file left by a killed run is simply taken over. The
    file is removed when the run ends. Without ``fcntl`` (Windows) nothing is locked.
    """
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = out / LOCK_NAME
    fd = _take_lock(path, out)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        # What runs killed while saving left behind; checkpoints change names every
        # epoch, so no later write of the same file would find them.
        for folder in (out, out / "checkpoints", out / CACHE_FOLDER):
            remove_abandoned(folder)
        yield
    finally:
        # Unlinked before it is unlocked: a run waiting on this file then finds it gone
        # and makes a new one (see _take_lock), never two holders at once.
        path.unlink(missing_ok=True)
        os.close(fd)


def _take_lock(path: Path, out: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise RunInUseError(holder, file=out) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed this file as we locked it: lock the new one


def holds_own_lock_only(path: Path) -> bool:
    """Whether the folder ``path`` holds nothing but a lock file of dsxsd's (a process id,
    or nothing) and image stores (``cache/``): a run killed before it wrote anything else,
    maybe while it decoded its images into a store."""
    lock = path / LOCK_NAME
    try:
        entries = sorted(child.name for child in path.iterdir())
        if not entries or not set(entries) <= {LOCK_NAME, CACHE_FOLDER}:
            return False
        if CACHE_FOLDER in entries and not _holds_stores_only(path / CACHE_FOLDER):
            return False
        text = lock.read_text("ascii").strip() if lock.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return False
    return text == "" or text.isdigit()


# The folder of a run that holds its image stores (dsxsd.train.store).
CACHE_FOLDER = "cache"
_STORE_FILE = re.compile(r"(\w+-)?[0-9a-f]{16}\.(u8|json)|\..+\.tmp|worker-\d+")


def _holds_stores_only(folder: Path) -> bool:
    return folder.is_dir() and all(_STORE_FILE.fullmatch(child.name) for child in folder.iterdir())


def is_run_folder(path: Path) -> bool:
    try:
        read_run_config(path)
        return True
    except DsxsdError:
        return False


__all__ = [
    "HISTORY_COLUMNS",
    "LOCK_NAME",
    "RESUME_KEYS",
    "config_differences",
    "holds_own_lock_only",
    "is_run_folder",
    "lock_run_folder",
    "plot_curves",
    "read_history",
    "read_run_config",
    "save_model",
    "saving",
    "sha256_file",
    "write_config",
    "write_history",
]
