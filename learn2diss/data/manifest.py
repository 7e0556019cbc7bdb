"""Build a training manifest (path, samples, speaker) from a LibriSpeech-layout corpus.

Every file is decoded fully and validated with :func:`learn2diss.data.audio.read_audio`: unreadable,
empty, truncated (fewer samples than the header declares) or NaN/inf files are reported (in
``skipped.tsv`` beside the manifest, with the reason) and left out, with a count;
other sample rates and several channels are accepted (resampled to 16 kHz / averaged), and
``samples`` is the length at 16 kHz. ``--header-only`` trusts the file headers instead (fast, no
NaN check).

Example (on the files of `make demo`)::

    learn2diss data manifest --root runs/demo/corpus/LibriSpeech-style --subsets train,dev --out runs/manifest

LibriSpeech 960 h (not run: needs LibriSpeech)::

    learn2diss data manifest --root /data/LibriSpeech \\
        --subsets train-clean-100,train-clean-360,train-other-500 --out manifests/
"""

from __future__ import annotations

import argparse
import csv
import io
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.data.audio import AudioError, audio_info, read_audio
from learn2diss.errors import InputError, MissingInputError
from learn2diss.io import atomic_open, read_text
from learn2diss.upstream.config import SAMPLE_RATE

__all__ = ["Manifest", "scan_librispeech", "build_manifest", "write_manifest", "read_manifest", "resolve_manifest"]

DEFAULT_NAME = "train.tsv"
COLUMNS = ("path", "samples", "speaker")


@dataclass(frozen=True)
class Manifest:
    """Utterances in a fixed order: row i of every label file belongs to ``paths[i]``."""

    paths: list[str]
    samples: np.ndarray  # (N,) int64 length at 16 kHz
    speakers: list[str]
    source: str = ""  # the file it was read from

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """A short hash of the rows: label files record it so that a changed manifest is caught."""
        import hashlib

        digest = hashlib.sha256()
        for path, samples in zip(self.paths, self.samples.tolist(), strict=True):
            digest.update(f"{path}\t{samples}\n".encode())
        return digest.hexdigest()[:16]


def scan_librispeech(root: str | Path, subsets: Iterable[str]) -> list[tuple[Path, str]]:
    """``(audio path, speaker)`` for ``ROOT/SUBSET/SPEAKER/CHAPTER/*.flac`` (or ``*.wav``), sorted.

    Raises:
        FileNotFoundError: a subset folder is missing or holds no FLAC file (named in the message).
    """
    root = Path(root)
    found = []
    for subset in subsets:
        folder = root / subset
        if not folder.is_dir():
            raise MissingInputError(f"{folder}: subset folder not found (expected ROOT/SUBSET/SPEAKER/CHAPTER/*.flac)")
        files = sorted([*folder.glob("*/*/*.flac"), *folder.glob("*/*/*.wav")])
        if not files:
            raise MissingInputError(f"{folder}: no FLAC (or WAV) files in SPEAKER/CHAPTER/ sub-folders")
        found += [(f, f.parent.parent.name) for f in files]
    return found


def _check(args: tuple[str, bool]) -> tuple[int, str]:
    """(samples, "") for a good file, (0, reason) for a bad one."""
    path, header_only = args
    try:
        samples = audio_info(path)[0] if header_only else len(read_audio(path))
    except AudioError as err:
        return 0, str(err)
    return samples, ""


def build_manifest(
    files: list[tuple[Path, str]], header_only: bool = False, workers: int = 1, progress: bool = True
) -> tuple[Manifest, list[tuple[str, str]]]:
    """Validate ``files`` and return the manifest of the good ones and ``(path, reason)`` of the others."""
    from tqdm import tqdm

    jobs = [(str(path.resolve()), header_only) for path, _ in files]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_check, jobs, chunksize=64), total=len(jobs), disable=not progress,
                                desc="checking audio", unit="file"))
    else:
        results = [_check(job) for job in tqdm(jobs, disable=not progress, desc="checking audio", unit="file")]
    paths, samples, speakers, skipped = [], [], [], []
    for (path, _), (_, speaker), (n, reason) in zip(jobs, files, results, strict=True):
        if reason:
            skipped.append((path, reason))
        else:
            paths.append(path)
            samples.append(n)
            speakers.append(speaker)
    return Manifest(paths, np.asarray(samples, dtype=np.int64), speakers), skipped


def _atomic_write_rows(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    """Write a TSV with a ``path samples speaker`` header (atomically)."""
    rows = zip(manifest.paths, manifest.samples.tolist(), manifest.speakers, strict=True)
    _atomic_write_rows(Path(path), COLUMNS, rows)


def resolve_manifest(path: str | Path) -> Path:
    """``path`` itself, or ``path/train.tsv`` for a directory written by ``learn2diss data manifest``."""
    path = Path(path)
    return path / DEFAULT_NAME if path.is_dir() else path


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest TSV (or a directory holding ``train.tsv``); errors name the file and line."""
    path = resolve_manifest(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: manifest not found; make one with `learn2diss data manifest`")
    paths, samples, speakers = [], [], []
    reader = csv.reader(io.StringIO(read_text(path, "manifest"), newline=""), delimiter="\t")
    header = next(reader, None)
    if header is None or tuple(header) != COLUMNS:
        raise InputError(f"{path}: expected the header {list(COLUMNS)} (tab-separated), got {header!r}")
    for line, row in enumerate(reader, start=2):
        if len(row) != 3 or not row[1].isdigit():
            raise InputError(f"{path}:{line}: expected 'path<TAB>samples<TAB>speaker', got {row!r}")
        paths.append(row[0])
        samples.append(int(row[1]))
        speakers.append(row[2])
    if not paths:
        raise InputError(f"{path}: the manifest has no utterances")
    return Manifest(paths, np.asarray(samples, dtype=np.int64), speakers, str(path))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="corpus root in LibriSpeech layout (ROOT/SUBSET/SPEAKER/CHAPTER)")
    parser.add_argument("--subsets", required=True, help="comma-separated subset folders, e.g. train-clean-100")
    parser.add_argument("--out", required=True, help="output directory (train.tsv, skipped.tsv)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"manifest file name (default {DEFAULT_NAME})")
    parser.add_argument("--header-only", action="store_true",
                        help="take lengths from the file headers without decoding (fast; no NaN check)")
    from learn2diss.options import add_deprecated

    jobs = parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                               help="processes that read the audio (default: the cores, at most 8)")
    add_deprecated(parser, "--workers", jobs)


def run(args: argparse.Namespace) -> int:
    subsets = [s for s in args.subsets.split(",") if s]
    files = scan_librispeech(args.root, subsets)
    manifest, skipped = build_manifest(files, header_only=args.header_only, workers=args.jobs)
    out = Path(args.out)
    write_manifest(out / args.name, manifest)
    _atomic_write_rows(out / "skipped.tsv", ("path", "reason"), skipped)
    hours = manifest.samples.sum() / SAMPLE_RATE / 3600 if len(manifest) else 0.0
    print(f"{out / args.name}: {len(manifest)} utterances, {hours:.1f} h, "
          f"{len(set(manifest.speakers))} speakers; skipped {len(skipped)} bad files (see {out / 'skipped.tsv'})")
    for path, reason in skipped[:10]:
        print(f"  skipped {reason}" if reason.startswith(path) else f"  skipped {path}: {reason}")
    if not len(manifest):
        raise InputError(f"{args.root}: no usable audio in {', '.join(subsets)} (every file is in {out / 'skipped.tsv'})")
    return 0
