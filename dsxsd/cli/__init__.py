"""The ``dsxsd`` command: a thin click layer over the Python API.

Each command parses its options, calls one API function and prints a summary. Every error,
dsxsd's (:class:`dsxsd.DsxsdError`) and click's alike, becomes one ``error: ...`` line on
stderr and exit code 1 for data, 2 for usage, never a traceback. A closed stdout
(``dsxsd ls ... | head -1``) ends a command quietly. Commands live in one module each and
are collected here.
"""

from __future__ import annotations

import os
import select
import sys

import click

from .. import __version__
from ..errors import DsxsdError
from . import convert, crop, explore, pairs, train, use


# What a shell reports for a process killed by SIGPIPE (128 + 13), as `ls | head -1` ends.
CLOSED_STDOUT_EXIT = 141


def _click_error(exc: click.ClickException) -> None:
    """Click's errors in dsxsd's form: ``error: what`` (lower case, as dsxsd's own), then,
    where click knows the command, where to find help; not click's usage block and
    ``Error:``."""
    message = exc.format_message()
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    click.echo(f"error: {message}", err=True)
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)


def _stdout_closed(exc: OSError) -> bool:
    """Whether ``exc`` is stdout's reader having gone away (not a pipe of the command's
    own, such as a worker's); if so, stdout is pointed at devnull so that Python's flush at
    exit does not complain about it in turn."""
    if not isinstance(exc, BrokenPipeError):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        if not any(event & select.POLLERR for _, event in poller.poll(0)):
            return False
    except (AttributeError, ValueError, OSError):
        pass  # no poll() here (Windows): take the broken pipe to be stdout's
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return True


class DsxsdGroup(click.Group):
    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        # The group's own options (`dsxsd --bogus`); a command's are parsed in invoke.
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            _click_error(exc)
            raise click.exceptions.Exit(exc.exit_code) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DsxsdError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.ClickException as exc:
            _click_error(exc)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if _stdout_closed(exc):
                ctx.exit(CLOSED_STDOUT_EXIT)
            # Disk full, permission denied, a folder where a file was expected...
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt as exc:
            # An interrupt with a message (training's) says what was kept and how to go on.
            click.echo(f"interrupted: {exc}" if str(exc) else "interrupted", err=True)
            ctx.exit(130)


@click.group(
    cls=DsxsdGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="dsxsd")
@click.option(
    "--verbose", is_flag=True,
    help="Show TensorFlow's own log lines, which are hidden otherwise (as DSXSD_DEBUG=1 does).",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """From object annotations to a trained image-similarity (Siamese) model.

    The pipeline: convert -> crop -> make-pairs -> train -> evaluate / predict / embed.
    """
    if verbose:
        # Read by dsxsd.train when it imports TensorFlow, which happens after this.
        os.environ["DSXSD_DEBUG"] = "1"
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())  # `dsxsd` alone: the help, as a first look, not an error


for module in (convert, crop, explore, pairs, train, use):
    for command in module.COMMANDS:
        main.add_command(command)

__all__ = ["main"]
