"""``zoo serve``: the gradio demo (text to image with every registered method, super-resolution) on 127.0.0.1."""

from __future__ import annotations

import click

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; anything but 127.0.0.1 exposes the demo to your network.")
@click.option("--port", type=int, default=None, help="Port (default: 7860, or the next free one).")
@click.option("--model-root", "model_roots", multiple=True, type=click.Path(file_okay=False),
              help="A folder whose models clients may load (repeatable); the hub cache and pkg: models always are.")
def serve_command(host: str, port: int | None, model_roots: tuple[str, ...]) -> None:
    """Start the web demo (needs the 'ui' extra: pip install 'distill-zoo[ui]')."""
    from zoo.errors import require_extra

    require_extra("gradio", "ui", "zoo serve")
    from zoo.app import build_demo
    from zoo.paths import ModelRoots

    if host not in LOOPBACK:
        click.echo(f"Warning: binding {host} makes the demo reachable from other machines", err=True)
    demo = build_demo(roots=ModelRoots.for_server(model_roots))
    demo.launch(server_name=host, server_port=port, share=False, show_error=False)


COMMANDS = [serve_command]
