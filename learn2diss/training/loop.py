"""The one training loop of every trained stage (nanoGPT's order: LR -> micro-steps -> step -> log -> save).

A workflow describes a stage as a :class:`TrainingStage`: the model it checkpoints, an :class:`Objective` and
the optimisers. Pretraining's SimCLR and joint stages and CTC fine-tuning are objectives; the loop owns every
optimiser step, the objective's auxiliary networks (q_phi) included. :class:`Trainer` takes one optimiser step:

1. sets each optimiser's learning rate (:meth:`~learn2diss.training.config.OptimizerConfig.learning_rate`, a
   pure function of the step), reseeds the global RNG (dropout) from ``(seed, step, rank)`` and calls the
   objective's ``before_step`` (CTC: freeze g);
2. runs ``grad_accum`` micro-batches (DDP gradient sync on the last one only, via ``no_sync``): the objective's
   forward under autocast, then ``steps`` optimiser steps of each :class:`Auxiliary` on the outputs (q_phi's
   NLL, eq. 2; a step whose gradient is NaN/inf is skipped), then the objective's ``loss`` and its backward;
3. skips the step if a loss or a gradient norm is NaN/inf on any rank (counted; the run aborts after
   ``train.max_nonfinite_steps``), else clips and steps every optimiser;
4. stops the run at the first update that leaves a NaN/inf weight, naming the step and the tensor, before a
   checkpoint can hold it (:class:`NonFiniteWeightsError`).

:func:`train` drives it: :func:`_resume` from the newest usable checkpoint, then per step the
:class:`Trainer` step, the log (every term, the learning rates and audio-seconds/s to TensorBoard and
``metrics.jsonl``, a tqdm bar) and every ``train.checkpoint_every`` steps a checkpoint written atomically by
rank 0 (:func:`checkpoint_state`). Everything random is a function of (seed, step, rank, micro-batch) and the
data position, so resuming continues exactly (bit-for-bit on the CPU). Ctrl-C ends it with
:class:`~learn2diss.errors.Interrupted`: the step reached and the checkpoint a resumed run starts from.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from learn2diss.errors import Interrupted, Learn2DissError
from learn2diss.io import move, remove_temporaries, save_torch
from learn2diss.rng import seed_for
from learn2diss.training.checkpoint import (
    CHECKPOINT_PATTERN,
    checkpoints,
    latest_checkpoint,
    load_latest_checkpoint,
    prune,
)
from learn2diss.training.config import OptimizerConfig, TrainConfig
from learn2diss.training.ddp import DistributedContext, any_true, total
from learn2diss.training.metrics import MetricsLogger, cut_metrics
from learn2diss.training.precision import autocast

__all__ = ["Objective", "Auxiliary", "TrainingStage", "TrainingBatch", "StepLoss", "Trainer", "Progress", "train",
           "make_adam", "checkpoint_state", "NonFiniteLossError", "NonFiniteWeightsError", "ResumeError",
           "CheckpointExistsError"]


class NonFiniteLossError(Learn2DissError, RuntimeError):
    """Too many optimiser steps were skipped for NaN/inf losses or gradients."""


class NonFiniteWeightsError(Learn2DissError, RuntimeError):
    """An update left a NaN/inf weight (a learning rate or eps that diverges); the message names step and tensor."""


class ResumeError(Learn2DissError, ValueError):
    """The stage folder's checkpoint was written by another number of processes."""


class CheckpointExistsError(Learn2DissError, FileExistsError):
    """The stage folder holds a checkpoint and the run was not asked to resume."""


class StepLoss(NamedTuple):
    """What an objective's ``loss`` returns: the total to back-propagate and the terms to log, by name (a bare
    name is logged as ``loss/<name>``, a name with a group such as ``ctc/blank_rate`` as it is; ``count/...``
    terms are summed over a logging interval, the others averaged)."""

    total: Tensor
    terms: dict[str, Tensor]


class TrainingBatch(Protocol):
    """What the loop reads of a batch (:class:`~learn2diss.data.batching.Batch`, the CTC batch)."""

    epoch: int  # position in the sampler's stream: the next batch after it is (epoch, index + 1)
    index: int

    @property
    def audio_seconds(self) -> float: ...

    def to(self, device: torch.device) -> TrainingBatch: ...


@dataclass
class Auxiliary:
    """A network that an objective trains with its own optimiser on each micro-batch's outputs, before the main loss
    (q_phi by its NLL, eq. 2). The loop takes its steps, wraps it in DDP, sets its learning rate and checkpoints it
    with its optimiser (under ``name``).

    Attributes:
        loss: ``(module or its DDP wrapper, outputs) -> scalar``: the loss of one step (on detached inputs).
        items: ``outputs -> int``: what this rank's micro-batch offers (MI pairs). The steps run when the items
            of all ranks add up to ``min_items`` (on every rank, so that DDP's all-reduce matches); the last
            loss is logged as ``loss/<log_name>`` on the ranks that have ``min_items`` themselves.
        steps: optimiser steps per micro-batch (0: never trained).
    """

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    config: OptimizerConfig
    steps: int
    loss: Callable[[nn.Module, Any], Tensor]
    items: Callable[[Any], int]
    min_items: int
    log_name: str


class Objective:
    """What the loop trains: a module whose forward ``(batch, generator) -> outputs`` DDP wraps (``module``; a named
    tuple of tensors, so that DDP finds them), the loss of those outputs, and the hooks below (no-ops here)."""

    def __init__(self, module: nn.Module, auxiliaries: list[Auxiliary] | None = None) -> None:
        self.module = module
        self.auxiliaries = auxiliaries or []

    def loss(self, outputs: Any, step: int) -> StepLoss:
        """The total to back-propagate and the terms to log, after the auxiliaries' steps on ``outputs``."""
        raise NotImplementedError

    def before_step(self, step: int) -> None:
        """Called with the step before its micro-batches (CTC: g frozen for the first updates)."""

    def compile(self, mode: str) -> None:
        """Compile the parts of the step that pay (``train.compile``, :func:`~learn2diss.training.compile.compile_part`);
        called once, before the DDP wrap. Parts left eager run as they do with ``none``."""


@dataclass
class TrainingStage:
    """What :func:`train` needs to know about one stage.

    Attributes:
        name: stage name (checkpoint and TensorBoard folders).
        model: the trained model (checkpointed as ``model``): Learn2Diss, or the CTC model.
        optimizers: name -> (optimizer, its config), stepped after the micro-batches.
        steps, grad_accum: optimiser steps and micro-batches per step.
    """

    name: str
    model: nn.Module
    objective: Objective
    optimizers: dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]]
    steps: int
    grad_accum: int

    @property
    def all_optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]]:
        """Every optimiser of the stage, the auxiliaries' included: their learning rates and checkpoints."""
        return {**self.optimizers, **{a.name: (a.optimizer, a.config) for a in self.objective.auxiliaries}}


@dataclass
class Progress:
    """Where a run stands: the next step, the data position after the last batch, the skipped steps and
    the latest checkpoint."""

    step: int = 0
    position: tuple[int, int] = (0, 0)
    nonfinite: int = 0
    checkpoint: Path | None = None
    learning_rates: dict[str, float] = field(default_factory=dict)


def make_adam(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Adam:
    """Adam from the config; the fused CUDA kernel when the parameters are on a GPU (one launch per step)."""
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                            fused=fused or None)


def _grad_norm(params: list[nn.Parameter], clip: float) -> Tensor:
    """The gradient norm of ``params`` (before clipping), clipped to ``clip`` (0: not clipped)."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)


def _parameters(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _no_sync(module: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` (gradients accumulate locally) of a wrapped module."""
    assert isinstance(module, nn.parallel.DistributedDataParallel)
    return module.no_sync()


def _wrap(module: nn.Module, ctx: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """``module``, in DDP when the run has several processes."""
    if not ctx.distributed:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                               find_unused_parameters=find_unused_parameters)


class Trainer:
    """The optimiser steps of one stage: the objective's module (in DDP with several processes, with
    ``find_unused_parameters``: batches without two-segment utterances leave h unused, CTC freezes g at first),
    its auxiliaries (each in its own DDP), autocast and the NaN/inf policy. :func:`train` drives it;
    ``bench/train_step.py`` times :meth:`step`."""

    def __init__(self, stage: TrainingStage, train_cfg: TrainConfig, ctx: DistributedContext) -> None:
        self.stage, self.cfg, self.ctx = stage, train_cfg, ctx
        if train_cfg.compile != "none" and ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotuned convolutions, reused for the shapes that repeat
        stage.objective.compile(train_cfg.compile)
        self.module = _wrap(stage.objective.module, ctx, find_unused_parameters=True)
        self.auxiliaries = [(aux, _wrap(aux.module, ctx)) for aux in stage.objective.auxiliaries]
        self.autocast = autocast(ctx.device, train_cfg.precision)

    def step(self, stream: Iterator[TrainingBatch], progress: Progress, logger: MetricsLogger) -> float:
        """Optimiser step ``progress.step`` on the next ``grad_accum`` batches of ``stream``; advances ``progress``
        and returns the audio seconds of the step (all ranks)."""
        step = progress.step
        progress.learning_rates = self._set_learning_rates(step)
        torch.manual_seed(seed_for(self.cfg.seed, step, self.ctx.rank))
        self.stage.objective.before_step(step)
        bad, seconds = self._micro_batches(stream, progress, logger)
        logger.add({f"grad_norm/{k}": v for k, v in self._apply(bad, progress).items()})
        self._check_weights(step + 1)
        progress.step = step + 1
        return seconds

    def _check_weights(self, step: int) -> None:
        """Stop at the first update that left a NaN/inf weight in the model or an auxiliary, naming the step and the
        tensor. One max-norm over every parameter (one host sync); the names are looked up only when it is not finite.
        """
        modules = {"": self.stage.model} | {f"{aux.name}.": aux.module for aux in self.stage.objective.auxiliaries}
        params = [p for module in modules.values() for p in module.parameters()]
        if not params or bool(torch.isfinite(torch.nn.utils.get_total_norm(params, math.inf, foreach=True))):
            return
        for prefix, module in modules.items():
            for name, p in module.named_parameters():
                bad = int((~torch.isfinite(p.detach())).sum())
                if bad:
                    raise NonFiniteWeightsError(
                        f"{self.stage.name}: step {step}: the update made {bad} of {p.numel()} values of {prefix}{name} "
                        "NaN/inf; stopped before anything non-finite was saved (lower the learning rate, raise eps)")

    def _set_learning_rates(self, step: int) -> dict[str, float]:
        lrs = {}
        for name, (opt, cfg) in self.stage.all_optimizers.items():
            lrs[name] = cfg.learning_rate(step, self.stage.steps)
            for group in opt.param_groups:
                group["lr"] = lrs[name]
        return lrs

    def _micro_batches(self, stream: Iterator[TrainingBatch], progress: Progress,
                       logger: MetricsLogger) -> tuple[Tensor, float]:
        """Forward, auxiliary steps and backward of the ``grad_accum`` micro-batches; returns whether a loss was
        NaN/inf on this rank and their audio seconds (summed over the ranks). Sets the data position."""
        stage, ctx = self.stage, self.ctx
        bad = torch.zeros((), dtype=torch.bool, device=ctx.device)
        seconds = 0.0
        for micro in range(stage.grad_accum):
            batch = next(stream)
            seconds += batch.audio_seconds * ctx.world_size  # read on the CPU copy: no device sync
            batch = batch.to(ctx.device)
            generator = torch.Generator(device=ctx.device).manual_seed(
                seed_for(self.cfg.seed, progress.step, ctx.rank, micro))
            sync = micro == stage.grad_accum - 1 or not ctx.distributed
            with contextlib.nullcontext() if sync else _no_sync(self.module):
                with self.autocast:
                    outputs = self.module(batch, generator)
                auxiliary_terms = self.auxiliary_steps(outputs)
                loss, terms = stage.objective.loss(outputs, progress.step)
                (loss / stage.grad_accum).backward()
            bad |= ~torch.isfinite(loss.detach())
            terms = {k if "/" in k else f"loss/{k}": v for k, v in terms.items()}
            logger.add(terms | auxiliary_terms | {"loss/total": loss})
            progress.position = (batch.epoch, batch.index + 1)
        return bad, seconds

    def auxiliary_steps(self, outputs: Any) -> dict[str, Tensor]:
        """Each auxiliary's optimiser steps on ``outputs`` (a step with a NaN/inf gradient is skipped); returns the
        last loss of each, for the log."""
        logged = {}
        for aux, module in self.auxiliaries:
            items = aux.items(outputs)
            if not aux.steps or total(self.ctx, items) < aux.min_items:
                continue
            params = list(aux.module.parameters())
            for _ in range(aux.steps):
                loss = aux.loss(module, outputs)
                aux.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, aux.config.clip_grad_norm or math.inf)
                if bool(torch.isfinite(norm)):  # identical on every rank after DDP's gradient all-reduce
                    aux.optimizer.step()
            if items >= aux.min_items:
                logged[f"loss/{aux.log_name}"] = loss.detach()
        return logged

    def _apply(self, bad: Tensor, progress: Progress) -> dict[str, Tensor]:
        """Clip and step every optimiser, unless a loss or a gradient norm is NaN/inf on any rank: then the step is
        skipped and counted, and more than ``train.max_nonfinite_steps`` skipped steps abort the stage.
        Returns the gradient norms (before clipping)."""
        stage, ctx = self.stage, self.ctx
        norms = {name: _grad_norm(_parameters(opt), cfg.clip_grad_norm) for name, (opt, cfg) in stage.optimizers.items()}
        for norm in norms.values():
            bad |= ~torch.isfinite(norm.to(ctx.device))
        if any_true(ctx, bad):  # the one host sync of the step
            progress.nonfinite += 1
            if ctx.is_main:
                print(f"[{stage.name}] step {progress.step + 1}: NaN/inf loss or gradient, step skipped "
                      f"({progress.nonfinite} so far, limit {self.cfg.max_nonfinite_steps})")
            if progress.nonfinite > self.cfg.max_nonfinite_steps:
                raise NonFiniteLossError(f"{stage.name}: {progress.nonfinite} steps with NaN/inf losses "
                                         f"(train.max_nonfinite_steps = {self.cfg.max_nonfinite_steps})")
        else:
            for opt, _ in stage.optimizers.values():
                opt.step()
        for opt, _ in stage.optimizers.values():
            opt.zero_grad(set_to_none=True)
        return norms


def _check_replicas(ctx: DistributedContext, modules: list[nn.Module], step: int) -> None:
    """Before a checkpoint: every rank must hold the same weights (a cheap checksum; DDP keeps them equal)."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    checksum = torch.stack([p.detach().double().sum() for m in modules for p in m.parameters()]).sum()
    checksum = checksum.to(ctx.device).reshape(1)
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"step {step}: the weights differ between processes ({low.item()} vs {high.item()})")


def _resume(stage: TrainingStage, ckpt_dir: Path, ctx: DistributedContext, resume: bool) -> Progress:
    """Load the latest usable checkpoint of ``ckpt_dir`` into the stage (``resume``), or check there is none."""
    if ctx.is_main:
        remove_temporaries(ckpt_dir)  # left by a writer that was killed
    if latest_checkpoint(ckpt_dir) is None:
        return Progress()
    if not resume:
        raise CheckpointExistsError(f"{latest_checkpoint(ckpt_dir)} exists: pass --resume to continue this run, "
                                    "or use another --out")
    loaded = load_latest_checkpoint(ckpt_dir, print if ctx.is_main else lambda _: None)
    assert loaded is not None  # a checkpoint exists (checked above)
    found, state = loaded
    if ctx.is_main:  # damaged newer files are kept aside, out of the way of pruning and later resumes
        newest_first = checkpoints(ckpt_dir)
        for damaged in newest_first[: newest_first.index(found)]:
            move(damaged, damaged.with_name(damaged.name + ".damaged"))
            print(f"[{stage.name}] {damaged} moved to {damaged.name}.damaged")
    if state.get("world_size") != ctx.world_size:
        raise ResumeError(f"{found} was written by {state.get('world_size')} processes, this run has "
                          f"{ctx.world_size}: the data position would not match")
    missing = sorted(set(stage.all_optimizers) - set(state["optimizers"]))
    if missing:
        raise ResumeError(f"{found} holds no state of the optimiser(s) {missing} (it has {sorted(state['optimizers'])}):"
                          " written by another layout of this stage; move it away or use another run folder")
    stage.model.load_state_dict(state["model"])
    for aux in stage.objective.auxiliaries:
        aux.module.load_state_dict(state["modules"][aux.name])
    for name, (opt, _) in stage.all_optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    if ctx.is_main:
        print(f"[{stage.name}] resuming from {found} (step {state['step']})")
    return Progress(state["step"], tuple(state["position"]), state["nonfinite_steps"], found)


def checkpoint_state(stage: TrainingStage, progress: Progress, world_size: int, extra: dict) -> dict:
    """The checkpoint of ``stage`` at ``progress`` (the one place its contents are listed; see
    :data:`~learn2diss.training.checkpoint.CHECKPOINT_KEYS`), with the plain data ``extra`` (resolved config,
    model config)."""
    return {
        "stage": stage.name,
        "step": progress.step,
        "position": list(progress.position),
        "world_size": world_size,
        "nonfinite_steps": progress.nonfinite,
        "model": stage.model.state_dict(),
        "modules": {aux.name: aux.module.state_dict() for aux in stage.objective.auxiliaries},
        "optimizers": {k: opt.state_dict() for k, (opt, _) in stage.all_optimizers.items()},
        **extra,
    }


def _save(stage: TrainingStage, progress: Progress, ckpt_dir: Path, train_cfg: TrainConfig, ctx: DistributedContext,
          extra: dict) -> Path:
    """Write ``step_N.pt`` (rank 0, after checking that the replicas agree) and prune old ones; returns its path."""
    _check_replicas(ctx, [stage.model, *(aux.module for aux in stage.objective.auxiliaries)], progress.step)
    path = ckpt_dir / f"step_{progress.step:07d}.pt"
    if ctx.is_main:
        save_torch(path, checkpoint_state(stage, progress, ctx.world_size, extra))  # atomic: temporary file + rename
        prune(ckpt_dir, train_cfg.keep_checkpoints)
    return path


def _log(logger: MetricsLogger, bar: Any, progress: Progress, seconds: float, elapsed: float) -> None:
    """Write the means since the last point, the learning rates, throughput and skipped steps; update the bar."""
    extra = {f"lr/{k}": v for k, v in progress.learning_rates.items()}
    extra |= {"throughput/audio_seconds_per_second": seconds / max(elapsed, 1e-9),
              "train/nonfinite_steps": float(progress.nonfinite)}
    means = logger.write(progress.step, extra)
    bar.set_postfix(loss=f"{means['loss/total']:.3f}", audio_s_per_s=f"{means['throughput/audio_seconds_per_second']:.0f}")


def _interrupted(stage: TrainingStage, progress: Progress, ckpt_dir: Path, resume: bool) -> Interrupted:
    """Ctrl-C in the loop: the step reached, the checkpoint a resumed run starts from, and how to resume.

    The checkpoint is the newest one on disk, not the last one the loop recorded: Ctrl-C may arrive after a
    checkpoint's rename and before the loop has recorded it."""
    latest = latest_checkpoint(ckpt_dir)
    found = CHECKPOINT_PATTERN.fullmatch(latest.name) if latest else None
    start = f"its checkpoint of step {int(found.group(1))}" if found else "the start (no checkpoint yet)"
    how = "rerun the same command to resume" if resume else "resume with --resume"
    return Interrupted(f"{stage.name}: interrupted at step {progress.step}; {how} (from {start})")


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
    trainer = Trainer(stage, train_cfg, ctx)
    if ctx.is_main:
        cut_metrics(work_dir / "metrics.jsonl", progress.step)  # steps after the checkpoint are logged again
    logger = MetricsLogger(work_dir, tensorboard_dir, ctx.is_main, progress.step)
    stream = batches(progress.position)
    bar = tqdm(total=stage.steps, initial=progress.step, desc=stage.name, unit="step", disable=not ctx.is_main,
               dynamic_ncols=True)
    seconds, tic = 0.0, time.perf_counter()
    stage.objective.module.train()
    try:
        while progress.step < stage.steps:
            seconds += trainer.step(stream, progress, logger)
            bar.update(1)
            if progress.step % train_cfg.log_every == 0 or progress.step == stage.steps:
                _log(logger, bar, progress, seconds, time.perf_counter() - tic)
                seconds, tic = 0.0, time.perf_counter()
            if progress.step % train_cfg.checkpoint_every == 0 or progress.step == stage.steps:
                progress.checkpoint = _save(stage, progress, ckpt_dir, train_cfg, ctx, checkpoint_extra or {})
    except KeyboardInterrupt:
        raise _interrupted(stage, progress, ckpt_dir, resume) from None
    finally:
        bar.close()
        logger.close()
    if progress.checkpoint is None:  # steps == 0: the initial state is the result
        progress.checkpoint = _save(stage, progress, ckpt_dir, train_cfg, ctx, checkpoint_extra or {})
    return progress.checkpoint
