"""The ``zoo`` command line. One module per command group; none imports torch at import time.

Every :class:`zoo.errors.ZooError` is printed as one line (``Error: ...``) with exit status 1.
"""

from __future__ import annotations

import importlib

import click

from zoo.errors import ZooError

# Modules that define click commands in a module-level ``COMMANDS`` list.
COMMAND_MODULES = (
    "zoo.cli.registry_cmds",
    "zoo.cli.hub_cmds",
    "zoo.cli.train_cmds",
    "zoo.cli.testbed_cmds",
    "zoo.cli.run_cmds",
    "zoo.cli.scaffold_cmds",
    "zoo.cli.sr_cmds",
    "zoo.cli.serve_cmds",
)


class ZooGroup(click.Group):
    """A click group that turns :class:`ZooError` into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except KeyboardInterrupt:
            raise click.ClickException("Interrupted") from None


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="distill-zoo", prog_name="zoo")
def main() -> None:
    """distill-zoo: run and train distilled diffusion and super-resolution models."""


for _module in COMMAND_MODULES:
    for _command in importlib.import_module(_module).COMMANDS:
        main.add_command(_command)
