"""What every command shares: options, progress bars, summaries, error handling."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator, Sequence

import click

overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace the output if it already exists."
)
on_error_option = click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="raise: stop at the first bad file and write nothing. skip: go on, and write "
    "what was skipped and why into a report beside the output.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary instead."
)


def need_tensorflow() -> None:
    """Fail with the install line when the train extra is missing, without importing it
    (that takes seconds; the command's own checks come first)."""
    import importlib.util

    from ..errors import MissingDependencyError

    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        raise MissingDependencyError(
            'this command needs TensorFlow, which is not installed: pip install "dsxsd[train]"'
        )


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback that drives a progress bar on a terminal and does
    nothing when stderr is piped, so logs and CI output stay clean."""
    if not stderr_is_terminal() or length <= 0:
        yield lambda n=1: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def print_json(summary: Any) -> None:
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table: first column left-aligned, numbers right-aligned."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        ]
        click.echo("  ".join(parts).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


__all__ = [
    "overwrite_option",
    "on_error_option",
    "json_option",
    "need_tensorflow",
    "progress",
    "print_json",
    "print_table",
    "stderr_is_terminal",
]
