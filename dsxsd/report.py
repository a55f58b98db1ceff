"""The report of what a ``--on-error skip`` run left out, written beside its output."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Sequence

from . import _io
from .errors import DsxsdError
from .annotations import SkippedFile


def report_path(output: str | os.PathLike[str]) -> Path:
    """``labels.csv`` -> ``labels.csv.skipped.csv``; ``Annotations/`` -> ``Annotations.skipped.csv``."""
    output = Path(output)
    return output.with_name(output.name + ".skipped.csv")


def write_skip_report(
    output: str | os.PathLike[str], skipped: Iterable[SkippedFile]
) -> Path | None:
    """Write ``file,line,reason`` rows beside ``output``; nothing when nothing was skipped.

    The report always replaces an older one, and a run that skipped nothing removes it:
    it describes the output next to it.
    """
    rows = list(skipped)
    if not rows:
        report_path(output).unlink(missing_ok=True)
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "line", "reason"])
    for item in rows:
        writer.writerow([item.file, "" if item.line is None else item.line, item.reason])
    path = report_path(output)
    _io.write_text(path, buffer.getvalue(), overwrite=True)
    return path


def nothing_produced(
    output: str | os.PathLike[str], skipped: Sequence[SkippedFile], what: str,
    where: str | os.PathLike[str] | None,
) -> DsxsdError:
    """Write the skip report of a ``skip`` run that produced nothing because every file
    was skipped, and return the error to raise: an empty output would pass for a result
    (exit 0), while the report says why there is none."""
    report = write_skip_report(output, skipped)
    return DsxsdError(f"no {what} written: {len(skipped)} files skipped, reasons in {report}", file=where)


__all__ = ["nothing_produced", "report_path", "write_skip_report"]
