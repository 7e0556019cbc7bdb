"""Floors to beat on the demo corpus: MFCC speaker ID and frame-level linear phone classification.

Optionally builds the corpus first (``--build``, timed, with ``--jobs`` processes), then prints a
Markdown table with its size and two baselines, both with the project's linear probe
(:func:`learn2diss.eval.probes.linear_probe_accuracy`: standardised multinomial logistic regression),
and the ZeroSpeech ABX error of raw MFCCs on the corpus's test item file (:mod:`learn2diss.eval.abx`):

* speaker ID: 20 MFCCs (25 ms / 10 ms), mean and standard deviation per utterance; every speaker,
  30 % of each speaker's utterances held out;
* phone classification: 20 MFCCs with +-4 frames of context, one label per 10 ms frame (centre
  rule of :mod:`learn2diss.eval.alignments`), 40 classes; trained on the train split, scored on dev
  (seen speakers, unseen sentences) and test (unseen speakers).

    .venv/bin/python bench/corpus_baselines.py --corpus /tmp/demo --build --jobs 2
    .venv/bin/python bench/corpus_baselines.py --corpus data/demo     # an existing corpus
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torchaudio

from learn2diss.data.audio import read_audio
from learn2diss.eval.alignments import read_alignments
from learn2diss.eval.probes import linear_probe_accuracy, sample_frames, speaker_stratified_split

SAMPLE_RATE = 16000
HOP = 160  # 10 ms


def build_corpus(out: Path, jobs: int, extra: list[str]) -> float:
    from learn2diss.cli import main

    start = time.perf_counter()
    if main(["data", "synth", "--out", str(out), "--jobs", str(jobs), *extra]) != 0:
        raise SystemExit("corpus build failed")
    return time.perf_counter() - start


def read_split(corpus: Path, split: str) -> list[dict[str, str]]:
    with open(corpus / "splits" / f"{split}.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def mfcc_frames(path: Path, transform: torchaudio.transforms.MFCC) -> np.ndarray:
    """(frames, 20) MFCCs; frame i is centred at (i + 0.5) * 10 ms, like the alignment labels."""
    wav = torch.from_numpy(read_audio(path)[HOP // 2 :]).float()
    return transform(wav).T.numpy()


def with_context(feats: np.ndarray, context: int) -> np.ndarray:
    padded = np.pad(feats, ((context, context), (0, 0)), mode="edge")
    return np.concatenate([padded[i : i + len(feats)] for i in range(2 * context + 1)], axis=1)


def phone_probe(
    rows: dict[str, list[dict[str, str]]], feats: dict[str, np.ndarray], corpus: Path, args
) -> dict[str, tuple[float, float, int]]:
    """Accuracy and majority-class accuracy (%) and frame count on dev and test."""
    sets = {}
    for split in ("train", "dev", "test"):
        labels = read_alignments(corpus / "alignments" / f"{split}.tsv")
        utts = [r["utt_id"] for r in rows[split]]
        x = [with_context(feats[u], args.context) for u in utts]
        y = [labels[u].frame_labels(len(feats[u]), frame_shift=HOP / SAMPLE_RATE) for u in utts]
        sets[split] = sample_frames(x, y, args.max_frames, args.seed)
    train_x, train_y = sets["train"]
    majority = Counter(train_y.tolist()).most_common(1)[0][0]
    result = {}
    for split in ("dev", "test"):
        x, y = sets[split]
        accuracy = linear_probe_accuracy(train_x, train_y, x, y, seed=args.seed)
        result[split] = (accuracy, 100.0 * float(np.mean(y == majority)), len(y))
    return result


def abx_baseline(
    rows: list[dict[str, str]], feats: dict[str, np.ndarray], corpus: Path
) -> dict[str, float]:
    """ZeroSpeech ABX error (%) of raw MFCCs on ``abx/test.item``, within and across speaker."""
    import tempfile

    from learn2diss.eval.abx import AbxSettings, score_abx

    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            np.save(Path(tmp) / f"{row['utt_id']}.npy", feats[row["utt_id"]].astype(np.float32))
        settings = AbxSettings(frame_shift=HOP / SAMPLE_RATE)
        scores = score_abx(tmp, corpus / "abx" / "test.item", settings)
    return {score.speaker_mode: score.error for score in scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, required=True, help="corpus folder (built there with --build)"
    )
    parser.add_argument(
        "--build", action="store_true", help="build the default corpus first, timed"
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes for --build (default 2)")
    parser.add_argument(
        "--synth-args", default="", help="extra 'learn2diss data synth' flags for --build"
    )
    parser.add_argument(
        "--context", type=int, default=4, help="frames of context each side (default 4)"
    )
    parser.add_argument(
        "--max-frames", type=int, default=60000, help="frames per split for the phone probe"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)

    build_s = build_corpus(args.corpus, args.jobs, args.synth_args.split()) if args.build else None
    summary = json.loads((args.corpus / "corpus.json").read_text())
    audio_files = [p for p in args.corpus.rglob("*") if p.suffix in (".flac", ".wav")]
    size_mb = sum(p.stat().st_size for p in audio_files) / 1e6
    total_mb = sum(p.stat().st_size for p in args.corpus.rglob("*") if p.is_file()) / 1e6
    hours = sum(s["hours"] for s in summary["splits"].values())

    start = time.perf_counter()
    rows = {split: read_split(args.corpus, split) for split in ("train", "dev", "test")}
    transform = torchaudio.transforms.MFCC(
        SAMPLE_RATE,
        n_mfcc=20,
        melkwargs={"n_fft": 400, "win_length": 400, "hop_length": HOP, "n_mels": 40},
    )
    feats = {
        r["utt_id"]: mfcc_frames(args.corpus / r["path"], transform)
        for s in rows.values()
        for r in s
    }
    speakers = {r["utt_id"]: r["speaker"] for s in rows.values() for r in s}
    pooled = {u: np.concatenate([f.mean(0), f.std(0)]) for u, f in feats.items()}
    train, test = speaker_stratified_split(
        sorted(pooled), speakers, test_fraction=0.3, seed=args.seed
    )
    spk_acc = linear_probe_accuracy(
        np.stack([pooled[u] for u in train]), [speakers[u] for u in train],
        np.stack([pooled[u] for u in test]), [speakers[u] for u in test], seed=args.seed,
    )  # fmt: skip
    phones = phone_probe(rows, feats, args.corpus, args)
    abx = abx_baseline(rows["test"], feats, args.corpus)
    probe_s = time.perf_counter() - start

    n_spk = len(summary["speakers"])
    n_utt = sum(s["utterances"] for s in summary["splits"].values())
    print(
        f"\nDemo corpus {args.corpus} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)\n"
    )
    print("| quantity | value |")
    print("|---|---|")
    print(f"| speakers / utterances / hours | {n_spk} / {n_utt} / {hours:.2f} h |")
    print(f"| skipped utterances | {len(summary['skipped'])} |")
    print(f"| audio size / total size | {size_mb:.1f} MB / {total_mb:.1f} MB |")
    if build_s is not None:
        print(f"| build time ({args.jobs} processes) | {build_s:.1f} s |")
    print(
        f"| speaker ID, MFCC mean+std, {n_spk} speakers, {len(test)} test utts | {spk_acc:.1f} % (chance {100 / n_spk:.1f} %) |"
    )
    for split, name in (("dev", "seen speakers (dev)"), ("test", "unseen speakers (test)")):
        acc, majority, frames = phones[split]
        print(
            f"| phone frames, linear MFCC+-{args.context}, {name}, {frames} frames | {acc:.1f} % (majority {majority:.1f} %) |"
        )
    for mode, error in abx.items():
        print(
            f"| ABX error, MFCC, test split, {mode} speaker (triphone items, cosine, DTW) | {error:.1f} % |"
        )
    print(f"| baseline time (features, 3 probes, ABX) | {probe_s:.1f} s |")


if __name__ == "__main__":
    main()
