"""Pretrain Learn2Diss: frame targets, SimCLR of h, utterance clusters, then joint training (paper §3.2-3.3).

Runs the stages in order (or the one named), skipping finished ones. An interrupted training
stage continues from its latest checkpoint with --resume. Several GPUs: launch with torchrun
(docs/pretraining.md "Scaling out"); a Slurm cluster: --launcher slurm (submitit).

Examples (on the files of `make demo`: a short demo parent from random weights; the same command with --resume
continues an interrupted run, and skips the stages that are done)::

    learn2diss pretrain --config demo_parent --random-parent --data runs/demo/manifest --out runs/parent \\
        --set joint.steps=20
    learn2diss pretrain --config demo_parent --random-parent --data runs/demo/manifest --out runs/parent \\
        --set joint.steps=20 --resume

The paper's recipe (not run: needs a WavLM base checkpoint, a LibriSpeech manifest and GPUs)::

    learn2diss pretrain --config l2d_w12 --parent WavLM-Base.pt --data manifests/ --out runs/l2d_w12
    torchrun --nproc_per_node=8 -m learn2diss.cli pretrain --config l2d_w12 \\
        --parent WavLM-Base.pt --data manifests/ --out runs/l2d_w12
    learn2diss pretrain --config l2d_w12 --parent WavLM-Base.pt --data manifests/ \\
        --out runs/l2d_w12 --launcher slurm --nodes 2 --gpus-per-node 8 --partition P --time 48:00:00
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

STAGE_CHOICES = ("all", "frame-targets", "utt-simclr", "utt-targets", "joint")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", nargs="?", default="all", choices=STAGE_CHOICES,
                        help="stage to run (default: all, in order)")
    parser.add_argument("--config", required=True, help="run config: a packaged name (l2d_w12, demo_l2d, ...) or a YAML path")
    parser.add_argument("--data", required=True, help="manifest TSV, or the folder written by `learn2diss data manifest`")
    parser.add_argument("--out", required=True, help="run folder (created; reused to resume)")
    parser.add_argument("--parent", help="HuBERT/WavLM base checkpoint (fairseq .pt or Hugging Face folder)")
    parser.add_argument("--random-parent", action="store_true",
                        help="start from a randomly initialised parent (tests and benchmarks only)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training stage")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set joint.steps=1000 (repeatable)")
    from learn2diss.launch import add_launcher_arguments

    add_launcher_arguments(parser, multi_node=True)


def run(args: argparse.Namespace) -> int:
    if args.launcher:  # the same stages as one submitit job (Slurm or local), requeued and resumed on preemption
        from learn2diss.launch import submit_pretrain

        return submit_pretrain(args, args.wait)
    from learn2diss.data.manifest import read_manifest
    from learn2diss.pretrain.config import load_config
    from learn2diss.pretrain.stages import STAGES, prepare_run, run_stage
    from learn2diss.runlock import hold
    from learn2diss.training.ddp import setup_distributed, teardown

    config = load_config(args.config, args.set)
    manifest = read_manifest(args.data)
    ctx = setup_distributed(args.device)
    try:  # rank 0 is the one writer of the run folder; a second `pretrain` on it is refused, naming this one
        with hold(args.out) if ctx.is_main else contextlib.nullcontext():
            run_dir = prepare_run(Path(args.out), config, manifest, ctx, Path(args.parent) if args.parent else None,
                                  args.random_parent, args.resume)
            for stage in STAGES if args.stage == "all" else (args.stage,):
                run_stage(run_dir, stage)
    finally:
        teardown(ctx)
    if ctx.is_main:
        print(f"done: {args.out}; export with `learn2diss export {args.out} --out CKPT_DIR`")
    return 0
