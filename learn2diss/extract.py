"""Dump a checkpoint's features of your audio: one .npy per audio file, per representation.

Runs the model on each file of --audio (a folder, searched recursively for .flac/.wav, or a list file with one
audio path per line) and writes OUT/<spec>/<file name>.npy for each --features spec (frame:last -> frame_last/):
(frames, dim) float32 at the model's frame rate, (dim,) for utt:embedding, and (layers + 1, frames, dim) for
frame:all, every hidden state of the frame path as s3prl numbers them (0 = input of layer 1). The folders are
feature caches (OUT/<spec>/cache.json): an interrupted run resumes, a rerun skips files whose audio content is
unchanged, wherever it lies now, and a feature folder holds the same files the evaluations read with
--features-dir. File names must be unique across the folder (they name the outputs).

Examples::

    learn2diss extract --checkpoint runs/demo/checkpoints/lambda-default-seed0 \\
        --audio runs/demo/corpus/LibriSpeech-style/test --features frame:last utt:embedding --out runs/features
    learn2diss extract --checkpoint runs/demo/checkpoints/demo-parent --audio runs/demo/corpus/LibriSpeech-style/dev \\
        --features frame:all --out runs/features-parent
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from learn2diss.errors import InputError, MissingInputError
from learn2diss.options import add_checkpoint_argument, input_folder, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_argument(parser, "Learn2Diss checkpoint folder (config.yaml + model.safetensors)", required=True)
    parser.add_argument("--audio", type=Path, required=True, metavar="DIR|LIST",
                        help="folder of .flac/.wav files (searched recursively), or a text file with one audio path "
                             "per line (relative paths are relative to the file's folder)")
    parser.add_argument("--features", nargs="+", default=["frame:last"], metavar="SPEC",
                        help="representations: frame:all, frame:last, frame:N, frame:mean, utt:N, utt:embedding "
                             "(default frame:last)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder: OUT/<spec>/<name>.npy")
    parser.add_argument("--device", help="torch device (default: cuda when available)")


def read_audio_list(path: Path) -> dict[str, Path]:
    """``{file name without extension: path}`` of the files listed in ``path`` (first column; ``#`` comments)."""
    from learn2diss.io import read_text

    found: dict[str, Path] = {}
    for line_no, line in enumerate(read_text(path, "audio list").splitlines(), start=1):
        fields = line.split("\t")[0].split()
        if not fields or fields[0].startswith("#") or (line_no == 1 and fields[0] == "path"):
            continue  # blank, a comment, or a manifest's header
        audio = Path(fields[0]) if Path(fields[0]).is_absolute() else path.parent / fields[0]
        if not audio.is_file():
            raise MissingInputError(f"{path}:{line_no}: audio file not found: {audio}")
        _add_unique(found, audio)
    if not found:
        raise InputError(f"{path}: lists no audio file")
    return found


def _add_unique(found: dict[str, Path], audio: Path) -> None:
    if audio.stem in found and found[audio.stem] != audio:
        raise InputError(f"two audio files named {audio.stem}: {found[audio.stem]} and {audio} (the name is the "
                         "output file's name)")
    found[audio.stem] = audio


def find_inputs(audio: Path) -> dict[str, Path]:
    """The audio files of ``--audio``: a folder (recursively) or a list file; names must be unique."""
    from learn2diss.eval.features import AUDIO_EXTENSIONS

    if audio.is_file():
        return read_audio_list(audio)
    found: dict[str, Path] = {}
    for path in sorted(p for ext in AUDIO_EXTENSIONS for p in input_folder(audio, "--audio").rglob(f"*{ext}")):
        _add_unique(found, path)
    if not found:
        raise MissingInputError(f"--audio {audio}: no {'/'.join(AUDIO_EXTENSIONS)} files in it")
    return found


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from learn2diss.eval.features import FeatureSpec, extract_features
    from learn2diss.upstream.checkpoints import load_model

    specs = list(dict.fromkeys(FeatureSpec.parse(text, stacked=True) for text in args.features))
    audio = find_inputs(args.audio)
    out = output_folder(args.out, "--out")
    model = load_model(input_folder(args.checkpoint, "--checkpoint"))
    folders = {str(spec): out / str(spec).replace(":", "_") for spec in specs}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    extract_features(model, audio, specs, folders, device=device)
    print(f"{len(audio)} files x {len(specs)} representation(s) in {time.perf_counter() - start:.0f} s: "
          + ", ".join(str(folder) for folder in folders.values()), file=sys.stderr)
    return 0
