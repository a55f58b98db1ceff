"""What every command shares: options, progress bars, summaries, error handling."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import click

from ..errors import require_path


class _InputPath(click.Path):
    """A path the command reads. A missing one fails as the API fails for it
    (:func:`dsxsd.errors.require_path`: exit 2, ``error: <path>: no such file or folder``),
    before any slow import or work, rather than in click's own words."""

    def convert(self, value, param, ctx):
        require_path(value)
        return super().convert(value, param, ctx)


def input_path(*, file_okay: bool = True, dir_okay: bool = True) -> click.Path:
    """The type of every input path argument and option (a ``pathlib.Path``)."""
    return _InputPath(file_okay=file_okay, dir_okay=dir_okay, path_type=Path)


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


class _FormatOption(click.Option):
    """Lists the readable formats in help from the registry, when help is shown: reading
    the registry at import would slow every command's start."""

    def get_help_record(self, ctx: click.Context):
        from ..formats import format_names

        record = super().get_help_record(ctx)
        if record is None:
            return None
        names = ", ".join(format_names(readable=True))
        return record[0], f"{record[1]} One of: {names}."


def format_option(dest: str = "fmt"):
    """``--format`` of a command that reads annotations."""
    return click.option(
        "--format", dest, cls=_FormatOption, metavar="FORMAT", default=None,
        help="Annotation format (default: guessed from the path).",
    )


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary instead."
)


# What the train extra brings (h5py comes with Keras).
TRAIN_EXTRA_MODULES = ("tensorflow", "keras", "h5py", "matplotlib")


def _train_extra_missing(module: str):
    from ..errors import MissingDependencyError

    return MissingDependencyError(
        f'this command needs {module}, which is not installed: pip install "dsxsd[train]"'
    )


def need_tensorflow() -> None:
    """Fail with the install line when the train extra is missing, without importing it
    (that takes seconds; the command's own checks come first)."""
    import importlib.util

    for module in TRAIN_EXTRA_MODULES[:2]:
        if importlib.util.find_spec(module) is None:
            raise _train_extra_missing(module)


def import_train():
    """``dsxsd.train``, or the same error as :func:`need_tensorflow` where a module of
    the train extra cannot be imported after all (found, but broken)."""
    import importlib

    try:
        train_package = importlib.import_module("dsxsd.train")
        train_package.require_tensorflow()  # the network alone imports without it
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in TRAIN_EXTRA_MODULES:
            raise
        raise _train_extra_missing(top) from None
    return train_package


@contextlib.contextmanager
def setting_warnings() -> Iterator[None]:
    """Show each :class:`dsxsd.SettingWarning` the API raises inside as one ``warning:``
    line on stderr, when it comes (training goes on for hours after it)."""
    from ..errors import SettingWarning

    with warnings.catch_warnings():  # restores the filters and showwarning after
        warnings.simplefilter("always", SettingWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, SettingWarning):
                click.echo(f"warning: {message}", err=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


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
    "format_option",
    "input_path",
    "overwrite_option",
    "on_error_option",
    "json_option",
    "import_train",
    "need_tensorflow",
    "progress",
    "print_json",
    "print_table",
    "setting_warnings",
    "stderr_is_terminal",
]
