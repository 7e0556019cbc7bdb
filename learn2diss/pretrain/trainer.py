"""The one training loop: the utt-simclr and joint stages, and CTC fine-tuning (nanoGPT's order: LR -> micro-steps ->
step -> log -> save).

One function, :func:`train`, parameterised by a :class:`TrainingStage`. After :func:`_resume` and
:func:`_wrap` (DDP), per optimiser step it

1. sets each optimiser's learning rate from :func:`lr_at` (a pure function of the step), reseeds
   the global RNG (dropout) from ``(seed, step, rank)`` and calls ``stage.before_step`` (CTC: freeze g);
2. :func:`_micro_batches`: ``grad_accum`` micro-batches (DDP gradient sync on the last one only, via
   ``no_sync``), each under bf16 autocast on CUDA, calling ``stage.loss`` on the objective's outputs;
3. :func:`_apply_step`: skips the step if a loss or the gradient norm is NaN/inf on any rank (counted;
   the run aborts after ``train.max_nonfinite_steps``), else clips and steps every optimiser;
4. :func:`_log`: every term, the learning rates and audio-seconds/s to TensorBoard and ``metrics.jsonl``
   (rank 0), and a tqdm bar;
5. :func:`_save`: every ``train.checkpoint_every`` steps a checkpoint, written atomically by rank 0
   (:func:`checkpoint_state`: model, extra modules (q_phi), every optimiser, the step, the data position
   and the skip count). Everything random is a function of (seed, step, rank, micro-batch) and the data
   position, so resuming from it continues exactly (bit-for-bit on CPU).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from learn2diss.errors import Learn2DissError
from learn2diss.io import remove_temporaries, save_torch, write_text
from learn2diss.pretrain.config import OptimizerConfig, TrainConfig, TriStageOptimizerConfig
from learn2diss.pretrain.ddp import DistributedContext, any_true
from learn2diss.upstream.checkpoints import CheckpointError, load_untrusted

__all__ = ["TrainingStage", "TrainingBatch", "StepLoss", "train", "lr_at", "make_adam", "seed_for", "latest_checkpoint",
           "load_checkpoint", "load_latest_checkpoint", "save_checkpoint", "checkpoint_state", "NonFiniteLossError",
           "ResumeError", "CheckpointExistsError", "CHECKPOINT_PATTERN", "cut_metrics"]

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")


class NonFiniteLossError(Learn2DissError, RuntimeError):
    """Too many optimiser steps were skipped for NaN/inf losses or gradients."""


class ResumeError(Learn2DissError, ValueError):
    """The stage folder's checkpoint was written by another number of processes."""


class CheckpointExistsError(Learn2DissError, FileExistsError):
    """The stage folder holds a checkpoint and the run was not asked to resume."""


class StepLoss(NamedTuple):
    """What a stage's ``loss`` returns: the total to back-propagate and the terms to log, by name
    (``count/...`` terms are summed over a logging interval, the others averaged)."""

    total: Tensor
    terms: dict[str, Tensor]


class TrainingBatch(Protocol):
    """What :func:`train` reads of a batch (:class:`~learn2diss.data.batching.Batch`, the CTC batch)."""

    epoch: int  # position in the sampler's stream: the next batch after it is (epoch, index + 1)
    index: int

    @property
    def audio_seconds(self) -> float: ...

    def to(self, device: torch.device) -> TrainingBatch: ...


def lr_at(cfg: OptimizerConfig, step: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): constant, warm-up + linear decay, or tri-stage.

    ``warmup_linear``: ``initial_lr -> lr`` over ``warmup_steps`` steps, then ``lr -> final_lr`` at
    ``total_steps`` (paper §3.3: 1e-6 -> 1e-4 over 10 k steps, then down to 1e-6 at 100 k).
    ``tri_stage`` (fairseq's, CTC fine-tuning; a :class:`TriStageOptimizerConfig`): ``initial_lr -> lr``
    linearly over ``warmup_steps``, ``lr`` for ``hold_steps``, exponential decay to ``final_lr`` over
    ``decay_steps``, then ``final_lr``.
    """
    if cfg.schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.initial_lr + (cfg.lr - cfg.initial_lr) * step / cfg.warmup_steps
    if isinstance(cfg, TriStageOptimizerConfig) and cfg.schedule == "tri_stage":
        return _tri_stage_after_warmup(cfg, step - cfg.warmup_steps)
    decay = max(total_steps - cfg.warmup_steps, 1)
    return cfg.lr + (cfg.final_lr - cfg.lr) * min((step - cfg.warmup_steps) / decay, 1.0)


def _tri_stage_after_warmup(cfg: TriStageOptimizerConfig, step: int) -> float:
    if step < cfg.hold_steps:
        return cfg.lr
    step -= cfg.hold_steps
    if step < cfg.decay_steps:
        return cfg.lr * math.exp(math.log(cfg.final_lr / cfg.lr) * step / cfg.decay_steps)
    return cfg.final_lr


def make_adam(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Adam:
    """Adam from the config; the fused CUDA kernel when the parameters are on a GPU (one launch per step)."""
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                            fused=fused or None)


def seed_for(*keys: int) -> int:
    """A 63-bit seed mixed from integers (training seed, step, rank, micro-batch, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass
class TrainingStage:
    """What :func:`train` needs to know about one stage.

    Attributes:
        name: stage name (checkpoint and TensorBoard folders).
        model: the trained model (checkpointed as ``model``): Learn2Diss, or the CTC model.
        objective: module whose forward ``(batch, generator) -> outputs`` DDP wraps (a named tuple of
            tensors, so that DDP finds them).
        optimizers: name -> (optimizer, its config), stepped after the micro-batches.
        loss: ``(outputs, step) -> StepLoss``; may update inner modules (q_phi) itself.
        steps, grad_accum: optimiser steps and micro-batches per step.
        extra_modules, extra_optimizers: also checkpointed (q_phi and its optimiser); the extra
            optimisers' LRs follow :func:`lr_at` too, but ``loss`` steps them.
        before_step: called with the step before its micro-batches (CTC: g frozen for the first updates).
    """

    name: str
    model: nn.Module
    objective: nn.Module
    optimizers: dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]]
    loss: Callable[[Any, int], StepLoss]
    steps: int
    grad_accum: int
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)
    extra_optimizers: dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]] = field(default_factory=dict)
    before_step: Callable[[int], None] | None = None

    @property
    def all_optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]]:
        return {**self.optimizers, **self.extra_optimizers}


@dataclass
class _Progress:
    """Where a run stands: the next step, the data position after the last batch, the skipped steps and
    the latest checkpoint."""

    step: int = 0
    position: tuple[int, int] = (0, 0)
    nonfinite: int = 0
    checkpoint: Path | None = None


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a training checkpoint atomically (temporary file, fsync, rename; no temporary file left on failure)."""
    save_torch(path, state)


def _checkpoints(directory: Path) -> list[Path]:
    """The ``step_N.pt`` files of ``directory``, newest (largest N) first."""
    found = [(int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := CHECKPOINT_PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(directory: Path) -> Path | None:
    """The ``step_N.pt`` with the largest N in ``directory``, if any."""
    found = _checkpoints(directory)
    return found[0] if found else None


_CHECKPOINT_KEYS = ("stage", "step", "position", "world_size", "nonfinite_steps", "model", "modules", "optimizers")


def load_checkpoint(path: Path) -> dict:
    """Our own training checkpoint, through :func:`load_untrusted` (``weights_only=True``; a pickle that wants
    to build objects is refused). A damaged or incomplete file is a :class:`CheckpointError` naming it."""
    state = load_untrusted(path)
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a learn2diss training checkpoint (missing {', '.join(missing)})")
    return state


def load_latest_checkpoint(directory: Path, log: Callable[[str], None] = print) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``directory`` that loads, or None if there is none.

    A damaged newer one (truncated, not a checkpoint, refused pickle) is skipped with a message naming it and
    the reason; if every checkpoint is damaged, :class:`CheckpointError` lists them.
    """
    found = _checkpoints(directory)
    skipped = []
    for path in found:
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            skipped.append(str(err))
            log(f"warning: skipping a damaged checkpoint: {err}")
    if skipped:
        raise CheckpointError(f"{directory}: no usable checkpoint: " + "; ".join(skipped))
    return None


def _prune(directory: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := CHECKPOINT_PATTERN.fullmatch(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)


def _grad_norm(optimizer: torch.optim.Optimizer, clip: float) -> Tensor:
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)


def _check_replicas(ctx: DistributedContext, modules: list[nn.Module], step: int) -> None:
    """Before a checkpoint: every rank must hold the same weights (a cheap checksum; DDP keeps them equal)."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    total = sum(p.detach().double().sum() for m in modules for p in m.parameters()).to(ctx.device).reshape(1)
    low, high = total.clone(), total.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"step {step}: the weights differ between processes ({low.item()} vs {high.item()})")


def cut_metrics(path: Path, step: int) -> None:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resumed run logs the later steps again, once);
    a line cut short by a kill is dropped too."""
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        kept += [line] if keep else []
        dropped += not keep
    if dropped:
        write_text(path, "".join(f"{line}\n" for line in kept))


class _Logger:
    """Rank-0 TensorBoard + metrics.jsonl writer; averages each scalar over the calls since the last write that
    reported it (a term missing from some micro-batches averages over the others); ``count/...`` keys are summed."""

    def __init__(self, directory: Path, tensorboard_dir: Path, enabled: bool, start_step: int = 0) -> None:
        self.enabled = enabled
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            directory.mkdir(parents=True, exist_ok=True)
            # purge_step: TensorBoard hides the events a killed run logged after its checkpoint
            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=start_step + 1 if start_step else None)
            self.jsonl = open(directory / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()

    def add(self, scalars: dict[str, Tensor]) -> None:
        for key, value in scalars.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def write(self, step: int, extra: dict[str, float]) -> dict[str, float]:
        means = {k: float(v) if k.startswith("count/") else float(v) / self.counts[k] for k, v in self.sums.items()}
        means.update(extra)
        self.sums, self.counts = {}, {}
        if self.enabled:
            for key, value in means.items():
                self.writer.add_scalar(key, value, step)
            self.jsonl.write(json.dumps({"step": step, **means}) + "\n")
            self.jsonl.flush()
        return means

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()


def _resume(stage: TrainingStage, ckpt_dir: Path, ctx: DistributedContext, resume: bool) -> _Progress:
    """Load the latest usable checkpoint of ``ckpt_dir`` into the stage (``resume``), or check there is none."""
    if ctx.is_main:
        remove_temporaries(ckpt_dir)  # left by a writer that was killed
    if latest_checkpoint(ckpt_dir) is None:
        return _Progress()
    if not resume:
        raise CheckpointExistsError(f"{latest_checkpoint(ckpt_dir)} exists: pass --resume to continue this run, "
                          "or use another --out")
    found, state = load_latest_checkpoint(ckpt_dir, print if ctx.is_main else lambda _: None)
    if ctx.is_main:  # damaged newer files are kept aside, out of the way of pruning and later resumes
        newest_first = _checkpoints(ckpt_dir)
        for damaged in newest_first[: newest_first.index(found)]:
            damaged.rename(damaged.with_name(damaged.name + ".damaged"))
            print(f"[{stage.name}] {damaged} moved to {damaged.name}.damaged")
    if state.get("world_size") != ctx.world_size:
        raise ResumeError(f"{found} was written by {state.get('world_size')} processes, this run has "
                          f"{ctx.world_size}: the data position would not match")
    stage.model.load_state_dict(state["model"])
    for name, module in stage.extra_modules.items():
        module.load_state_dict(state["modules"][name])
    for name, (opt, _) in stage.all_optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    if ctx.is_main:
        print(f"[{stage.name}] resuming from {found} (step {state['step']})")
    return _Progress(state["step"], tuple(state["position"]), state["nonfinite_steps"], found)


def _wrap(objective: nn.Module, ctx: DistributedContext) -> nn.Module:
    """The objective, in DDP when the run has several processes."""
    if not ctx.distributed:
        return objective
    return nn.parallel.DistributedDataParallel(
        objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        find_unused_parameters=True,  # batches without two-segment utterances leave h unused; CTC freezes g at first
    )


def _set_learning_rates(stage: TrainingStage, step: int) -> dict[str, float]:
    """Each optimiser's learning rate at ``step`` (:func:`lr_at`); returns them by optimiser name."""
    lrs = {}
    for name, (opt, cfg) in stage.all_optimizers.items():
        lrs[name] = lr_at(cfg, step, stage.steps)
        for group in opt.param_groups:
            group["lr"] = lrs[name]
    return lrs


def _micro_batches(
    stage: TrainingStage, objective: nn.Module, stream: Iterator[TrainingBatch], step: int, train_cfg: TrainConfig,
    ctx: DistributedContext, logger: _Logger,
) -> tuple[Tensor, tuple[int, int], float]:
    """Forward and backward of the step's ``grad_accum`` micro-batches (DDP syncs the gradients of the last one).

    Returns whether a loss was NaN/inf on this rank, the data position after them and their audio seconds
    (summed over the ranks).
    """
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=ctx.device.type == "cuda" and train_cfg.precision == "bf16")
    bad = torch.zeros((), dtype=torch.bool, device=ctx.device)
    seconds, position = 0.0, (0, 0)
    for micro in range(stage.grad_accum):
        batch = next(stream)
        seconds += batch.audio_seconds * ctx.world_size  # read on the CPU copy: no device sync
        batch = batch.to(ctx.device)
        generator = torch.Generator(device=ctx.device).manual_seed(seed_for(train_cfg.seed, step, ctx.rank, micro))
        sync = micro == stage.grad_accum - 1 or not ctx.distributed
        with contextlib.nullcontext() if sync else objective.no_sync():
            with autocast:
                outputs = objective(batch, generator)
            total, terms = stage.loss(outputs, step)
            (total / stage.grad_accum).backward()
        bad |= ~torch.isfinite(total.detach())
        logger.add({k if k.startswith("count/") else f"loss/{k}": v for k, v in terms.items()} | {"loss/total": total})
        position = (batch.epoch, batch.index + 1)
    return bad, position, seconds


def _apply_step(stage: TrainingStage, bad: Tensor, progress: _Progress, train_cfg: TrainConfig,
                ctx: DistributedContext) -> dict[str, Tensor]:
    """Clip and step every optimiser, unless a loss or a gradient norm is NaN/inf on any rank: then the step is
    skipped and counted, and more than ``train.max_nonfinite_steps`` skipped steps abort the stage.
    Returns the gradient norms (before clipping)."""
    norms = {name: _grad_norm(opt, cfg.clip_grad_norm) for name, (opt, cfg) in stage.optimizers.items()}
    for norm in norms.values():
        bad |= ~torch.isfinite(norm.to(ctx.device))
    if any_true(ctx, bad):  # the one host sync of the step
        progress.nonfinite += 1
        if ctx.is_main:
            print(f"[{stage.name}] step {progress.step + 1}: NaN/inf loss or gradient, step skipped "
                  f"({progress.nonfinite} so far, limit {train_cfg.max_nonfinite_steps})")
        if progress.nonfinite > train_cfg.max_nonfinite_steps:
            raise NonFiniteLossError(f"{stage.name}: {progress.nonfinite} steps with NaN/inf losses "
                                     f"(train.max_nonfinite_steps = {train_cfg.max_nonfinite_steps})")
    else:
        for opt, _ in stage.optimizers.values():
            opt.step()
    for opt, _ in stage.optimizers.values():
        opt.zero_grad(set_to_none=True)
    return norms


def _log(logger: _Logger, bar: Any, progress: _Progress, lrs: dict[str, float], seconds: float, elapsed: float) -> None:
    """Write the means since the last point, the learning rates, throughput and skipped steps; update the bar."""
    extra = {f"lr/{k}": v for k, v in lrs.items()}
    extra |= {"throughput/audio_seconds_per_second": seconds / max(elapsed, 1e-9),
              "train/nonfinite_steps": float(progress.nonfinite)}
    means = logger.write(progress.step, extra)
    bar.set_postfix(loss=f"{means['loss/total']:.3f}", audio_s_per_s=f"{means['throughput/audio_seconds_per_second']:.0f}")


def checkpoint_state(stage: TrainingStage, progress: _Progress, world_size: int, extra: dict) -> dict:
    """The checkpoint of ``stage`` at ``progress`` (the one place its contents are listed; see
    :data:`_CHECKPOINT_KEYS`), with the plain data ``extra`` (resolved config, model config)."""
    return {
        "stage": stage.name,
        "step": progress.step,
        "position": list(progress.position),
        "world_size": world_size,
        "nonfinite_steps": progress.nonfinite,
        "model": stage.model.state_dict(),
        "modules": {k: m.state_dict() for k, m in stage.extra_modules.items()},
        "optimizers": {k: opt.state_dict() for k, (opt, _) in stage.all_optimizers.items()},
        **extra,
    }


def _save(stage: TrainingStage, progress: _Progress, ckpt_dir: Path, train_cfg: TrainConfig, ctx: DistributedContext,
          extra: dict) -> Path:
    """Write ``step_N.pt`` (rank 0, after checking that the replicas agree) and prune old ones; returns its path."""
    _check_replicas(ctx, [stage.model, *stage.extra_modules.values()], progress.step)
    path = ckpt_dir / f"step_{progress.step:07d}.pt"
    if ctx.is_main:
        save_checkpoint(path, checkpoint_state(stage, progress, ctx.world_size, extra))
        _prune(ckpt_dir, train_cfg.keep_checkpoints)
    return path


def train(
    stage: TrainingStage,
    batches: Callable[[tuple[int, int]], Iterator[TrainingBatch]],
    work_dir: Path,
    tensorboard_dir: Path,
    train_cfg: TrainConfig,
    ctx: DistributedContext,
    resume: bool,
    checkpoint_extra: dict | None = None,
) -> Path:
    """Run (or resume) ``stage`` to ``stage.steps`` optimiser steps; returns the final checkpoint.

    Args:
        batches: ``(epoch, batch index) -> iterator`` of this rank's batches from that position.
        work_dir: the stage folder (``checkpoints/``, ``metrics.jsonl``).
        resume: continue from the latest checkpoint; without it an existing checkpoint is an error.
        checkpoint_extra: plain data stored in every checkpoint (the resolved config).
    """
    from tqdm import tqdm

    ckpt_dir = work_dir / "checkpoints"
    progress = _resume(stage, ckpt_dir, ctx, resume)
    objective = _wrap(stage.objective, ctx)
    if ctx.is_main:
        cut_metrics(work_dir / "metrics.jsonl", progress.step)  # steps after the checkpoint are logged again
    logger = _Logger(work_dir, tensorboard_dir, ctx.is_main, progress.step)
    stream = batches(progress.position)
    bar = tqdm(total=stage.steps, initial=progress.step, desc=stage.name, unit="step", disable=not ctx.is_main,
               dynamic_ncols=True)
    seconds, tic = 0.0, time.perf_counter()
    stage.objective.train()
    for step in range(progress.step, stage.steps):
        lrs = _set_learning_rates(stage, step)
        torch.manual_seed(seed_for(train_cfg.seed, step, ctx.rank))
        if stage.before_step is not None:
            stage.before_step(step)
        bad, progress.position, step_seconds = _micro_batches(stage, objective, stream, step, train_cfg, ctx, logger)
        seconds += step_seconds
        logger.add({f"grad_norm/{k}": v for k, v in _apply_step(stage, bad, progress, train_cfg, ctx).items()})
        progress.step = step + 1
        bar.update(1)
        if progress.step % train_cfg.log_every == 0 or progress.step == stage.steps:
            _log(logger, bar, progress, lrs, seconds, time.perf_counter() - tic)
            seconds, tic = 0.0, time.perf_counter()
        if progress.step % train_cfg.checkpoint_every == 0 or progress.step == stage.steps:
            progress.checkpoint = _save(stage, progress, ckpt_dir, train_cfg, ctx, checkpoint_extra or {})
    bar.close()
    logger.close()
    if progress.checkpoint is None:  # steps == 0: the initial state is the result
        progress.checkpoint = _save(stage, progress, ckpt_dir, train_cfg, ctx, checkpoint_extra or {})
    return progress.checkpoint
