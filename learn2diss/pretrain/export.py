"""Export a pretraining run as a Learn2Diss checkpoint (config.yaml + model.safetensors) that the upstream loads.

Takes the joint stage's final checkpoint (or, with --step, an earlier one, or the latest one of an
unfinished run with --latest); q_phi and the optimiser states are left out.

Example::

    learn2diss export runs/l2d_w12 --out checkpoints/l2d_w12
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from learn2diss.errors import MissingInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --out folder of `learn2diss pretrain`")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="export joint/checkpoints/step_STEP.pt instead of the final one")
    which.add_argument("--latest", action="store_true", help="export the latest joint checkpoint, finished or not")


def find_checkpoint(run_dir: Path, step: int | None = None, latest: bool = False) -> tuple[Path, dict]:
    """The joint-stage checkpoint to export and its contents; errors name the file and say what is missing.

    Paths are resolved inside ``run_dir`` (any working directory, a moved or copied run). With ``latest``, a
    damaged newest checkpoint is skipped with a message and the newest complete one is used.
    """
    from learn2diss.io import read_json
    from learn2diss.pretrain.stages import stage_checkpoint
    from learn2diss.pretrain.trainer import (
        latest_checkpoint,
        load_checkpoint,
        load_latest_checkpoint,
    )

    ckpt_dir = run_dir / "joint" / "checkpoints"
    if step is not None:
        path = ckpt_dir / f"step_{step:07d}.pt"
        if not path.is_file():
            raise MissingInputError(f"{path} not found (kept: {sorted(p.name for p in ckpt_dir.glob('step_*.pt'))})")
        return path, load_checkpoint(path)
    done = run_dir / "joint" / "done.json"
    if done.is_file() and not latest:
        path = stage_checkpoint(run_dir, "joint", read_json(done))
        return path, load_checkpoint(path)
    found = latest_checkpoint(ckpt_dir)
    if found is None:
        raise MissingInputError(f"{run_dir}: no joint-stage checkpoint; run `learn2diss pretrain` first")
    if not latest:
        raise MissingInputError(f"{run_dir}: the joint stage has not finished (latest checkpoint {found.name}); "
                                "pass --latest to export it anyway")
    return load_latest_checkpoint(ckpt_dir, lambda message: print(message, file=sys.stderr))


def run(args: argparse.Namespace) -> int:
    from learn2diss.schema import from_dict
    from learn2diss.upstream.checkpoints import save_model
    from learn2diss.upstream.config import ModelConfig
    from learn2diss.upstream.model import Learn2Diss

    path, state = find_checkpoint(Path(args.run_dir), args.step, args.latest)
    model = Learn2Diss(from_dict(ModelConfig, state["model_config"], "model"))
    model.load_state_dict(state["model"])
    save_model(model, args.out, extra={"run": str(Path(args.run_dir).resolve()), "checkpoint": path.name,
                                       "step": int(state["step"])})
    print(f"{args.out}: Learn2Diss checkpoint from {path} (step {state['step']})")
    return 0
