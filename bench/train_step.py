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

Each row runs eager (``train.compile: none``) and compiled (``--compile``, default ``default``: the parts the
objective names; the parents compile their whole forward). Steps alternate between all of them so that
machine noise hits each; random weights and random targets; bf16 autocast on CUDA (``train.precision``).
Prints a markdown table: the first step's time (with compilation), ms/step after the warm-up (median and
range), audio-seconds/s, the ratio to the conv-frozen parent's throughput in the same mode (goal on a GPU:
>= 0.8 for the joint step) and the step's peak memory above the resident weights (CUDA only).

``--end-to-end`` times instead what a user sees: ``learn2diss pretrain joint`` (in a process of its own, so compilation
counts) on a real data loader over a generated manifest (tones + noise, LibriSpeech layout), after the
preparation stages; its wall time and the logged audio-seconds/s of the steps after the first.

    python bench/train_step.py                                         # CPU, 2 x 2.5 s, L2D-W12 and L2D-H12
    python bench/train_step.py --configs tiny --batch 2 --seconds 2                # tiny shapes
    python bench/train_step.py --configs tiny --end-to-end --utterances 12 --utterance-seconds 3
    python bench/train_step.py --device cuda --batch 32 --seconds 12.5 --steps 10 --warmup 3
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from learn2diss.data.batching import Batch, frames_for_samples, sample_segments
from learn2diss.pretrain.config import Config, load_config
from learn2diss.pretrain.stages import joint_stage
from learn2diss.training.compile import COMPILE_MODES, compile_part
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
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.parent import build_parent


class ParentForward(nn.Module):
    """The parent with a CE head on every frame; ``freeze_conv``: its convolutional encoder runs without gradient."""

    def __init__(self, config: Config, freeze_conv: bool) -> None:
        super().__init__()
        self.parent = build_parent(config.model.parent)
        self.head = nn.Linear(config.model.parent.embed_dim, config.model.frame.num_targets)
        self.freeze_conv = freeze_conv
        if freeze_conv:
            self.parent.feature_extractor.requires_grad_(False)
        self.body = self._body

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor]:
        del generator
        return (self.body(batch.waveforms, batch.frame_targets),)

    def _body(self, waveforms: Tensor, frame_targets: Tensor) -> Tensor:
        if self.freeze_conv:
            with torch.no_grad():
                x, _ = self.parent.feature_extractor(waveforms, None)
            x = self.parent.encoder(x)
        else:
            x, _ = self.parent(waveforms)  # the final layer, all frames (equal lengths: no padding)
        logits = self.head(x)
        targets = frame_targets[:, : logits.shape[1]]
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


class ParentObjective(Objective):
    def loss(self, outputs: tuple[Tensor], step: int) -> StepLoss:
        return StepLoss(outputs[0], {"frame_ce": outputs[0]})

    def compile(self, mode: str) -> None:
        self.module.body = compile_part(self.module._body, mode)


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


def _stepper(stage: TrainingStage, config: Config, mode: str, ctx: DistributedContext,
             batch: Batch) -> Callable[[], None]:
    """One optimiser step of the training loop on ``batch`` (``train.compile: mode``), as many times as called."""
    trainer = Trainer(stage, dataclasses.replace(config.train, compile=mode), ctx)
    progress, logger = Progress(), MetricsLogger(None, None, False)
    stage.objective.module.train()
    stream = itertools.repeat(batch)

    def step() -> None:
        progress.step = 0  # the learning rates of step 0, every time
        trainer.step(stream, progress, logger)
        logger.sums.clear()

    return step


@dataclasses.dataclass
class Row:
    name: str
    mode: str
    first: float  # seconds of the first step (compilation included)
    times: list[float]
    peak: float | None


def _bench(name: str, args: argparse.Namespace, ctx: DistributedContext) -> list[Row]:
    config = load_config(name, args.set)
    config = dataclasses.replace(config, joint=dataclasses.replace(config.joint, grad_accum=1))
    device = ctx.device
    samples = int(args.seconds * SAMPLE_RATE)
    segment_frames = round(config.data.segment_seconds * SAMPLE_RATE / config.model.parent.stride)
    batch = _batch(config, args.batch, samples, segment_frames, device)
    kind = config.model.parent.kind
    rows, steps = [], []
    for mode in ["none", *args.compile]:
        torch.manual_seed(0)
        model = Learn2Diss(config.model).to(device)
        for row, stage in ((f"{kind} parent, all trainable", _parent_stage(config, False, device)),
                           (f"{kind} parent, conv frozen", _parent_stage(config, True, device)),
                           (f"L2D joint ({name})", joint_stage(model, config.joint, segment_frames))):
            rows.append(Row(row, mode, 0.0, [], None))
            steps.append(_stepper(stage, config, mode, ctx, batch))
    for row, fn in zip(rows, steps, strict=True):  # warm-up; the peak above what is resident (all weights)
        _sync(device)
        if device.type == "cuda":
            resident = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(max(args.warmup, 1)):
            start = time.perf_counter()
            fn()
            _sync(device)
            row.first = time.perf_counter() - start if i == 0 else row.first
        if device.type == "cuda":
            row.peak = (torch.cuda.max_memory_allocated(device) - resident) / 2**30
    for _ in range(args.steps):
        for row, fn in zip(rows, steps, strict=True):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            row.times.append(time.perf_counter() - start)
    return rows


def _write_corpus(root: Path, utterances: int, seconds: float) -> Path:
    """``utterances`` FLAC files (tones + noise, 3 pseudo-speakers) in the LibriSpeech layout; returns the manifest."""
    import soundfile as sf

    from learn2diss.data.manifest import build_manifest, scan_librispeech, write_manifest

    rng = np.random.default_rng(0)
    for u in range(utterances):
        speaker, f0 = [("100", 120.0), ("200", 210.0), ("300", 330.0)][u % 3]
        n = int(SAMPLE_RATE * seconds * rng.uniform(0.6, 1.0))
        t = np.arange(n) / SAMPLE_RATE
        wav = 0.2 * np.sin(2 * np.pi * f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)) * t) + 0.02 * rng.standard_normal(n)
        folder = root / "corpus" / "train" / speaker / "1"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{speaker}-1-{u:04d}.flac", wav.astype(np.float32), SAMPLE_RATE)
    manifest, _ = build_manifest(scan_librispeech(root / "corpus", ["train"]), progress=False)
    write_manifest(root / "manifests" / "train.tsv", manifest)
    return root / "manifests"


def end_to_end(args: argparse.Namespace, name: str) -> None:
    """``learn2diss pretrain joint`` eager and compiled, each run in its own process, alternating, on a generated
    manifest; the wall time counts start-up and compilation, audio-s/s is the median logged rate after step 1."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = _write_corpus(root, args.utterances, args.utterance_seconds)
        base = [sys.executable, "-m", "learn2diss.cli", "pretrain", "--config", name, "--data", str(data),
                "--device", args.device, "--random-parent"]
        overrides = [x for item in args.set for x in ("--set", item)]
        for stage in ("frame-targets", "utt-simclr", "utt-targets"):
            prepare = subprocess.run([*base, stage, "--out", str(root / "run"), *overrides], capture_output=True,
                                     text=True)
            if prepare.returncode:
                raise SystemExit(f"learn2diss pretrain {stage} failed:\n{prepare.stderr[-2000:]}")
        print(f"`learn2diss pretrain joint --config {name}` on {args.utterances} generated utterances of up to "
              f"{args.utterance_seconds} s, {args.joint_steps} steps, runs alternating:\n")
        print("| run | train.compile | wall s (process) | audio-s/s after step 1 |")
        print("|---:|---|---:|---:|")
        results: dict[str, list[tuple[float, float]]] = {}
        for repeat in range(args.repeats):
            for mode in ["none", *args.compile]:
                run = root / f"joint-{mode}-{repeat}"
                shutil.copytree(root / "run", run)
                start = time.perf_counter()
                result = subprocess.run([*base, "joint", "--out", str(run), *overrides, "--set", f"train.compile={mode}",
                                         "--set", f"joint.steps={args.joint_steps}", "--set", "train.log_every=1"],
                                        capture_output=True, text=True)
                wall = time.perf_counter() - start
                if result.returncode:
                    print(f"| {repeat + 1} | {mode} | failed: {result.stderr.strip().splitlines()[-1]} | |")
                    continue
                records = [json.loads(line) for line in (run / "joint" / "metrics.jsonl").read_text().splitlines()]
                rate = statistics.median(r["throughput/audio_seconds_per_second"] for r in records[1:])
                results.setdefault(mode, []).append((wall, rate))
                print(f"| {repeat + 1} | {mode} | {wall:.0f} | {rate:.1f} |", flush=True)
                shutil.rmtree(run)
        print("\n| train.compile | runs | wall s: median (min-max) | audio-s/s: median (min-max) |")
        print("|---|---:|---:|---:|")
        for mode, values in results.items():
            walls, rates = [w for w, _ in values], [r for _, r in values]
            print(f"| {mode} | {len(values)} | {statistics.median(walls):.0f} ({min(walls):.0f}-{max(walls):.0f}) | "
                  f"{statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--configs", default="l2d_w12,l2d_h12", help="comma list of run configs (names or paths)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--compile", default="default", help=f"comma list of compiled modes to run beside eager "
                        f"({', '.join(COMPILE_MODES[1:])}; none: eager only)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="time `learn2diss pretrain joint` on a generated manifest instead (first config)")
    parser.add_argument("--utterances", type=int, default=24, help="--end-to-end: generated utterances")
    parser.add_argument("--utterance-seconds", type=float, default=4.0, help="--end-to-end: longest utterance")
    parser.add_argument("--joint-steps", type=int, default=6, help="--end-to-end: joint steps")
    parser.add_argument("--repeats", type=int, default=1, help="--end-to-end: runs of each mode, alternating")
    args = parser.parse_args()
    args.compile = [m for m in args.compile.split(",") if m and m != "none"]
    if args.end_to_end:
        end_to_end(args, args.configs.split(",")[0])
        return
    ctx = DistributedContext(0, 0, 1, torch.device(args.device))
    device = ctx.device
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
          f"batch {args.batch} x {args.seconds} s, {args.steps} timed steps per row after {args.warmup}, "
          f"random weights\n")
    print("| step | train.compile | first step s | ms/step (median, min-max) | audio-s/s | / conv-frozen parent | "
          "step peak GiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    audio = args.batch * args.seconds
    for name in args.configs.split(","):
        try:
            rows = _bench(name, args, ctx)
        except torch.cuda.OutOfMemoryError as err:  # keep the other rows of a one-shot GPU run
            print(f"| {name} | | out of memory: {str(err).splitlines()[0]} | | | | |", flush=True)
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for row in sorted(rows, key=lambda r: (r.name, r.mode != "none")):
            baseline = next(r for r in rows if r.mode == row.mode and "conv frozen" in r.name)
            median = statistics.median(row.times)
            rate = audio / median
            print(f"| {row.name} | {row.mode} | {row.first:.1f} | {1000 * median:.0f} ({1000 * min(row.times):.0f}-"
                  f"{1000 * max(row.times):.0f}) | {rate:.{0 if rate >= 100 else 2}f} | "
                  f"{statistics.median(baseline.times) / median:.2f} | {'-' if row.peak is None else f'{row.peak:.1f}'} |",
                  flush=True)


if __name__ == "__main__":
    main()
