"""CTC fine-tuning and decoding settings, read from YAML and validated (an unknown key is an error naming it).

The packaged configs ``ctc_1h``, ``ctc_10h``, ``ctc_100h`` and ``ctc_demo`` live in ``learn2diss/configs/ctc/``;
a path to another YAML file works too (:func:`learn2diss.schema.find_config`: an existing file wins), and a file
may start from another with ``base:``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from learn2diss.eval.ctc.decode import DecodeConfig
from learn2diss.schema import ConfigError, check_ranges, find_config, load_config_file, positive
from learn2diss.schema import packaged_configs as schema_packaged_configs
from learn2diss.training.config import TrainConfig, TriStageOptimizerConfig


@dataclass(frozen=True)
class FinetuneConfig:
    """What CTC fine-tuning trains on and how: g's transformer layers and the linear CTC head, masking, batches
    and Adam with fairseq's tri-stage learning rate (``optimizer.schedule: tri_stage``)."""

    max_updates: int
    freeze_updates: int  # only the head trains for the first updates (fairseq freeze_finetune_updates)
    head_lr_scale: float  # the letter head's learning rates (lr, initial_lr, final_lr) are the optimizer's times this
    batch_seconds: float  # padded audio per micro-batch per process
    grad_accum: int  # micro-batches per update
    mask_prob: float  # span masking of X' during fine-tuning (0 disables it)
    mask_length: int
    max_seconds: float  # longer training utterances are skipped (at most batch_seconds)
    num_workers: int  # DataLoader worker processes reading the audio
    optimizer: TriStageOptimizerConfig

    def __post_init__(self) -> None:
        check_ranges(
            *((name, getattr(self, name), getattr(self, name) >= 1, ">= 1")
              for name in ("max_updates", "grad_accum", "mask_length")),
            *((name, getattr(self, name), getattr(self, name) >= 0, ">= 0") for name in ("freeze_updates", "num_workers")),
            positive("batch_seconds", self.batch_seconds),
            positive("head_lr_scale", self.head_lr_scale),
            ("max_seconds", self.max_seconds, 0 < self.max_seconds <= self.batch_seconds,
             f"in (0, batch_seconds = {self.batch_seconds}] (a batch holds the longest utterance)"),
            ("mask_prob", self.mask_prob, 0 <= self.mask_prob <= 1, "in [0, 1]"),
            ("freeze_updates", self.freeze_updates, self.freeze_updates < self.max_updates,
             f"< max_updates = {self.max_updates} (from update freeze_updates on, g trains with the head)"),
        )
        self._check_schedule()

    @property
    def head_optimizer(self) -> TriStageOptimizerConfig:
        """The letter head's optimizer: ``optimizer`` with its learning rates times ``head_lr_scale``."""
        opt, scale = self.optimizer, self.head_lr_scale
        return replace(opt, lr=opt.lr * scale, initial_lr=opt.initial_lr * scale, final_lr=opt.final_lr * scale)

    def _check_schedule(self) -> None:
        """The tri-stage schedule spans ``max_updates`` exactly (fairseq sizes its phases as shares of the updates):
        a longer one would stop before its decay, a shorter one would train the rest at ``final_lr``."""
        opt = self.optimizer
        if opt.schedule != "tri_stage":
            return
        phases = opt.warmup_steps + opt.hold_steps + opt.decay_steps
        if phases != self.max_updates:
            warmup, hold = round(0.1 * self.max_updates), round(0.4 * self.max_updates)
            raise ConfigError(
                f"finetune.optimizer: the tri-stage schedule (warmup_steps {opt.warmup_steps} + hold_steps "
                f"{opt.hold_steps} + decay_steps {opt.decay_steps} = {phases} updates) does not span "
                f"finetune.max_updates = {self.max_updates}; size its phases to the updates, e.g. fairseq's 10/40/50 %: "
                f"--set finetune.optimizer.warmup_steps={warmup} --set finetune.optimizer.hold_steps={hold} "
                f"--set finetune.optimizer.decay_steps={self.max_updates - warmup - hold}")


@dataclass(frozen=True)
class CtcConfig:
    """A CTC experiment: ``finetune``, ``train`` (seed, checkpoints, logging, NaN policy, precision: the
    pretraining trainer's settings) and ``decode`` sections."""

    finetune: FinetuneConfig
    train: TrainConfig
    decode: DecodeConfig


def packaged_configs() -> list[str]:
    """Names of the CTC configs that ship with the package (``learn2diss/configs/ctc/*.yaml``)."""
    return schema_packaged_configs("ctc")


def load_ctc_config(name_or_path: str | os.PathLike[str],
                    overrides: Iterable[str | tuple[str, Any]] = ()) -> tuple[str, CtcConfig]:
    """``(name, config)`` from a packaged name (``ctc_10h``) or a YAML path, with ``a.b=value`` overrides."""
    path = find_config(os.fspath(name_or_path), "ctc")
    return path.stem, load_config_file(CtcConfig, path, "ctc", overrides)
