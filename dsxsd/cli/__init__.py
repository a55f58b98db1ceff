"""The ``dsxsd`` command: a thin click layer over the Python API.

Each command parses its options, calls one API function and prints a summary. Errors about
data (:class:`dsxsd.DsxsdError`) become one line on stderr and exit code 1 (2 for usage),
never a traceback. Commands live in one module each and are collected here.
"""

from __future__ import annotations

import os

import click

from .. import __version__
from ..errors import DsxsdError
from . import convert, crop, inspect, pairs, train, use


class DsxsdGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DsxsdError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # Disk full, permission denied, a folder where a file was expected...
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=DsxsdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dsxsd")
@click.option(
    "--verbose", is_flag=True,
    help="Show TensorFlow's own log lines, which are hidden otherwise (as DSXSD_DEBUG=1 does).",
)
def main(verbose: bool) -> None:
    """From object annotations to a trained image-similarity (Siamese) model.

    The pipeline: convert -> crop -> make-pairs -> train -> evaluate / predict / embed.
    """
    if verbose:
        # Read by dsxsd.train when it imports TensorFlow, which happens after this.
        os.environ["DSXSD_DEBUG"] = "1"


for module in (convert, crop, inspect, pairs, train, use):
    for command in module.COMMANDS:
        main.add_command(command)

__all__ = ["main"]
