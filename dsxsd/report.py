"""The report of what a ``--on-error skip`` run left out, written beside its output."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable

from . import _io
from .model import SkippedFile


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


__all__ = ["report_path", "write_skip_report"]
