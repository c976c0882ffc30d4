"""Typed method configs: omegaconf structured configs with YAML files and ``key=value`` overrides.

Each method's config is a dataclass whose defaults are the paper's values. :func:`load_config` merges, in order, the
defaults, an optional YAML file and a dotlist of overrides (``training.lr=1e-5``). An unknown key or a wrong type
raises :class:`zoo.errors.ConfigError` with one line that names the key and lists the valid keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from zoo.errors import ConfigError


def _valid_keys(schema: Any, path: str) -> list[str]:
    """Keys allowed at the dotted ``path`` of a structured config (the parent of the offending key)."""
    node = schema
    for part in [p for p in path.split(".") if p][:-1]:
        try:
            node = node[part]
        except Exception:  # noqa: BLE001
            return []
    if isinstance(node, DictConfig):
        return list(node.keys())
    return []


def _explain(exc: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, ConfigKeyError) or "not in struct" in str(exc) or "Key '" in str(exc) and "not in" in str(exc):
        valid = _valid_keys(schema, str(key))
        where = f" under '{str(key).rsplit('.', 1)[0]}'" if "." in str(key) else ""
        return ConfigError(f"Unknown config key '{key}' ({source}); valid keys{where}: {', '.join(valid)}")
    if isinstance(exc, ValidationError):
        detail = str(exc).splitlines()[0]
        return ConfigError(f"Bad value for config key '{key}' ({source}): {detail}")
    return ConfigError(f"Invalid config ({source}): {str(exc).splitlines()[0]}")


def structured(config_class: type) -> DictConfig:
    """The defaults of ``config_class`` as a struct-mode DictConfig (unknown keys are errors)."""
    if not dataclasses.is_dataclass(config_class):
        raise ConfigError(f"{config_class!r} is not a dataclass; a method config must be a dataclass")
    schema = OmegaConf.structured(config_class)
    OmegaConf.set_struct(schema, True)
    return schema


def load_config(config_class: type, file: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Defaults of ``config_class``, then ``file`` (YAML), then ``overrides`` (``a.b=value`` strings)."""
    config = structured(config_class)
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"Config file not found: {path}")
        try:
            loaded = OmegaConf.load(path)
        except Exception as exc:  # noqa: BLE001 - YAML syntax errors and the like
            raise ConfigError(f"Cannot read config file {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, DictConfig):
            raise ConfigError(f"Config file {path} holds a {type(loaded).__name__.replace('Config', '').lower()} at "
                              f"the top level; it must map keys to values (e.g. 'train:' then 'steps: 2000')")
        try:
            config = OmegaConf.merge(config, loaded)
        except OmegaConfBaseException as exc:
            raise _explain(exc, config, f"in {path.name}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} is not of the form key=value (e.g. training.lr=1e-5)")
        try:
            config = OmegaConf.merge(config, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as exc:
            raise _explain(exc, config, f"override {item!r}") from None
    OmegaConf.set_struct(config, True)
    return config


def to_yaml(config: DictConfig) -> str:
    return OmegaConf.to_yaml(config, resolve=True)


def save_config(config: DictConfig, path: str | Path) -> Path:
    """Write the fully resolved config as YAML (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(to_yaml(config))
    tmp.replace(path)
    return path


def to_object(config: DictConfig) -> Any:
    """The config as an instance of its dataclass (for code that prefers attributes with types)."""
    return OmegaConf.to_object(config)
