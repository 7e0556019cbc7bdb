"""The run config: one YAML file per model (packaged in ``learn2diss/configs/``), validated at load.

``--config`` takes a packaged name (``l2d_w12``) or a path to a YAML file.

Every section is a frozen dataclass; an unknown or missing key is a :class:`ConfigError` that
names the file and the dotted key. ``--set a.b=value`` overrides go through the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
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

__all__ = ["Config", "ConfigError", "config_path", "config_to_dict", "load_config", "packaged_configs"]


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


def _packaged_dir() -> Path:
    return Path(str(resources.files("learn2diss") / "configs"))


def packaged_configs() -> list[str]:
    """Names of the run configs that ship with the package (``learn2diss/configs/*.yaml``)."""
    return sorted(p.stem for p in _packaged_dir().glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file of a run config: an existing file, or a packaged name (``l2d_w12`` or ``l2d_w12.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path(".") and path.name.removesuffix(".yaml") in packaged_configs():
        return _packaged_dir() / f"{path.name.removesuffix('.yaml')}.yaml"
    hint = ""
    if path.stem in packaged_configs():
        hint = f" (the configs moved into the package: --config {path.stem})"
    raise ConfigError(f"config {str(name_or_path)!r}: no such file and no packaged config of that name{hint}; "
                      f"packaged: {', '.join(packaged_configs())}")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a run config given by packaged name or path."""
    path = config_path(path)
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
