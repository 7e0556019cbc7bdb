"""The training loop of the utt-simclr and joint stages (nanoGPT's order: LR -> micro-steps -> step -> log -> save).

One function, :func:`train`, parameterised by a :class:`TrainingStage`. Per optimiser step it

1. sets each optimiser's learning rate from :func:`lr_at` (a pure function of the step) and reseeds
   the global RNG (dropout) from ``(seed, step, rank)``;
2. runs ``grad_accum`` micro-batches (DDP gradient sync on the last one only, via ``no_sync``),
   each under bf16 autocast on CUDA, calling ``stage.loss`` on the objective's outputs;
3. skips the step if a loss or the gradient norm is NaN/inf on any rank (counted; the run aborts
   after ``train.max_nonfinite_steps``), else clips and steps every optimiser;
4. logs every term, the learning rates and audio-seconds/s to TensorBoard and ``metrics.jsonl``
   (rank 0) and shows a tqdm bar;
5. every ``train.checkpoint_every`` steps writes a checkpoint atomically (rank 0): model, extra
   modules (q_phi), every optimiser, the step, the data position and the skip count. Everything
   random is a function of (seed, step, rank, micro-batch) and the data position, so resuming from
   it continues exactly (bit-for-bit on CPU).
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

import numpy as np
import torch
from torch import Tensor, nn

from learn2diss.data.batching import Batch
from learn2diss.errors import Learn2DissError
from learn2diss.io import remove_temporaries, save_torch, write_text
from learn2diss.pretrain.config import OptimizerConfig, TrainConfig
from learn2diss.pretrain.ddp import DistributedContext, any_true
from learn2diss.upstream.checkpoints import CheckpointError, load_untrusted

__all__ = ["TrainingStage", "train", "lr_at", "make_adam", "seed_for", "latest_checkpoint", "load_checkpoint",
           "load_latest_checkpoint", "save_checkpoint", "NonFiniteLossError", "CHECKPOINT_PATTERN", "cut_metrics"]

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")


class NonFiniteLossError(Learn2DissError, RuntimeError):
    """Too many optimiser steps were skipped for NaN/inf losses or gradients."""


def lr_at(cfg: OptimizerConfig, step: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): constant, or linear warm-up then linear decay.

    ``warmup_linear``: ``initial_lr -> lr`` over ``warmup_steps`` steps, then ``lr -> final_lr`` at
    ``total_steps`` (paper §3.3: 1e-6 -> 1e-4 over 10 k steps, then down to 1e-6 at 100 k).
    """
    if cfg.schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.initial_lr + (cfg.lr - cfg.initial_lr) * step / cfg.warmup_steps
    decay = max(total_steps - cfg.warmup_steps, 1)
    return cfg.lr + (cfg.final_lr - cfg.lr) * min((step - cfg.warmup_steps) / decay, 1.0)


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
        model: the Learn2Diss model (checkpointed as ``model``).
        objective: module whose forward ``(batch, generator) -> dict`` DDP wraps.
        optimizers: name -> (optimizer, its config), stepped after the micro-batches.
        loss: ``(outputs, step) -> (total loss, {term: value})``; may update inner modules
            (q_phi) itself.
        steps, grad_accum: optimiser steps and micro-batches per step.
        extra_modules, extra_optimizers: also checkpointed (q_phi and its optimiser); the extra
            optimisers' LRs follow :func:`lr_at` too, but ``loss`` steps them.
    """

    name: str
    model: nn.Module
    objective: nn.Module
    optimizers: dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]]
    loss: Callable[[dict[str, Tensor], int], tuple[Tensor, dict[str, Tensor]]]
    steps: int
    grad_accum: int
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)
    extra_optimizers: dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]] = field(default_factory=dict)


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


def train(
    stage: TrainingStage,
    batches: Callable[[tuple[int, int]], Iterator[Batch]],
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
    ckpt_dir = work_dir / "checkpoints"
    start_step, position, nonfinite = 0, (0, 0), 0
    if ctx.is_main:
        remove_temporaries(ckpt_dir)  # left by a writer that was killed
    found = latest_checkpoint(ckpt_dir)
    if found is not None and not resume:
        raise FileExistsError(f"{found} exists: pass --resume to continue this run, or use another --out")
    if found is not None:
        found, state = load_latest_checkpoint(ckpt_dir, print if ctx.is_main else lambda _: None)
        if ctx.is_main:  # damaged newer files are kept aside, out of the way of pruning and later resumes
            newest_first = _checkpoints(ckpt_dir)
            for damaged in newest_first[: newest_first.index(found)]:
                damaged.rename(damaged.with_name(damaged.name + ".damaged"))
                print(f"[{stage.name}] {damaged} moved to {damaged.name}.damaged")
        if state.get("world_size") != ctx.world_size:
            raise ValueError(f"{found} was written by {state.get('world_size')} processes, this run has "
                             f"{ctx.world_size}: the data position would not match")
        stage.model.load_state_dict(state["model"])
        for name, module in stage.extra_modules.items():
            module.load_state_dict(state["modules"][name])
        for name, (opt, _) in {**stage.optimizers, **stage.extra_optimizers}.items():
            opt.load_state_dict(state["optimizers"][name])
        start_step, position, nonfinite = state["step"], tuple(state["position"]), state["nonfinite_steps"]
        if ctx.is_main:
            print(f"[{stage.name}] resuming from {found} (step {start_step})")

    objective = stage.objective
    if ctx.distributed:
        objective = nn.parallel.DistributedDataParallel(
            stage.objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=True,  # batches without two-segment utterances leave h unused
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=ctx.device.type == "cuda"
                              and train_cfg.precision == "bf16")
    if ctx.is_main:
        cut_metrics(work_dir / "metrics.jsonl", start_step)  # steps after the checkpoint are logged again
    logger = _Logger(work_dir, tensorboard_dir, ctx.is_main, start_step)
    all_optimizers = {**stage.optimizers, **stage.extra_optimizers}
    stream = batches(position)
    from tqdm import tqdm

    bar = tqdm(total=stage.steps, initial=start_step, desc=stage.name, unit="step", disable=not ctx.is_main,
               dynamic_ncols=True)
    last_path = found
    seconds, tic = 0.0, time.perf_counter()
    stage.objective.train()
    for step in range(start_step, stage.steps):
        lrs = {}
        for name, (opt, cfg) in all_optimizers.items():
            lrs[name] = lr_at(cfg, step, stage.steps)
            for group in opt.param_groups:
                group["lr"] = lrs[name]
        torch.manual_seed(seed_for(train_cfg.seed, step, ctx.rank))
        bad = torch.zeros((), dtype=torch.bool, device=ctx.device)
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
        norms = {name: _grad_norm(opt, cfg.clip_grad_norm) for name, (opt, cfg) in stage.optimizers.items()}
        for norm in norms.values():
            bad |= ~torch.isfinite(norm.to(ctx.device))
        bad = any_true(ctx, bad)  # the one host sync of the step
        if bad:
            nonfinite += 1
            if ctx.is_main:
                print(f"[{stage.name}] step {step + 1}: NaN/inf loss or gradient, step skipped "
                      f"({nonfinite} so far, limit {train_cfg.max_nonfinite_steps})")
            if nonfinite > train_cfg.max_nonfinite_steps:
                raise NonFiniteLossError(f"{stage.name}: {nonfinite} steps with NaN/inf losses "
                                         f"(train.max_nonfinite_steps = {train_cfg.max_nonfinite_steps})")
        else:
            for opt, _ in stage.optimizers.values():
                opt.step()
        for opt, _ in stage.optimizers.values():
            opt.zero_grad(set_to_none=True)
        logger.add({f"grad_norm/{k}": v for k, v in norms.items()})
        done = step + 1
        bar.update(1)
        if done % train_cfg.log_every == 0 or done == stage.steps:
            elapsed = time.perf_counter() - tic
            extra = {f"lr/{k}": v for k, v in lrs.items()}
            extra |= {"throughput/audio_seconds_per_second": seconds / max(elapsed, 1e-9),
                      "train/nonfinite_steps": float(nonfinite)}
            means = logger.write(done, extra)
            bar.set_postfix(loss=f"{means['loss/total']:.3f}", audio_s_per_s=f"{means['throughput/audio_seconds_per_second']:.0f}")
            seconds, tic = 0.0, time.perf_counter()
        if done % train_cfg.checkpoint_every == 0 or done == stage.steps:
            _check_replicas(ctx, [stage.model, *stage.extra_modules.values()], done)
            last_path = ckpt_dir / f"step_{done:07d}.pt"
            if ctx.is_main:
                save_checkpoint(last_path, {
                    "stage": stage.name,
                    "step": done,
                    "position": list(position),
                    "world_size": ctx.world_size,
                    "nonfinite_steps": nonfinite,
                    "model": stage.model.state_dict(),
                    "modules": {k: m.state_dict() for k, m in stage.extra_modules.items()},
                    "optimizers": {k: opt.state_dict() for k, (opt, _) in all_optimizers.items()},
                    **(checkpoint_extra or {}),
                })
                _prune(ckpt_dir, train_cfg.keep_checkpoints)
    bar.close()
    logger.close()
    if last_path is None:  # steps == 0
        last_path = ckpt_dir / "step_0000000.pt"
        if ctx.is_main:
            save_checkpoint(last_path, {"stage": stage.name, "step": 0, "position": [0, 0], "world_size": ctx.world_size,
                                        "nonfinite_steps": 0, "model": stage.model.state_dict(), "modules": {},
                                        "optimizers": {}, **(checkpoint_extra or {})})
    return last_path
