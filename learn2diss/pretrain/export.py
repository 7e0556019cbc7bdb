"""Export a pretraining run as a Learn2Diss checkpoint, or its frame encoder as a plain HuBERT/WavLM/wav2vec 2.0/data2vec one.

Takes the joint stage's final checkpoint (or, with --step, an earlier one, or the latest one of an
unfinished run with --latest; or one of our checkpoint folders); q_phi and the optimiser states are left
out. --format ours (the default): config.yaml + model.safetensors, the whole model, what learn2diss and
its s3prl entries load. --format huggingface: the frame path (f then g) as a HubertModel / WavLMModel /
Wav2Vec2Model / Data2VecAudioModel folder (config.json, model.safetensors, preprocessor_config.json) with a
model card (README.md) generated from the run; --format fairseq: model.pt in the parent's original layout
(what s3prl's hubert_local / wavlm_local / wav2vec2_local / data2vec_local read) with the same card.
Whatever the format, a model with a NaN or infinite weight is refused, naming the tensors
(--allow-nonfinite exports it anyway, for debugging), and --out is held by one export at a time.

Examples (on the files of `make demo`: the pretraining run of its first MI model)::

    learn2diss export runs/demo/runs/lambda-default-seed0 --out runs/checkpoints/l2d
    learn2diss export runs/demo/runs/lambda-default-seed0 --format huggingface --out runs/hf/l2d --results results \
        --license mit
    learn2diss export runs/demo/runs/lambda-default-seed0 --format fairseq --out runs/fairseq/l2d --license mit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from learn2diss.errors import InputError, MissingInputError, UsageError

if TYPE_CHECKING:
    from learn2diss.upstream.model import Learn2Diss

FORMATS = ("ours", "huggingface", "fairseq")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the --out folder of `learn2diss pretrain`, or one of our checkpoint folders")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--format", choices=FORMATS, default="ours",
                        help="ours (default): the whole model for learn2diss; huggingface / fairseq: the frame "
                             "encoder as a plain parent checkpoint with a model card")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="export joint/checkpoints/step_STEP.pt instead of the final one")
    which.add_argument("--latest", action="store_true", help="export the latest joint checkpoint, finished or not")
    card = parser.add_argument_group("model card (--format huggingface / fairseq)")
    card.add_argument("--results", type=Path, action="append", default=None, metavar="DIR",
                      help="results folder searched (recursively) for rows of these weights, repeatable "
                           "(default: results/ when it exists)")
    card.add_argument("--license", help="licence of the exported weights (default: the parent's, where it is known)")
    card.add_argument("--name", help="model name in the card (default: the --out folder's name)")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="export even if some weights are NaN/inf (refused by default, naming the tensors)")


def nonfinite_tensors(state: dict) -> list[str]:
    """``name (count of numel)`` of every floating-point tensor of ``state`` holding a NaN or an infinity."""
    import torch

    found = []
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                found.append(f"{name} ({bad} of {tensor.numel()})")
    return found


def check_finite(state: dict, where: str, allow: bool = False) -> None:
    """Refuse to export the weights ``state`` read from ``where`` when any is NaN/inf (``allow``: warn only)."""
    bad = nonfinite_tensors(state)
    if bad and allow:
        print(f"warning: exporting {len(bad)} tensors with NaN/inf values (--allow-nonfinite)", file=sys.stderr)
    elif bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(f"{where}: {len(bad)} of {len(state)} tensors hold NaN/inf values: {shown}; not exported "
                         "(export an earlier --step, or pass --allow-nonfinite to export it anyway)")


def find_checkpoint(run_dir: Path, step: int | None = None, latest: bool = False) -> tuple[Path, dict]:
    """The joint-stage checkpoint to export and its contents; errors name the file and say what is missing.

    Paths are resolved inside ``run_dir`` (any working directory, a moved or copied run). With ``latest``, a
    damaged newest checkpoint is skipped with a message and the newest complete one is used.
    """
    from learn2diss.io import read_json
    from learn2diss.pretrain.stages import stage_checkpoint
    from learn2diss.training.checkpoint import (
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
    loaded = load_latest_checkpoint(ckpt_dir, lambda message: print(message, file=sys.stderr))
    if loaded is None:
        raise MissingInputError(f"{ckpt_dir}: no joint-stage checkpoint loads")
    return loaded


def load_source(source: Path, step: int | None, latest: bool) -> tuple[Learn2Diss, Path | None, str, int | None]:
    """(model, its pretraining run or None, where it was read, step) of a run folder or one of our checkpoints."""
    from learn2diss.schema import from_dict
    from learn2diss.upstream.checkpoints import CONFIG_FILE, WEIGHTS_FILE, load_model
    from learn2diss.upstream.config import ModelConfig
    from learn2diss.upstream.model import Learn2Diss

    if (source / WEIGHTS_FILE).is_file():  # one of our checkpoints, e.g. an earlier `learn2diss export`
        if step is not None or latest:
            raise UsageError(f"{source} is a checkpoint folder: --step and --latest choose among a run's checkpoints")
        from learn2diss.io import read_yaml, regular_file

        for name in (CONFIG_FILE, WEIGHTS_FILE):  # what is exported is the folder's own files, never a link's target
            regular_file(source / name, "checkpoint file")
        extra = (read_yaml(source / CONFIG_FILE, "checkpoint config") or {}).get("extra") or {}
        run = Path(extra["run"]) if extra.get("run") and Path(extra["run"]).is_dir() else None
        return load_model(source), run, str(source), extra.get("step")
    path, state = find_checkpoint(source, step, latest)
    model = Learn2Diss(from_dict(ModelConfig, state["model_config"], "model"))
    model.load_state_dict(state["model"])
    return model, source.resolve(), str(path), int(state["step"])


def run(args: argparse.Namespace) -> int:
    from learn2diss.runlock import hold

    with hold(args.out):  # one writer of --out: a second export to it is refused, naming this one
        return _export(args)


def _export(args: argparse.Namespace) -> int:
    from learn2diss.upstream.checkpoints import export_frame_path, save_model

    model, run_dir, where, step = load_source(Path(args.run_dir), args.step, args.latest)
    check_finite(model.state_dict(), where, args.allow_nonfinite)  # before any format is written
    if args.format == "ours":
        save_model(model, args.out, extra={"run": str(run_dir or where), "checkpoint": Path(where).name,
                                           "step": step})
        print(f"{args.out}: Learn2Diss checkpoint from {where} (step {step})")
        return 0
    from learn2diss.eval.results import state_hash
    from learn2diss.pretrain.model_card import model_card

    results = args.results if args.results is not None else [p for p in (Path("results"),) if p.is_dir()]
    missing = [str(r) for r in results if not r.is_dir()]
    if missing:
        raise MissingInputError(f"--results: no such folder: {', '.join(missing)}")
    out = Path(args.out)
    card = model_card(model.eval(), args.format, args.name or out.name, state_hash(model.state_dict()), run_dir, step,
                      results, args.license)
    export_frame_path(model, out, args.format, files={"README.md": card})
    what = "a Hugging Face model folder" if args.format == "huggingface" else "model.pt in the fairseq layout"
    print(f"{out}: the frame encoder of {where} (step {step}) as {what}, with README.md")
    return 0
