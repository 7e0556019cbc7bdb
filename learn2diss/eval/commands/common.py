"""Options and steps shared by the evaluation commands: which model, where results go, provenance."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser, features_default: str | None) -> None:
    """``--ckpt`` (or ``--features-dir`` for precomputed features), naming and output options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=Path, help="Learn2Diss checkpoint folder (config.yaml + model.safetensors)")
    source.add_argument("--features-dir", type=Path,
                        help="precomputed features instead of a checkpoint: <utt_id>.npy files, (frames, dim) at 50 Hz")
    if features_default is not None:
        parser.add_argument("--features", default=features_default,
                            help=f"representation to evaluate (default {features_default}): frame:last, frame:N, "
                                 "frame:mean, utt:N, utt:embedding")
    parser.add_argument("--model-name", help="name in the results and tables (default: the checkpoint folder name); "
                                             "use the paper's name (L2D-H12, HuBERT ...) to compare with its row")
    parser.add_argument("--variant", default="", help="ablation variant for Tables 5/6 (no-mi, final-layers)")
    parser.add_argument("--config-name", default=None,
                        help="config name for the provenance line (default: read from the checkpoint)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default results/)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/eval"),
                        help="where extracted features are cached (default runs/eval)")
    parser.add_argument("--device", default=None, help="torch device for extraction (default: cuda if available)")


@dataclass(frozen=True)
class ModelSource:
    """The model (or precomputed features) an evaluation reads, with its provenance."""

    name: str
    checkpoint: str
    checkpoint_hash: str
    config: str
    model: object | None
    device: str

    def feature_dir(self, work_dir: Path, dataset: str, spec: str) -> Path:
        return work_dir / "features" / self.name / dataset / spec.replace(":", "_")


def open_source(args: argparse.Namespace) -> ModelSource:
    """Load the checkpoint (if any) and work out the name, hash and config name for the result rows."""
    from learn2diss.eval.results import checkpoint_hash

    if args.ckpt is None:
        name = args.model_name or args.features_dir.name
        return ModelSource(name, "", "", args.config_name or "", None, "cpu")
    import torch
    import yaml

    from learn2diss.upstream.checkpoints import load_model

    model = load_model(args.ckpt)
    config = args.config_name
    if config is None:
        meta = yaml.safe_load((args.ckpt / "config.yaml").read_text()) or {}
        extra = meta.get("extra") or {}
        config = str(extra.get("config") or extra.get("config_name") or "")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return ModelSource(args.model_name or args.ckpt.name, str(args.ckpt), checkpoint_hash(args.ckpt), config, model,
                       device)
