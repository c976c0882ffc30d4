"""``zoo download``: fetch a model into the Hugging Face cache and print where it is (imports no torch)."""

from __future__ import annotations

import click


@click.command("download")
@click.argument("ref")
@click.option("--revision", help="Branch, tag or commit (same as REF@revision).")
@click.option("--include", "include", multiple=True, metavar="PATTERN",
              help="Fetch only files matching this shell pattern (repeatable), e.g. --include '*.safetensors'. "
                   "Default: *.safetensors *.json *.yaml *.yml *merges.txt *vocab.txt *.md.")
@click.option("--allow-pickle", is_flag=True,
              help="Also fetch pickle weights (.bin .pth .pt .ckpt); they can run code when loaded.")
def download_command(ref: str, revision: str | None, include: tuple[str, ...], allow_pickle: bool) -> None:
    """Download REF (org/name, hf-hub:org/name@revision, a folder or pkg:package/dir) and print its path and commit.

    Files go to the standard Hugging Face cache ($HF_HUB_CACHE, default $HF_HOME/hub), so later runs work offline
    with HF_HUB_OFFLINE=1.
    """
    from zoo.hub import resolve_model

    resolved = resolve_model(ref, revision=revision, allow_patterns=list(include) or None, allow_pickle=allow_pickle)
    if not allow_pickle:
        from zoo.hub import skipped_pickles

        skipped = skipped_pickles(resolved)
        if skipped:
            click.echo(f"Note: {len(skipped)} pickle weight file(s) were not downloaded ({', '.join(skipped[:3])}"
                       f"{', ...' if len(skipped) > 3 else ''}): pickles can run code when loaded; pass --allow-pickle "
                       f"only if you trust {ref}", err=True)
    click.echo(f"path: {resolved.path}")
    click.echo(f"commit: {resolved.commit or '(none: local folder)'}")
    method = resolved.manifest.get("method")
    if method:
        click.echo(f"method: {method}")


COMMANDS = [download_command]
