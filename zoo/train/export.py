"""Hub-ready folders from finished runs: weights, ``zoo.json`` manifest, model card, config and metrics.

A folder written here is what ``zoo run --model <folder>`` loads and what ``zoo push OUT org/name`` (or
``zoo export RUN OUT --push-to-hub org/name``, ``zoo train ... --push-to-hub org/name``; see :mod:`zoo.publish`)
uploads::

    OUT/
      zoo.json          manifest (zoo.spec.MANIFEST_NAME): method, task, base_model, sampler settings, files, ...
      README.md         model card: YAML front matter for the hub (library_name, license, base_model when it is a
                        hub id, tags, pipeline_tag) and a usage line that runs the model
      config.yaml       the run's resolved training config
      metrics.json      the last logged metrics
      <weights>         written by the trainer's export(): a diffusers folder (unet/, a pipeline), a LoRA
                        (pytorch_lora_weights.safetensors) or <name>.safetensors
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from zoo.errors import TrainingError

_PIPELINE_TAGS = {"text-to-image": "text-to-image", "super-resolution": "image-to-image"}


def save_module(module: Any, out_dir: Path, name: str) -> str:
    """Save ``module`` under ``out_dir``: ``save_pretrained`` into ``<name>/`` (diffusers/PEFT/transformers models,
    safetensors) or ``<name>.safetensors``. Returns the relative path written."""
    from zoo.train.checkpoint import save_tensors, unwrap

    module = unwrap(module)
    if hasattr(module, "save_pretrained"):
        module.save_pretrained(str(out_dir / name), safe_serialization=True)
        return f"{name}/"
    save_tensors(dict(module.state_dict()), out_dir / f"{name}.safetensors", metadata={"format": "pt"})
    return f"{name}.safetensors"


def _paper_line(method: str) -> str:
    try:
        from zoo.registry import get_method

        spec = get_method(method)
    except Exception:  # noqa: BLE001 - an unregistered trainer (e.g. the toy) has no paper
        return ""
    paper = spec.paper
    arxiv = f" ([arXiv:{paper.arxiv}]({paper.arxiv_url}))" if paper.arxiv else ""
    return f"Method: **{spec.name}**, {spec.summary}\n\nPaper: {paper.title}{arxiv}\n"


PROJECT_LICENSE = "apache-2.0"
"""distill-zoo's license, and that of its testbed weights (``pkg:zoo.testbed/...``)."""

KNOWN_BASE_LICENSES: dict[str, str] = {
    "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-4": "creativeml-openrail-m",
    "stabilityai/stable-diffusion-xl-base-1.0": "openrail++",
    "stabilityai/stable-diffusion-2-1": "openrail++",
    "stabilityai/stable-diffusion-2-1-base": "openrail++",
}
"""Hub license ids of well-known base models; other hub bases are declared ``license: other`` with a link to the
base model's page (the exported weights are derived from the base, so its license applies)."""

_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def hub_base_model(ref: Any) -> str | None:
    """The hub id (``org/name``) of a base-model reference, for the card's ``base_model`` field; None for local
    folders, ``pkg:`` folders and anything that is not a valid hub id (``hf-hub:`` and ``@revision`` are dropped)."""
    if not isinstance(ref, str) or not ref.strip():
        return None
    text = ref.strip()
    if text.startswith(("pkg:", "local-dir:", ".", "/", "~")) or "\\" in text or (len(text) > 1 and text[1] == ":"):
        return None
    text = text[len("hf-hub:"):] if text.startswith("hf-hub:") else text
    text = text.partition("@")[0]
    if not _HUB_ID_RE.match(text) or "--" in text or ".." in text or text.endswith(".git"):
        return None
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(text)
    except Exception:  # noqa: BLE001 - not a hub id
        return None
    return text


def card_license(manifest: dict[str, Any]) -> dict[str, str]:
    """The card's license fields: the manifest's ``license`` when the trainer set one; else the base model's
    (:data:`KNOWN_BASE_LICENSES`, or ``other`` with a link to a hub base); else, for weights made from distill-zoo's
    own testbed or from nothing, distill-zoo's Apache-2.0; else ``other`` (a local base: its license applies)."""
    if manifest.get("license"):
        fields = {"license": str(manifest["license"])}
        for key in ("license_name", "license_link"):
            if manifest.get(key):
                fields[key] = str(manifest[key])
        return fields
    base = manifest.get("base_model")
    hub_id = hub_base_model(base)
    if hub_id is not None:
        if hub_id in KNOWN_BASE_LICENSES:
            return {"license": KNOWN_BASE_LICENSES[hub_id]}
        return {"license": "other", "license_name": "base-model-license",
                "license_link": f"https://huggingface.co/{hub_id}"}
    if not base or str(base).startswith("pkg:zoo."):
        return {"license": PROJECT_LICENSE}
    return {"license": "other", "license_name": "base-model-license"}


def usage_command(manifest: dict[str, Any], model_ref: str | None) -> str:
    """The one command line that runs this model (the card's usage line)."""
    ref = shlex.quote(str(model_ref)) if model_ref else "hf-hub:ORG/NAME"
    if manifest.get("task") == "super-resolution":
        return f"zoo upscale {manifest['method']} input.png --model {ref} --out out.png"
    return f'zoo run --model {ref} --prompt "a red circle" --out out.png'


def model_card(manifest: dict[str, Any], config_yaml: str, metrics: dict[str, Any],
               model_ref: str | None = None) -> str:
    """README.md text: hub metadata (front matter that ``huggingface_hub.ModelCard`` parses: ``library_name``,
    ``license``, ``base_model`` when it is a hub id, ``tags``, ``pipeline_tag``) plus method, base model, usage,
    license, config and metrics. ``model_ref`` is the folder (or hub reference) the usage line runs."""
    from huggingface_hub import ModelCardData

    method, task = manifest["method"], manifest["task"]
    licensing = card_license(manifest)
    hub_base = hub_base_model(manifest.get("base_model"))
    data = ModelCardData(
        library_name=manifest.get("library_name") or "distill-zoo",
        base_model=hub_base,
        tags=["distill-zoo", "distillation", method, task],
        pipeline_tag=_PIPELINE_TAGS.get(task),
        **licensing,
    )
    sampler = manifest.get("sampler") or {}
    settings = ", ".join(f"{k}={v}" for k, v in sampler.items()) or "the method's defaults"
    metric_rows = "".join(f"| {k} | {v:.6g} |\n" if isinstance(v, float) else f"| {k} | {v} |\n"
                          for k, v in metrics.items())
    base = manifest.get("base_model") or "(none: the weights are self-contained)"
    if licensing["license"] == "other":
        license_text = (f"the license of the base model {base} applies to these weights (they are derived from it)"
                        + (f": see {licensing['license_link']}" if licensing.get("license_link") else ""))
    elif manifest.get("license"):
        license_text = f"{licensing['license']} (set by the trainer)"
    elif hub_base:
        license_text = f"{licensing['license']}, the license of the base model {hub_base}"
    else:
        license_text = (f"{licensing['license']}, the license of distill-zoo and of its testbed weights; change it "
                        f"before publishing if your training data or base call for another")
    return (
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {method} ({task})\n\n"
        f"Trained with distill-zoo (`zoo train {method}`) for "
        f"{manifest.get('training', {}).get('steps', '?')} steps.\n\n"
        f"{_paper_line(method)}\n"
        f"Base model: {base}\n\n"
        f"## Use\n\n```bash\n{usage_command(manifest, model_ref)}\n```\n\n"
        f"Recommended sampler settings: {settings}.\n\n"
        f"Files: {', '.join(manifest.get('files', [])) or '(see the repository)'}\n\n"
        f"## License\n\nWeights: {license_text}. The distill-zoo code that trained and runs them is Apache-2.0; "
        f"the method is described in the paper above.\n\n"
        f"## Training config\n\n```yaml\n{config_yaml}```\n\n"
        f"## Metrics (last logged)\n\n| metric | value |\n|---|---|\n{metric_rows}"
    )


def write_export_metadata(trainer: Any, out_dir: str | Path, metrics: dict[str, Any],
                          files: list[str] | None = None) -> dict[str, Any]:
    """Write ``zoo.json``, ``README.md``, ``config.yaml`` and ``metrics.json`` into ``out_dir``; return the manifest.

    The manifest starts from ``trainer.export_manifest()`` (``base_model``, ``sampler`` and any extras) and adds
    ``method``, ``task``, ``files``, ``zoo_version`` and ``training`` (steps, seed, config hash).
    """
    from omegaconf import OmegaConf

    from zoo import __version__
    from zoo.config import save_config
    from zoo.hub import write_manifest
    from zoo.train.checkpoint import config_hash

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"base_model": None, "sampler": {}, **dict(trainer.export_manifest() or {})}
    train_cfg = trainer.config.train
    manifest.update({
        "method": trainer.method_name,
        "task": trainer.task,
        "files": list(files if files is not None else manifest.get("files", [])),
        "zoo_version": __version__,
        "training": {"steps": int(metrics.get("step", train_cfg.steps)), "seed": int(train_cfg.seed),
                     "config_hash": config_hash(trainer.config)},
    })
    config = trainer.config if not isinstance(trainer.config, dict) else OmegaConf.create(trainer.config)
    save_config(config, out_dir / "config.yaml")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=str))
    write_manifest(out_dir, manifest)  # validated (method, task, sampler types) and written atomically
    (out_dir / "README.md").write_text(model_card(manifest, OmegaConf.to_yaml(config, resolve=True), metrics,
                                                  model_ref=str(out_dir)))
    return manifest


def export_trainer(trainer: Any, out_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Call ``trainer.export(out_dir, metrics)`` and return the folder it wrote."""
    out_dir = Path(out_dir)
    result = trainer.export(out_dir, metrics)
    return Path(result) if result is not None else out_dir


def _import_ref(ref: str) -> Any:
    import importlib

    module_name, _, attr = ref.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_run_trainer(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Rebuild a run's trainer on the CPU with the weights (and EMA) of ``checkpoint`` (default: the newest).

    Returns ``(trainer, state_json)``.
    """
    import torch
    from omegaconf import OmegaConf

    from zoo.config import structured
    from zoo.train.checkpoint import latest_checkpoint, load_checkpoint
    from zoo.train.ema import EMA

    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file() or not (run_dir / "config.yaml").is_file():
        raise TrainingError(f"{run_dir} is not a training run folder (no run.json/config.yaml); pass the folder "
                            f"given to 'zoo train --output-dir'")
    info = json.loads(info_path.read_text())
    checkpoint = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if checkpoint is None:
        raise TrainingError(f"{run_dir} has no complete checkpoint to export; train it first (or resume it)")

    # 1. config: the saved YAML on top of the method's schema (plain YAML when the class cannot be imported)
    config = OmegaConf.load(run_dir / "config.yaml")
    factory = None
    try:
        from zoo.registry import get_method

        spec = get_method(info["method"])
        config = OmegaConf.merge(structured(spec.load("config")), config)
        factory = spec.load("trainer")
    except Exception:  # noqa: BLE001 - unregistered trainers are found through run.json's references
        if info.get("config"):
            config = OmegaConf.merge(structured(_import_ref(info["config"])), config)
        if info.get("trainer"):
            factory = _import_ref(info["trainer"])
    if factory is None:
        raise TrainingError(f"Cannot find the trainer of method {info.get('method')!r}; install the plugin that "
                            f"provides it (see 'zoo plugins')")

    # 2. the trainer, built on the CPU, with the checkpoint's weights and EMA
    trainer = factory(config)
    trainer.method_name = info["method"]
    trainer.device = torch.device("cpu")
    torch.manual_seed(int(config.train.seed))
    trainer.build()
    modules = dict(trainer.trainable_modules())
    decay = float(config.train.ema_decay)
    trainer.ema = EMA(dict(trainer.ema_modules()), decay) if decay > 0 else None
    document, _ = load_checkpoint(checkpoint, modules=modules, ema=trainer.ema)
    trainer.load_state_dict_extra(document.get("trainer_extra", {}))
    return trainer, document


def export_run(run_dir: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None) -> Path:
    """Export a run folder's newest (or given) checkpoint as a hub-ready folder at ``out_dir``."""
    trainer, document = load_run_trainer(run_dir, checkpoint)
    metrics = dict(document.get("train_state", {}).get("metrics") or {})
    metrics.setdefault("step", document.get("step"))
    return export_trainer(trainer, out_dir, metrics)


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                revision: str | None = None, commit_message: str | None = None) -> str:
    """Upload an exported folder; the same as :func:`zoo.publish.push_folder` (kept for older callers)."""
    from zoo.publish import push_folder

    return push_folder(folder, repo_id, private=private, token=token, revision=revision,
                       commit_message=commit_message)
