"""The error hierarchy.

Every error dsxsd raises for bad data is a :class:`DsxsdError`. Each one knows the file it
is about and, where it applies, the line, row or object, and its message names them, so a
user reading one line on a terminal knows where to look. The CLI turns these into one line
on stderr and the error's ``exit_code``: 1 for data, 2 for usage (every
:class:`UsageError`); anything else reaching the user is a bug. Every exception class
dsxsd raises is defined here, and so is :class:`ErrorPolicy`, what a reader or stage does
with a bad file (``on_error``).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any, Union

PathLikeStr = Union[str, "PathLike[str]"]


class DsxsdError(Exception):
    """Base of every error dsxsd raises about data, files or settings."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: PathLikeStr | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = message
        self.file = None if file is None else str(file)
        self.line = line
        self.row = row
        self.field = field
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class UsageError(DsxsdError, ValueError):
    """A usage error (exit code 2): an option or setting that cannot work, a path on the
    command line that does not exist, an output that exists without ``overwrite``, a
    missing extra. Also a :class:`ValueError`, which is what Python's own functions raise
    for an argument value they cannot take."""

    exit_code = 2


# Older names of UsageError, kept for code that catches them.
SettingError = UsageError
CropOptionError = UsageError
PairsOptionError = UsageError


class InvalidAnnotationError(DsxsdError):
    """An annotation file is readable but its content breaks the format's contract."""


class MissingFieldError(InvalidAnnotationError):
    """A required field (tag, column, key) is absent or empty."""


class InvalidValueError(InvalidAnnotationError):
    """A field holds a value of the wrong kind (a non-numeric coordinate, an unknown id)."""


class MalformedFileError(InvalidAnnotationError):
    """The file cannot be parsed at all (broken XML, CSV or JSON)."""


class HostileInputError(DsxsdError):
    """Input that tries to harm the reader: entity expansion, external entities,
    decompression bombs, paths escaping a folder."""


class UnknownFormatError(UsageError):
    """A format name (or a path to guess one from) that the registry does not know."""


class OutputExistsError(UsageError):
    """The output already exists and ``overwrite`` was not asked for."""


class OutputWriteError(DsxsdError):
    """An output cannot be written: the disk is full, the folder is read-only or not
    writable, a file stands where a folder is needed. Names the output as it was given,
    never the temporary file it was being written to."""


class MissingPathError(UsageError):
    """A path the caller gave (an input file or folder on the command line, or an argument
    of an API function) does not exist: a usage error. A file named inside the data that
    is missing, such as an image a manifest lists, is a data error instead
    (:class:`MissingImageError`)."""


def require_path(path: PathLikeStr) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or :class:`MissingPathError` when nothing is
    there. The one check of every input path the user names, for the API and the CLI."""
    path = Path(path)
    if not path.exists():
        raise MissingPathError("no such file or folder", file=path)
    return path


class MissingImageError(DsxsdError):
    """An image an annotation or manifest names cannot be found."""


class ImageDecodeError(DsxsdError):
    """An image file exists but cannot be decoded."""


class ImageStoreError(DsxsdError):
    """A finished image store (``--cache``, dsxsd.train.store) that does not hold what its
    ``.json`` says: truncated, edited, or not a store of dsxsd's."""


class ManifestError(DsxsdError):
    """A crops or pairs manifest has the wrong columns or a bad row."""


class MissingDependencyError(UsageError):
    """An optional dependency (TensorFlow, for training) is not installed."""


class SettingWarning(UserWarning):
    """A training setting this machine cannot honour, and what dsxsd does instead (e.g.
    ``--precision mixed_float16`` on a CPU trains in float32), or a problem with the
    installation (two TensorFlow distributions, a GPU TensorFlow does not see). Training
    goes on; the CLI prints each as one ``warning:`` line."""


class ModelFileError(DsxsdError):
    """A model file that is missing, unreadable or not a dsxsd model."""


class RunSaveError(DsxsdError):
    """A file of a training run folder could not be written (a full disk, no permission);
    names the run folder and what could not be saved. A rerun resumes from the last
    complete checkpoint."""


class RunInUseError(DsxsdError):
    """Another process trains into the same run folder: ``holder``, the process id its
    lock file holds."""

    def __init__(self, holder: str, *, file: PathLikeStr) -> None:
        self.holder = holder
        super().__init__(f"in use by process {holder}; wait for it to end or choose another --out", file=file)


class WorkerProcessError(DsxsdError):
    """A worker process ended abruptly (killed for lack of memory, or a crash inside a
    C library such as an image decoder) while ``--workers`` processes read or cut files.
    """


class ErrorPolicy:
    """What a reader or stage does with a bad file (its ``on_error``): ``"raise"`` stops
    at the first, ``"skip"`` leaves it out and lists it in :attr:`skipped`, the rows of
    the skip report. Every reader and stage makes a fresh one from the ``on_error`` it was
    given (a name or a policy), so the list is that run's alone."""

    __slots__ = ("mode", "skipped")

    def __init__(self, on_error: "str | ErrorPolicy" = "raise") -> None:
        mode = on_error.mode if isinstance(on_error, ErrorPolicy) else on_error
        if mode not in ("raise", "skip"):
            raise UsageError(f"on_error must be 'raise' or 'skip', got {mode!r}")
        self.mode = mode
        self.skipped: list = []  # of dsxsd.annotations.SkippedFile

    @property
    def stops(self) -> bool:
        """Whether the first bad file ends the run."""
        return self.mode == "raise"

    def failed(
        self,
        error: DsxsdError,
        file: PathLikeStr | None = None,
        *,
        reason: str | None = None,
        line: Any = ...,
    ) -> None:
        """Raise ``error``, or (skip) list ``file`` (default: the error's) as skipped with
        ``reason`` and ``line`` (default: the error's own)."""
        if self.stops:
            raise error
        from .annotations import SkippedFile

        self.skipped.append(SkippedFile(
            str(error.file if file is None else file),
            error.reason if reason is None else reason,
            error.line if line is ... else line,
        ))

    def __repr__(self) -> str:
        return f"ErrorPolicy({self.mode!r})"


def first_line(exc: BaseException) -> str:
    """The first line of a foreign library's error (Keras, tf2onnx, onnxruntime, the
    LiteRT converter write pages), or its type where it says nothing: what one
    ``error:`` line can hold."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "DsxsdError",
    "UsageError",
    "CropOptionError",
    "PairsOptionError",
    "ErrorPolicy",
    "InvalidAnnotationError",
    "MissingFieldError",
    "InvalidValueError",
    "MalformedFileError",
    "HostileInputError",
    "UnknownFormatError",
    "OutputExistsError",
    "OutputWriteError",
    "MissingPathError",
    "require_path",
    "MissingImageError",
    "ImageDecodeError",
    "ImageStoreError",
    "ManifestError",
    "MissingDependencyError",
    "SettingError",
    "SettingWarning",
    "ModelFileError",
    "RunSaveError",
    "RunInUseError",
    "WorkerProcessError",
    "first_line",
]
