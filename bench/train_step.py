"""The training step users run, timed: the L2D joint step against the parent's fwd + bwd step, in one run.

Every row is one optimiser step of the training loop (``learn2diss.training.loop.Trainer.step``, the code
``learn2diss pretrain`` runs), on the same batch:

* **parent, all trainable**: the parent (torchaudio's HuBERT/WavLM) with a K-target CE head on every frame,
  backward and Adam: the objective of a parent's own pretraining, without masking;
* **parent, conv frozen**: the same with its convolutional encoder frozen: the same frozen part as L2D-x12
  (N = 0), the fair baseline;
* **L2D joint**: the joint stage as ``learn2diss pretrain joint`` builds it (``joint_stage``): masked g
  with CE + pseudo-con, h on two 1-s views with InfoNCE + CE, q_phi's inner NLL steps, the CLUB term, the
  Adam steps of g and h.

Steps alternate between the rows so that machine noise hits all of them; random weights and random
targets; bf16 autocast on CUDA (``train.precision``). Prints a markdown table: ms/step (median and
spread), audio-seconds/s, the ratio to the conv-frozen parent's throughput (goal on a GPU: >= 0.8 for
the joint step) and the step's peak memory above the resident weights (CUDA only).

    python bench/train_step.py                                         # CPU, 2 x 2.5 s, L2D-W12 and L2D-H12
    python bench/train_step.py --configs tiny --batch 2 --seconds 2    # tiny shapes
    python bench/train_step.py --device cuda --batch 32 --seconds 12.5 --steps 10 --warmup 3
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from learn2diss.data.batching import Batch, frames_for_samples, sample_segments
from learn2diss.pretrain.config import Config, load_config
from learn2diss.pretrain.stages import joint_stage
from learn2diss.training.ddp import DistributedContext
from learn2diss.training.loop import (
    Objective,
    Progress,
    StepLoss,
    Trainer,
    TrainingStage,
    make_adam,
)
from learn2diss.training.metrics import MetricsLogger
from learn2diss.upstream.config import SAMPLE_RATE
from learn2diss.upstream.model import Learn2Diss, build_parent


class ParentForward(nn.Module):
    """The parent with a CE head on every frame; ``freeze_conv``: its convolutional encoder runs without gradient."""

    def __init__(self, config: Config, freeze_conv: bool) -> None:
        super().__init__()
        self.parent = build_parent(config.model.parent)
        self.head = nn.Linear(config.model.parent.embed_dim, config.model.frame.num_targets)
        self.freeze_conv = freeze_conv
        if freeze_conv:
            self.parent.feature_extractor.requires_grad_(False)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor]:
        del generator
        if self.freeze_conv:
            with torch.no_grad():
                x, _ = self.parent.feature_extractor(batch.waveforms, None)
            x = self.parent.encoder(x)
        else:
            x, _ = self.parent(batch.waveforms)  # the final layer, all frames (equal lengths: no padding)
        logits = self.head(x)
        targets = batch.frame_targets[:, : logits.shape[1]]
        return (nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten()),)


class ParentObjective(Objective):
    def loss(self, outputs: tuple[Tensor], step: int) -> StepLoss:
        return StepLoss(outputs[0], {"frame_ce": outputs[0]})


def _parent_stage(config: Config, freeze_conv: bool, device: torch.device) -> TrainingStage:
    forward = ParentForward(config, freeze_conv).to(device)
    opt_cfg = config.joint.frame_optimizer
    params = [p for p in forward.parameters() if p.requires_grad]
    return TrainingStage("parent", forward, ParentObjective(forward), {"parent": (make_adam(params, opt_cfg), opt_cfg)},
                         steps=1, grad_accum=1)


def _batch(config: Config, batch: int, samples: int, segment_frames: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    frames = frames_for_samples(samples, config.model.parent.conv_layers)
    starts, valid = sample_segments(np.full(batch, frames), segment_frames, np.random.default_rng(0))
    return Batch(torch.randn(batch, samples, generator=g), torch.full((batch,), samples, dtype=torch.long),
                 torch.randint(0, config.model.frame.num_targets, (batch, frames), generator=g),
                 torch.randint(0, config.model.utterance.num_targets, (batch,), generator=g),
                 torch.from_numpy(starts), torch.from_numpy(valid), torch.arange(batch), 0, 0).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _stepper(stage: TrainingStage, config: Config, ctx: DistributedContext, batch: Batch) -> Callable[[], None]:
    """One optimiser step of the training loop on ``batch``, as many times as called."""
    trainer = Trainer(stage, config.train, ctx)
    progress, logger = Progress(), MetricsLogger(None, None, False)
    stage.objective.module.train()
    stream = itertools.repeat(batch)

    def step() -> None:
        progress.step = 0  # the learning rates of step 0, every time
        trainer.step(stream, progress, logger)
        logger.sums.clear()

    return step


def _bench(name: str, args: argparse.Namespace, ctx: DistributedContext) -> list[tuple[str, list[float], float | None]]:
    config = load_config(name, args.set)
    config = dataclasses.replace(config, joint=dataclasses.replace(config.joint, grad_accum=1))
    device = ctx.device
    samples = int(args.seconds * SAMPLE_RATE)
    segment_frames = round(config.data.segment_seconds * SAMPLE_RATE / config.model.parent.stride)
    batch = _batch(config, args.batch, samples, segment_frames, device)
    torch.manual_seed(0)
    model = Learn2Diss(config.model).to(device)
    kind = config.model.parent.kind
    steps = {f"{kind} parent, all trainable": _stepper(_parent_stage(config, False, device), config, ctx, batch),
             f"{kind} parent, conv frozen": _stepper(_parent_stage(config, True, device), config, ctx, batch),
             f"L2D joint ({name})": _stepper(joint_stage(model, config.joint, segment_frames), config, ctx, batch)}
    peaks: dict[str, float | None] = {}
    for key, fn in steps.items():  # warm-up; the peak above what is resident before the step (all weights)
        _sync(device)
        if device.type == "cuda":
            resident = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            fn()
        _sync(device)
        peaks[key] = (torch.cuda.max_memory_allocated(device) - resident) / 2**30 if device.type == "cuda" else None
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.steps):
        for key, fn in steps.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    return [(key, times[key], peaks[key]) for key in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--configs", default="l2d_w12,l2d_h12", help="comma list of run configs (names or paths)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    ctx = DistributedContext(0, 0, 1, torch.device(args.device))
    device = ctx.device
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
          f"batch {args.batch} x {args.seconds} s, {args.steps} timed steps per row after {args.warmup}, "
          f"random weights\n")
    print("| step | ms/step (median, min-max) | audio-s/s | / conv-frozen parent | step peak GiB |")
    print("|---|---:|---:|---:|---:|")
    audio = args.batch * args.seconds
    for name in args.configs.split(","):
        try:
            rows = _bench(name, args, ctx)
        except torch.cuda.OutOfMemoryError as err:  # keep the other rows of a one-shot GPU run
            print(f"| {name} | out of memory: {str(err).splitlines()[0]} | | | |", flush=True)
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        baseline = statistics.median(rows[1][1])
        for key, values, peak in rows:
            median = statistics.median(values)
            rate = audio / median
            print(f"| {key} | {1000 * median:.0f} ({1000 * min(values):.0f}-{1000 * max(values):.0f}) | "
                  f"{rate:.{0 if rate >= 100 else 2}f} | {baseline / median:.2f} | "
                  f"{'-' if peak is None else f'{peak:.1f}'} |", flush=True)


if __name__ == "__main__":
    main()
