"""``zoo train`` and ``zoo export``: run a method's trainer on the shared runtime, export the result and (with
``--push-to-hub``) upload it through :func:`zoo.publish.push_folder`.

Several processes or GPUs: ``accelerate launch --num_processes N -m zoo train NAME ...``.
"""

from __future__ import annotations

from pathlib import Path

import click


INTERRUPTED_EXIT_CODE = 3
"""Exit status of ``zoo train`` stopped by SIGINT/SIGTERM after saving a checkpoint (0 only when it finished)."""


def _run_dir(name: str, config, output_dir: str | None) -> Path:
    return Path(output_dir or config.train.output_dir or f"runs/{name}")


@click.command("train", context_settings={"ignore_unknown_options": False})
@click.argument("name")
@click.argument("overrides", nargs=-1)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file with config values.")
@click.option("--output-dir", help="Run folder (default: train.output_dir, else runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in --output-dir from its newest complete checkpoint.")
@click.option("--checkpoint", type=click.Path(file_okay=False), help="With --resume: the checkpoint folder to use.")
@click.option("--no-progress", is_flag=True, help="No progress bar (metrics are still printed).")
@click.option("--push-to-hub", "repo_id", metavar="ORG/NAME",
              help="When training finishes, upload the final export to this hub repository (see 'zoo push').")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repository as private.")
def train_command(name: str, overrides: tuple[str, ...], config_file: str | None, output_dir: str | None,
                  resume: bool, checkpoint: str | None, no_progress: bool, repo_id: str | None, private: bool) -> None:
    """Train method NAME; OVERRIDES are config values such as train.steps=200 optim.student.lr=1e-5.

    With --resume and no --config, the run folder's config.yaml is the starting point (OVERRIDES still apply).
    Ctrl-C (or SIGTERM) saves a checkpoint and stops; run the same command with --resume to continue.
    With --push-to-hub, the final export (RUN_DIR/export) is uploaded once the run has finished.
    """
    from zoo.config import load_config
    from zoo.registry import get_method
    from zoo.train.runtime import train

    from zoo.train.runtime import check_run_method

    if repo_id:  # a malformed name or folder-less push fails now, not after hours of training
        from zoo.publish import check_can_push, check_repo_id

        repo_id = check_repo_id(repo_id)
        check_can_push(repo_id)
    spec = get_method(name)
    config_class = spec.load("config")
    config = load_config(config_class, config_file, overrides)
    run_dir = _run_dir(spec.name, config, output_dir)
    if resume:
        check_run_method(run_dir, spec.name)  # before the run's config.yaml is read as this method's config
    if resume and config_file is None and (run_dir / "config.yaml").is_file():
        config = load_config(config_class, run_dir / "config.yaml", overrides)
    result = train(spec.name, config, output_dir=run_dir, resume=resume, progress=not no_progress,
                   checkpoint=checkpoint)
    if result.status == "interrupted":
        click.echo(f"Interrupted at step {result.step}; resume with: zoo train {spec.name} --output-dir {run_dir} "
                   f"--resume")
        raise SystemExit(INTERRUPTED_EXIT_CODE)  # non-zero: schedulers must see that the run did not finish
    if repo_id and _is_main_process():
        from zoo.publish import push_folder
        from zoo.train.export import export_run

        folder = result.export_dir or export_run(run_dir, run_dir / "export", result.checkpoint)
        url = push_folder(folder, repo_id, private=private)
        click.echo(f"Uploaded {folder} to {repo_id}: {url}")


def _is_main_process() -> bool:
    """True unless this is a non-zero rank of a multi-process launch (only rank 0 uploads)."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--checkpoint", type=click.Path(file_okay=False), help="Checkpoint folder (default: the newest).")
@click.option("--push-to-hub", "repo_id", help="Also upload the folder to this hub repository (org/name).")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repository as private.")
def export_command(run_dir: str, out_dir: str, checkpoint: str | None, repo_id: str | None, private: bool) -> None:
    """Export a training run as a hub-ready folder (weights, zoo.json, model card) that 'zoo run --model' loads."""
    from zoo.publish import check_can_push, check_repo_id, push_folder
    from zoo.train.export import export_run

    if repo_id:
        repo_id = check_repo_id(repo_id)
        check_can_push(repo_id)
    folder = export_run(run_dir, out_dir, checkpoint)
    click.echo(f"Exported {run_dir} to {folder}")
    if repo_id:
        url = push_folder(folder, repo_id, private=private)
        click.echo(f"Uploaded {folder} to {repo_id}: {url}")


COMMANDS = [train_command, export_command]
