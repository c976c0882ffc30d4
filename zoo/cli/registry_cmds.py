"""``zoo list``, ``zoo info`` and ``zoo plugins``: read the registry without importing torch."""

from __future__ import annotations

import json

import click

from zoo.registry import get_registry


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--task", type=click.Choice(["text-to-image", "super-resolution"]), help="Only methods of this task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(pattern: str | None, task: str | None, as_json: bool) -> None:
    """List registered methods, optionally filtered by a shell-style PATTERN (e.g. 'swift*')."""
    specs = get_registry().list(pattern, task)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    if not specs:
        click.echo("No methods match." if pattern or task else "No methods registered (see 'zoo plugins').")
        return
    width = max(len(s.name) for s in specs)
    task_width = max(len(s.task) for s in specs)
    for spec in specs:
        click.echo(f"{spec.name:<{width}}  {spec.task:<{task_width}}  {spec.summary}")


@click.command("info")
@click.argument("name")
def info_command(name: str) -> None:
    """Show a method's paper, artifacts, presets and default config."""
    spec = get_registry().get(name)
    paper = spec.paper
    click.echo(f"{spec.name}  ({spec.task}; plugin {spec.plugin})")
    if spec.aliases:
        click.echo(f"aliases: {', '.join(spec.aliases)}")
    click.echo(spec.summary)
    click.echo(f"paper: {paper.title}" + (f"  arXiv:{paper.arxiv} {paper.arxiv_url}" if paper.arxiv else ""))
    if paper.code:
        click.echo(f"official code: {paper.code}")
    if spec.default_model:
        click.echo(f"default model: {spec.default_model}")
    if spec.artifacts:
        click.echo("artifacts:")
        for artifact in spec.artifacts:
            files = ", ".join(artifact.files) if artifact.files else "(whole repository)"
            click.echo(f"  - {artifact.repo_id}: {files}")
            if artifact.base_model:
                click.echo(f"    base model: {artifact.base_model}")
            if artifact.settings:
                click.echo(f"    recommended: {_settings(artifact.settings)}")
    if spec.presets:
        click.echo("presets:")
        for preset in spec.presets:
            click.echo(f"  - {preset.name}: {preset.description}")
            if preset.settings:
                click.echo(f"    settings: {_settings(preset.settings)}")
    click.echo("default config:")
    click.echo(_default_config_yaml(spec), nl=False)


def _settings(settings) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _default_config_yaml(spec) -> str:
    from zoo.config import structured, to_yaml

    text = to_yaml(structured(spec.load("config")))
    return "".join(f"  {line}\n" for line in text.splitlines())


@click.command("plugins")
def plugins_command() -> None:
    """Print every plugin found (name, package, version, built-in or not, methods, and why it was not loaded: an
    import error, a malformed spec, a name clash) as JSON."""
    registry = get_registry()
    click.echo(json.dumps([info.to_dict() for info in sorted(registry.plugins.values(), key=lambda i: i.name)],
                          indent=2))


COMMANDS = [list_command, info_command, plugins_command]
