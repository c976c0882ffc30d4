"""``zoo new-plugin``: scaffold a third-party plugin package."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which to create zoo-<name>/.")
@click.option("--title", default=None, help="Human-readable method title (e.g. the paper's short name).")
def new_plugin_command(name: str, parent: Path, title: str | None) -> None:
    """Create a pip-installable plugin package zoo-NAME/ with a sampler, trainer, config and contract test."""
    from zoo.scaffold import scaffold_plugin

    target = scaffold_plugin(name, parent, title)
    click.echo(str(target))
    click.echo(f"Next: pip install -e {target} && zoo list {name.replace('-', '_')}", err=True)


COMMANDS = [new_plugin_command]
