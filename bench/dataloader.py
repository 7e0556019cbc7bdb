"""Training-loader throughput: one FLAC file per utterance against WebDataset shards.

Both paths do what a joint-stage batch needs: decode the FLAC, crop to data.max_utterance_seconds,
batch by the seconds budget, pad, attach frame and utterance targets and pick the segment pairs.
They run in this process (num_workers=0, torch on one thread), so CPU seconds measure one core's
work; audio-s/s per core = audio seconds delivered / CPU seconds. The corpus is generated (LibriSpeech-
like lengths, tones + noise, 16 kHz FLAC) in a temporary folder on the local disk: the files are in
the page cache, so this measures decoding and batching, not a shared filesystem's per-file latency
(which shards exist to avoid). Workers one GPU needs = ceil(consumption / (audio-s/s per core)),
for the joint-step consumption measured on an H200 by bench/train_step.py (2,000-2,500 audio-s/s).

    python bench/dataloader.py                      # 300 utterances (~1 h of audio)
    python bench/dataloader.py --utterances 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from learn2diss.data.batching import (
    SecondsBatchSampler,
    UtteranceDataset,
    collate,
    frames_for_samples,
)
from learn2diss.data.manifest import Manifest
from learn2diss.data.shards import shard_batches, targets_fingerprint, write_shards

SR = 16000
CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2  # HuBERT/WavLM: 320-sample stride
CONSUMPTION = (2000.0, 2500.0)  # joint-stage audio-s/s of one H200 (bench/train_step.py)


def make_corpus(root: Path, utterances: int, seed: int) -> tuple[Manifest, list[np.ndarray], np.ndarray]:
    """FLAC files with LibriSpeech-like lengths (2-20 s, mean ~12 s), random frame and utterance targets."""
    rng = np.random.default_rng(seed)
    paths, samples, frames = [], [], []
    for i in range(utterances):
        n = int(SR * np.clip(rng.normal(12.3, 4.0), 2.0, 20.0))
        t = np.arange(n) / SR
        wav = 0.2 * np.sin(2 * np.pi * rng.uniform(90, 300) * t) + 0.02 * rng.standard_normal(n)
        path = root / "flac" / f"{i:06d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), SR)
        paths.append(str(path))
        samples.append(n)
        frames.append(rng.integers(0, 2048, frames_for_samples(n, CONV)).astype(np.int16))
    manifest = Manifest(paths, np.asarray(samples, dtype=np.int64), ["s"] * utterances, str(root / "train.tsv"))
    return manifest, frames, rng.integers(0, 2000, utterances)


def measure(batches) -> tuple[float, float, float]:
    """(audio seconds, wall seconds, CPU seconds of this process) of one pass over ``batches``."""
    audio, wall, cpu = 0.0, time.perf_counter(), time.process_time()
    for batch in batches:
        audio += batch.audio_seconds
    return audio, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=300)
    parser.add_argument("--max-utterance-seconds", type=float, default=5.0, help="crop (config l2d_w12: 5)")
    parser.add_argument("--batch-seconds", type=float, default=25.0)
    parser.add_argument("--shard-utterances", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed per loader (the best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="l2d-bench-") as tmp:
        root = Path(tmp)
        tic = time.perf_counter()
        manifest, frames, utts = make_corpus(root, args.utterances, args.seed)
        hours = manifest.samples.sum() / SR / 3600
        print(f"corpus: {len(manifest)} utterances, {hours:.2f} h, made in {time.perf_counter() - tic:.0f} s")
        tic = time.perf_counter()
        write_shards(manifest, root / "shards", args.shard_utterances, frames, None, utts, targets_fingerprint(utts),
                     progress=False)
        shard_bytes = sum(p.stat().st_size for p in (root / "shards").glob("*.tar"))
        print(f"shards: {len(list((root / 'shards').glob('*.tar')))} written in {time.perf_counter() - tic:.1f} s, "
              f"{shard_bytes / 1e6:.0f} MB")
        budget = int(args.batch_seconds * SR)
        dataset = UtteranceDataset(manifest.paths, manifest.samples, CONV, int(args.max_utterance_seconds * SR),
                                   args.seed, frames, utts)
        collate_fn = partial(collate, conv_layers=CONV, segment_frames=50, seed=args.seed)
        indices = np.arange(len(manifest))
        sampler = SecondsBatchSampler(dataset.cropped_lengths(), indices, budget, args.seed)

        def files(epoch: int):
            for keys in sampler.epoch_batches(epoch):
                yield collate_fn([dataset[(u, epoch, 0)] for u in keys])

        factory = shard_batches(root / "shards", manifest, dataset, collate_fn, indices, budget, args.seed, 0, 1, 0,
                                1000, False)

        def shards(epoch: int):
            for batch in factory((epoch, 0)):
                if batch.epoch != epoch:
                    return
                yield batch

        rows = []
        for name, loader in (("files", files), ("shards", shards)):
            best = min((measure(loader(epoch)) for epoch in range(args.repeats)), key=lambda r: r[2])
            rows.append((name, *best))
    print("\nloader | audio s | wall s | CPU s | audio-s/s per core | workers for "
          + " / ".join(f"{c:,.0f}" for c in CONSUMPTION) + " audio-s/s")
    print("---|---:|---:|---:|---:|---:")
    for name, audio, wall, cpu in rows:
        rate = audio / cpu
        need = " / ".join(str(math.ceil(c / rate)) for c in CONSUMPTION)
        print(f"{name} | {audio:.0f} | {wall:.2f} | {cpu:.2f} | {rate:,.0f} | {need}")
    print(f"\n(crop {args.max_utterance_seconds:g} s, budget {args.batch_seconds:g} s, best of {args.repeats} epochs, "
          "torch on 1 thread, num_workers=0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
