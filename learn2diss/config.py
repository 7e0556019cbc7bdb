"""The run config: one YAML file per model (``configs/l2d_*.yaml``), validated at load.

Every section is a frozen dataclass; an unknown or missing key is a :class:`ConfigError` that
names the file and the dotted key. ``--set a.b=value`` overrides go through the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from learn2diss.pretrain.config import (
    DataConfig,
    FrameTargetsConfig,
    JointConfig,
    TrainConfig,
    UttSimCLRConfig,
    UttTargetsConfig,
)
from learn2diss.schema import ConfigError, apply_overrides, from_dict, read_yaml, to_dict
from learn2diss.upstream.config import ModelConfig

__all__ = ["Config", "ConfigError", "load_config", "config_to_dict"]


@dataclass(frozen=True)
class Config:
    """A whole run: the model architecture and the pretraining stages (docs/pretraining.md)."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    frame_targets: FrameTargetsConfig
    utt_simclr: UttSimCLRConfig
    utt_targets: UttTargetsConfig
    joint: JointConfig

    def __post_init__(self) -> None:
        if self.frame_targets.layer != "mfcc" and self.frame_targets.layer > self.model.parent.num_layers:
            raise ValueError(f"frame_targets.layer {self.frame_targets.layer} is past the parent's "
                             f"{self.model.parent.num_layers} layers")


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
