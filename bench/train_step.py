"""One joint training step of L2D-W12 / L2D-H12 against a fwd + bwd step of the parent alone, in one run.

The joint step is the real one (``JointObjective`` + ``joint_loss``: masked g with CE + pseudo-con,
h on two 1-s views with InfoNCE + CE, q_phi's inner NLL steps, the CLUB term, backward, gradient
clipping and the Adam steps of g and h). The parent baselines run torchaudio's HuBERT/WavLM base
on the same batch with a K = 2048 CE head on every frame, backward and Adam: once fully
trainable, once with its convolutional encoder frozen (the same frozen part as L2D-x12, N = 0).
Steps alternate between the variants so that machine noise hits all of them; random weights and
random targets. bf16 autocast on CUDA. Prints a markdown table with audio-seconds/s, the step's
peak memory above the resident weights (optimiser state, gradients, activations) and the ratio of
throughputs, joint / baseline (goal on a GPU: >= 0.8 against the frozen-conv parent).

    python bench/train_step.py                                          # CPU, 2 x 2.5 s
    python bench/train_step.py --device cuda --batch 32 --seconds 12.5 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchaudio

from learn2diss.data.batching import Batch, sample_segments
from learn2diss.pretrain.club import GaussianCLUBNetwork
from learn2diss.pretrain.config import load_config
from learn2diss.pretrain.objectives import JointObjective, joint_loss
from learn2diss.pretrain.trainer import make_adam
from learn2diss.upstream.model import Learn2Diss, build_parent


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batch(model: Learn2Diss, batch: int, samples: int, segment_frames: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(batch, samples, generator=g)
    lengths = torch.full((batch,), samples, dtype=torch.long)
    with torch.no_grad():
        frames = model.extract(wav[:1, :samples], lengths[:1]).x.shape[1]
    starts, valid = sample_segments(np.full(batch, frames), segment_frames, np.random.default_rng(0))
    cfg = model.config
    return Batch(wav, lengths, torch.randint(0, cfg.frame.num_targets, (batch, frames), generator=g),
                 torch.randint(0, cfg.utterance.num_targets, (batch,), generator=g), torch.from_numpy(starts),
                 torch.from_numpy(valid), torch.arange(batch), 0, 0).to(device)


def _joint_step_fn(name: str, batch: Batch, device: torch.device, autocast: torch.autocast):
    config = load_config(f"l2d_{name}")
    joint = config.joint
    model = Learn2Diss(config.model).to(device).train()
    segment_frames = round(config.data.segment_seconds * 16000 / config.model.parent.stride)
    q = GaussianCLUBNetwork(config.model.utterance.embed_dim, config.model.parent.embed_dim, joint.club.hidden_dim,
                            joint.club.logvar_activation).to(device)
    loss_fn = joint_loss(joint, q, q, make_adam(list(q.parameters()), joint.club.optimizer))
    objective = JointObjective(model, joint, segment_frames)
    optimizers = [(make_adam(model.frame_parameters(), joint.frame_optimizer), joint.frame_optimizer),
                  (make_adam(model.utterance_parameters(), joint.utterance_optimizer), joint.utterance_optimizer)]
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with autocast:
            out = objective(batch, generator)
        total, _ = loss_fn(out, 0)
        total.backward()
        for opt, cfg in optimizers:
            params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def _parent_step_fn(config, wav: torch.Tensor, device: torch.device, autocast: torch.autocast, freeze_conv: bool):
    parent = build_parent(config.model.parent).to(device).train()
    head = torch.nn.Linear(config.model.parent.embed_dim, config.model.frame.num_targets).to(device)
    if freeze_conv:
        parent.feature_extractor.requires_grad_(False)
    params = [p for p in [*parent.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-5)
    frames = None

    def step() -> None:
        nonlocal frames
        with autocast:
            if freeze_conv:
                with torch.no_grad():
                    x, _ = parent.feature_extractor(wav, None)
                x = parent.encoder(x)
            else:
                x, _ = parent(wav)  # the final layer, all frames (equal lengths: no padding)
            logits = head(x)
        if frames is None:
            frames = torch.randint(0, logits.shape[-1], logits.shape[:2], device=device)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), frames.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--models", default="w12,h12", help="comma list of w12, h12, w6, h6")
    args = parser.parse_args()
    device = torch.device(args.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    samples = int(args.seconds * 16000)
    audio = args.batch * args.seconds
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
          f"batch {args.batch} x {args.seconds} s, {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, "
          f"random weights\n")
    print("| step | ms/step (mean ± std) | audio-s/s | step peak GiB | joint / this |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        try:
            _bench_model(name, args, device, autocast, samples, audio)
        except torch.cuda.OutOfMemoryError as err:  # keep the other rows of a one-shot GPU run
            print(f"| L2D-{name.upper()} | out of memory: {str(err).splitlines()[0]} | | | |", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _bench_model(name: str, args: argparse.Namespace, device: torch.device, autocast: torch.autocast, samples: int,
                 audio: float) -> None:
    config = load_config(f"l2d_{name}")
    probe = Learn2Diss(config.model)
    segment_frames = round(config.data.segment_seconds * 16000 / config.model.parent.stride)
    batch = _batch(probe, args.batch, samples, segment_frames, device)
    del probe
    kind = config.model.parent.kind
    fns = {f"L2D-{name.upper()} joint": _joint_step_fn(name, batch, device, autocast),
           f"{kind} base, conv frozen": _parent_step_fn(config, batch.waveforms, device, autocast, True),
           f"{kind} base, all trainable": _parent_step_fn(config, batch.waveforms, device, autocast, False)}
    peaks: dict[str, float] = {}
    for key, fn in fns.items():  # peak above what is resident before the step (all models' weights)
        _sync(device)
        if device.type == "cuda":
            resident = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            fn()
        _sync(device)
        if device.type == "cuda":
            peaks[key] = (torch.cuda.max_memory_allocated(device) - resident) / 2**30
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.steps):
        for key, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    joint_key = next(iter(fns))
    joint_mean = statistics.mean(times[joint_key])
    for key, values in times.items():
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        peak = f"{peaks[key]:.1f}" if key in peaks else "-"
        ratio = mean / joint_mean  # = (joint audio-s/s) / (this audio-s/s)
        rate = audio / mean
        print(f"| {key} | {1000 * mean:.0f} ± {1000 * std:.0f} | {rate:.{0 if rate >= 100 else 2}f} | {peak} | "
              f"{ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
