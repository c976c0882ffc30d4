"""``zoo download`` and ``zoo push``: fetch a model into the Hugging Face cache, upload an exported folder (imports no
torch)."""

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


@click.command("push")
@click.argument("folder")
@click.argument("repo_id", metavar="ORG/NAME")
@click.option("--revision", help="Branch to commit to (default main); created from main when it does not exist.")
@click.option("--private", is_flag=True, help="Create the repository as private (an existing one keeps its setting).")
@click.option("--commit-message", "-m", "commit_message", help="Commit summary (default: 'Upload model exported by "
                                                                  "distill-zoo').")
def push_command(folder: str, repo_id: str, revision: str | None, private: bool, commit_message: str | None) -> None:
    """Upload FOLDER (an exported model: zoo export, or a run's export/ folder) to the hub repository ORG/NAME.

    Creates the repository when needed, then commits every file of FOLDER. Log in first with `hf auth login` (or set
    HF_TOKEN); HF_ENDPOINT selects another hub. The model card's usage line is pointed at hf-hub:ORG/NAME.
    """
    from zoo.publish import push_folder

    url = push_folder(folder, repo_id, revision=revision, private=private, commit_message=commit_message)
    click.echo(f"Uploaded {folder} to {repo_id}: {url}")
    _echo_usage(folder, repo_id, revision)


def _echo_usage(folder, repo_id: str, revision: str | None) -> None:
    """``Run it with: zoo run --model hf-hub:ORG/NAME ...`` for an exported model folder."""
    from zoo.hub import read_manifest
    from zoo.train.export import usage_command

    try:
        manifest = read_manifest(folder)
    except Exception:  # noqa: BLE001 - a hint only
        return
    if manifest.get("method"):
        ref = f"hf-hub:{repo_id.removeprefix('hf-hub:')}" + (f"@{revision}" if revision else "")
        click.echo(f"Run it with: {usage_command(manifest, ref)}")


COMMANDS = [download_command, push_command]
