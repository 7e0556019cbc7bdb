"""The training loop's settings (``train:``) and the optimiser with its learning-rate schedule.

Both are sections of a workflow's YAML (the pretraining run config, a CTC config), read through
:mod:`learn2diss.schema`: every key is required, and an unknown, missing or out-of-range one is an error
naming it. A schedule is a method of its config (:meth:`OptimizerConfig.learning_rate`), so a new
schedule is a new config class, not a branch in the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from learn2diss.schema import check_ranges, non_negative, positive

__all__ = ["TrainConfig", "OptimizerConfig", "TriStageOptimizerConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Engineering settings of a trained stage (pretraining's utt-simclr and joint stages, CTC fine-tuning)."""

    seed: int  # model init (random parent), dropout
    checkpoint_every: int  # optimiser steps between checkpoints
    keep_checkpoints: int  # older ones are deleted
    log_every: int  # optimiser steps between TensorBoard points
    max_nonfinite_steps: int  # abort after this many skipped steps (NaN/inf loss) in a stage
    precision: Literal["bf16", "fp32"]  # autocast dtype on CUDA; the CPU always runs fp32
    # torch.compile of the parts of the step the objective names (none: eager); docs/pretraining.md "Speed"
    compile: Literal["none", "default", "max-autotune-no-cudagraphs"]

    def __post_init__(self) -> None:
        check_ranges(*((name, getattr(self, name), getattr(self, name) >= 1, ">= 1")
                       for name in ("checkpoint_every", "keep_checkpoints", "log_every")),
                     ("max_nonfinite_steps", self.max_nonfinite_steps, self.max_nonfinite_steps >= 0, ">= 0"))


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam (Kingma & Ba) with a constant or warm-up + linear-decay learning rate."""

    lr: float  # peak (or constant) learning rate
    schedule: Literal["constant", "warmup_linear"]  # warmup_linear: initial_lr -> lr over warmup_steps, then -> final_lr
    initial_lr: float
    final_lr: float
    warmup_steps: int
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    clip_grad_norm: float  # 0 disables clipping

    def __post_init__(self) -> None:
        check_ranges(
            positive("lr", self.lr),
            *(non_negative(name, getattr(self, name)) for name in ("initial_lr", "final_lr", "weight_decay",
                                                                    "clip_grad_norm")),
            ("warmup_steps", self.warmup_steps, self.warmup_steps >= 0, ">= 0"),
            ("betas", list(self.betas), all(0 <= beta < 1 for beta in self.betas), "each in [0, 1)"),
            positive("eps", self.eps),
        )

    def learning_rate(self, step: int, total_steps: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based), a pure function of the step.

        ``constant``: ``lr``. ``warmup_linear``: ``initial_lr -> lr`` over ``warmup_steps`` steps, then
        ``lr -> final_lr`` at ``total_steps`` (paper §3.3: 1e-6 -> 1e-4 over 10 k steps, then down to 1e-6 at
        100 k).

        >>> cfg = OptimizerConfig(1e-4, "warmup_linear", 1e-6, 1e-6, 10, (0.9, 0.98), 1e-6, 0.0, 10.0)
        >>> [round(cfg.learning_rate(step, 20), 8) for step in (0, 5, 10, 15, 20)]
        [1e-06, 5.05e-05, 0.0001, 5.05e-05, 1e-06]
        """
        if self.schedule == "constant":
            return self.lr
        if step < self.warmup_steps:
            return self.initial_lr + (self.lr - self.initial_lr) * step / self.warmup_steps
        return self.after_warmup(step - self.warmup_steps, total_steps - self.warmup_steps)

    def after_warmup(self, step: int, steps_left: int) -> float:
        """The learning rate ``step`` steps after the warm-up, of ``steps_left``: linear decay to ``final_lr``."""
        return self.lr + (self.final_lr - self.lr) * min(step / max(steps_left, 1), 1.0)


@dataclass(frozen=True)
class TriStageOptimizerConfig(OptimizerConfig):
    """An optimiser that may also follow fairseq's tri-stage schedule (CTC fine-tuning): ``initial_lr -> lr``
    linearly over ``warmup_steps``, ``lr`` for ``hold_steps``, exponential decay to ``final_lr`` over
    ``decay_steps``, then ``final_lr``.

    >>> cfg = TriStageOptimizerConfig(1e-4, "tri_stage", 1e-6, 1e-6, 2, (0.9, 0.98), 1e-8, 0.0, 0.0, 2, 2)
    >>> [round(cfg.learning_rate(step, 8), 8) for step in range(8)]
    [1e-06, 5.05e-05, 0.0001, 0.0001, 0.0001, 1e-05, 1e-06, 1e-06]
    """

    schedule: Literal["constant", "warmup_linear", "tri_stage"]  # type: ignore[assignment]  # widens the base's
    hold_steps: int
    decay_steps: int

    def __post_init__(self) -> None:
        super().__post_init__()
        tri_stage = self.schedule == "tri_stage"
        check_ranges(("hold_steps", self.hold_steps, self.hold_steps >= 0, ">= 0"),
                     ("decay_steps", self.decay_steps, self.decay_steps >= 0, ">= 0"),
                     *((name, getattr(self, name), not tri_stage or getattr(self, name) > 0,
                        "> 0 with schedule tri_stage (exponential decay)") for name in ("lr", "final_lr")))

    def after_warmup(self, step: int, steps_left: int) -> float:
        if self.schedule != "tri_stage":
            return super().after_warmup(step, steps_left)
        if step < self.hold_steps:
            return self.lr
        step -= self.hold_steps
        if step < self.decay_steps:
            return self.lr * math.exp(math.log(self.final_lr / self.lr) * step / self.decay_steps)
        return self.final_lr
