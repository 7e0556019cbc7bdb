"""Options and steps shared by the evaluation commands: which model, where results go, provenance."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from learn2diss.errors import InputError, UsageError

if TYPE_CHECKING:
    from learn2diss.upstream.model import Learn2Diss


def add_model_arguments(parser: argparse.ArgumentParser, features_default: str | None) -> None:
    """``--checkpoint`` (or ``--features-dir`` for precomputed features), naming and output options."""
    from learn2diss.options import add_checkpoint_argument, add_results_argument

    source = parser.add_mutually_exclusive_group(required=True)
    add_checkpoint_argument(source, "Learn2Diss checkpoint folder (config.yaml + model.safetensors)", old="--ckpt")
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
    add_results_argument(parser)
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
    model: Learn2Diss | None
    device: str

    @property
    def frame_shift(self) -> float:
        """Seconds per frame: the model's conv stride over the sample rate; 0.02 s for precomputed features."""
        from learn2diss.eval.features import FRAME_SHIFT_S, frame_shift

        return FRAME_SHIFT_S if self.model is None else frame_shift(self.model)

    def feature_dir(self, work_dir: Path, dataset: str, spec: str) -> Path:
        """The cache folder of one representation; its ``cache.json`` ties the files to the model's content."""
        return work_dir / "features" / self.name / dataset / spec.replace(":", "_")


def open_source(args: argparse.Namespace) -> ModelSource:
    """Load the checkpoint (if any) and work out the name, hash and config name for the result rows."""
    from learn2diss.eval.results import checkpoint_config, checkpoint_hash
    from learn2diss.options import input_folder, output_folder

    output_folder(args.results, "--results")
    output_folder(args.work_dir, "--work-dir")
    if args.checkpoint is None:
        input_folder(args.features_dir, "--features-dir")
        name = args.model_name or args.features_dir.name
        return ModelSource(name, "", "", args.config_name or "", None, "cpu")
    import torch

    from learn2diss.schema import check_device
    from learn2diss.upstream.checkpoints import load_model

    model = load_model(input_folder(args.checkpoint, "--checkpoint"))
    config = checkpoint_config(args.checkpoint) if args.config_name is None else args.config_name
    device = check_device(args.device) or ("cuda" if torch.cuda.is_available() else "cpu")
    return ModelSource(args.model_name or args.checkpoint.name, str(args.checkpoint), checkpoint_hash(args.checkpoint),
                       config, model, device)


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """Audio, frame-level phone alignments and speaker labels of an evaluation set."""
    parser.add_argument("--audio", type=Path, help="folder with the utterances (.flac/.wav, searched recursively)")
    parser.add_argument("--alignments", type=Path, required=True,
                        help="phone alignments: 'utt start end phone' segments (demo corpus alignments/<split>.tsv, "
                             "MFA-derived TSV) or 'utt p1 p1 p2 ...' per-frame labels (give --label-rate)")
    parser.add_argument("--alignment-format", choices=("auto", "segments", "frames"), default="auto")
    parser.add_argument("--label-rate", type=float, default=None, help="labels per second of a per-frame file")
    parser.add_argument("--speakers", type=Path, default=None,
                        help="utterance -> speaker map: 'utt speaker' lines or a TSV with utt_id and speaker columns "
                             "(demo corpus splits/<split>.tsv); default: LibriSpeech ids, speaker = text before '-'")
    parser.add_argument("--dataset", help="dataset name in the results (default: the alignment file's name)")
    parser.add_argument("--max-utterances", type=int, default=None, help="evaluate only the first N utterances")


def read_speakers(path: Path | None, utterances: list[str]) -> dict[str, str]:
    """Speaker of each utterance from a map file, or from LibriSpeech-style ids (``spk-chapter-n``)."""
    if path is None:
        return {u: u.split("-")[0] for u in utterances}
    from learn2diss.io import read_text

    lines = [line.split("\t") if "\t" in line else line.split() for line in read_text(path, "speaker map").splitlines()
             if line]
    if lines and "utt_id" in lines[0] and "speaker" in lines[0]:
        utt_col, spk_col = lines[0].index("utt_id"), lines[0].index("speaker")
        mapping = {parts[utt_col]: parts[spk_col] for parts in lines[1:]}
    else:
        mapping = {parts[0]: parts[1] for parts in lines if len(parts) >= 2}
    missing = [u for u in utterances if u not in mapping]
    if missing:
        raise InputError(f"{path}: no speaker for {len(missing)} utterance(s), e.g. {', '.join(missing[:3])}")
    return {u: mapping[u] for u in utterances}


def prepare_features(source: ModelSource, args: argparse.Namespace, dataset: str, utterances: list[str],
                     specs: list) -> dict[str, Path]:
    """Folders holding ``<utt>.npy`` for each spec: extracted from the checkpoint (cached), or --features-dir."""
    from learn2diss.eval.features import extract_features, find_audio

    if source.model is None:
        return {str(spec): args.features_dir for spec in specs}
    if args.audio is None:
        raise UsageError("--checkpoint needs --audio DIR with the utterances to extract")
    folders = {str(spec): source.feature_dir(args.work_dir, dataset, str(spec)) for spec in specs}
    extract_features(source.model, find_audio(args.audio, utterances), specs, folders, device=source.device)
    return folders
