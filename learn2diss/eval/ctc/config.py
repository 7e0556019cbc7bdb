"""CTC fine-tuning and decoding settings, read from YAML and validated (an unknown key is an error naming it).

The packaged configs ``ctc_1h``, ``ctc_10h``, ``ctc_100h`` and ``ctc_demo`` live beside this package
(``learn2diss/eval/ctc_*.yaml``); a path to another YAML file works too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from learn2diss.eval.ctc.decode import DecodeConfig
from learn2diss.schema import ConfigError, apply_overrides, from_dict, read_yaml


@dataclass(frozen=True)
class FinetuneConfig:
    """Optimisation of g's transformer layers and the linear CTC head (tri-stage learning rate)."""

    lr: float
    max_updates: int
    warmup_updates: int
    hold_updates: int
    decay_updates: int
    init_lr_scale: float  # learning rate at step 0, relative to lr
    final_lr_scale: float  # learning rate after the decay, relative to lr
    freeze_updates: int  # only the head trains for the first updates (fairseq freeze_finetune_updates)
    batch_seconds: float  # audio per update (before gradient accumulation)
    grad_accum: int
    mask_prob: float  # span masking of X' during fine-tuning (0 disables it)
    mask_length: int
    clip_norm: float
    max_seconds: float  # longer training utterances are skipped
    save_every: int
    log_every: int
    seed: int

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_updates < 1 or self.batch_seconds <= 0 or self.grad_accum < 1:
            raise ValueError("lr, max_updates, batch_seconds and grad_accum must be positive")
        if min(self.warmup_updates, self.hold_updates, self.decay_updates, self.freeze_updates) < 0:
            raise ValueError("warmup/hold/decay/freeze updates must be >= 0")
        if not 0 <= self.mask_prob <= 1 or self.mask_length < 1:
            raise ValueError(f"mask_prob must be in [0, 1] and mask_length >= 1, got {self.mask_prob}, "
                             f"{self.mask_length}")


@dataclass(frozen=True)
class CtcConfig:
    """A CTC experiment: ``finetune`` and ``decode`` sections."""

    finetune: FinetuneConfig
    decode: DecodeConfig


def packaged_configs() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("learn2diss.eval").iterdir()
                  if p.name.startswith("ctc_") and p.name.endswith(".yaml"))


def load_ctc_config(name_or_path: str | os.PathLike[str], overrides: list[str] | None = None) -> tuple[str, CtcConfig]:
    """``(name, config)`` from a packaged name (``ctc_10h``) or a YAML path, with ``a.b=value`` overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        if str(name_or_path) not in packaged_configs():
            raise ConfigError(f"unknown CTC config {name_or_path!r}; packaged: {packaged_configs()}, or give a path")
        path = Path(str(resources.files("learn2diss.eval").joinpath(f"{name_or_path}.yaml")))
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with finetune and decode sections")
    data.setdefault("decode", {})
    try:
        data = apply_overrides(_with_decode_defaults(data), overrides or [])
        config = from_dict(CtcConfig, data, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return path.stem, config


def _with_decode_defaults(data: dict) -> dict:
    """The decode section may leave out keys: the torchaudio HuBERT defaults fill them."""
    import dataclasses

    defaults = {f.name: getattr(DecodeConfig(), f.name) for f in dataclasses.fields(DecodeConfig)}
    decode = data["decode"] if isinstance(data["decode"], dict) else {}
    unknown = sorted(set(decode) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join('decode.' + k for k in unknown)} "
                          f"(valid keys here: {', '.join(defaults)})")
    return {**data, "decode": {**defaults, **decode}}
