"""The run config: one YAML file per model (``configs/l2d_*.yaml``), validated at load.

Every section is a frozen dataclass; an unknown or missing key is a :class:`ConfigError` that
names the file and the dotted key. ``--set a.b=value`` overrides go through the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from learn2diss.schema import ConfigError, apply_overrides, from_dict, read_yaml, to_dict
from learn2diss.upstream.config import ModelConfig

__all__ = ["Config", "ConfigError", "load_config", "config_to_dict"]


@dataclass(frozen=True)
class Config:
    """A whole run: the model architecture and (added by the pretraining code) its training stages."""

    model: ModelConfig


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate ``path``."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        apply_overrides(data, overrides or [])
        return from_dict(Config, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_to_dict(config: Config) -> dict:
    """Plain-data form, for saving next to checkpoints."""
    return to_dict(config)
