"""Frame k-means at LibriSpeech-960 scale (172.8 M frames): what the frame-targets stage costs per 1,000 h.

The stage (learn2diss.pretrain.stages.frame_targets) fits K-means on a sample of
``frame_targets.fit_max_frames`` frames, labels every frame in a streaming pass (chunks of 1,000
utterances written to disk), then gathers the chunks into ``labels.npy``. This script measures, on
this machine's CPU, the three parts that do not need the parent model:

1. fit: faiss k-means (K = 2048, 768-d) on a small random sample; the cost per Lloyd iteration is
   linear in points x clusters x dimensions, so the fit of the configs (1 M frames, 20 iterations)
   is extrapolated from it;
2. assign: the nearest-centroid labelling (:func:`learn2diss.kmeans.assign`) of frames
   on the CPU (the stage runs it on the model's device, a GPU in practice);
3. gather: the real gather of 172.8 M frame labels (LibriSpeech 960 h at 50 Hz) from chunk files
   into ``labels.npy`` + ``offsets.npy``, timed with its peak resident memory in a subprocess, both
   in memory (:func:`read_chunks` + :meth:`FrameLabels.write`, what the stage did first) and
   streamed (:meth:`FrameLabels.write_chunks`, what it does now).

The parent's forward pass (extraction) is not here: it dominates the stage on a GPU and is measured
by bench/train_step.py's inference numbers.

    python bench/frame_kmeans.py                 # all three (gather writes ~1.4 GB of chunks to --tmp)
    python bench/frame_kmeans.py --skip-gather
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FRAMES_960H = 960 * 3600 * 50  # 172.8 M frames
UTTERANCES_960H = 281_241  # LibriSpeech 960 h training utterances
FRAMES_PER_1000H = 1000 * 3600 * 50


def bench_fit(points: int, k: int, dim: int, iterations: int) -> float:
    """CPU seconds per Lloyd iteration per (point x cluster x dimension)."""
    from learn2diss.kmeans import fit_kmeans

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((points, dim)) + rng.standard_normal((64, dim))[rng.integers(0, 64, points)])
    x = x.astype(np.float32)
    tic = time.process_time()
    fit_kmeans(x, k, iterations, 0)
    seconds = time.process_time() - tic
    return seconds / (iterations * points * k * dim)


def bench_assign(frames: int, k: int, dim: int) -> float:
    """CPU seconds per frame of :func:`assign`."""
    from learn2diss.kmeans import assign

    x = torch.randn(frames, dim)
    c = torch.randn(k, dim)
    assign(x[:1000], c)
    tic = time.process_time()
    for start in range(0, frames, 20_000):
        assign(x[start : start + 20_000], c)
    return (time.process_time() - tic) / frames


def _gather_child(work: str, chunks: int, out: str, mode: str) -> None:
    from learn2diss.pretrain.extract import read_chunks
    from learn2diss.pretrain.targets import FrameLabels

    tic, cpu = time.perf_counter(), time.process_time()
    if mode == "in-memory":  # what the stage did before FrameLabels.write_chunks
        per_utt = read_chunks(Path(work), chunks)
        FrameLabels.write(Path(out), per_utt, 2048)
        frames = int(sum(map(len, per_utt)))
    else:
        frames = int(FrameLabels.write_chunks(Path(out), Path(work), chunks, 2048).sum())
    seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_gb": peak_gb, "frames": frames}))


def bench_gather(tmp: Path, frames: int, utterances: int, chunk_size: int = 1000) -> dict:
    """Write int64 label chunks as map_utterances does, then gather them in a fresh process."""
    from learn2diss.pretrain.extract import _save_npz

    rng = np.random.default_rng(0)
    lengths = rng.multinomial(frames - utterances * 50, np.full(utterances, 1 / utterances)) + 50
    work, out = tmp / "chunks", tmp / "labels"
    work.mkdir()
    out.mkdir()
    chunks = math.ceil(utterances / chunk_size)
    tic = time.perf_counter()
    for c in range(chunks):
        n = lengths[c * chunk_size : (c + 1) * chunk_size]
        _save_npz(work / f"chunk_{c:06d}.npz", data=rng.integers(0, 2048, int(n.sum()), dtype=np.int64),
                  lengths=n.astype(np.int64))
    written = time.perf_counter() - tic
    disk_gb = sum(p.stat().st_size for p in work.iterdir()) / 1e9
    results = {}
    for mode in ("in-memory", "streaming"):
        child = subprocess.run([sys.executable, __file__, "--gather-child", str(work), str(chunks), str(out), mode],
                               capture_output=True, text=True, check=True)
        results[mode] = {**json.loads(child.stdout.strip().splitlines()[-1]), "chunks_written_s": written,
                         "chunks_gb": disk_gb, "labels_gb": (out / "labels.npy").stat().st_size / 1e9}
    return results


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--gather-child":
        _gather_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit-points", type=int, default=40_000)
    parser.add_argument("--fit-iterations", type=int, default=2)
    parser.add_argument("--assign-frames", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--config-fit-frames", type=int, default=1_000_000, help="frame_targets.fit_max_frames")
    parser.add_argument("--config-iterations", type=int, default=20, help="frame_targets.kmeans_iterations")
    parser.add_argument("--skip-gather", action="store_true")
    parser.add_argument("--tmp", type=Path, help="folder for the gather's chunk files (default: a temporary one)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    per_fit = bench_fit(args.fit_points, args.k, args.dim, args.fit_iterations)
    fit_s = per_fit * args.config_fit_frames * args.k * args.dim * args.config_iterations
    per_frame = bench_assign(args.assign_frames, args.k, args.dim)
    print(f"K = {args.k}, {args.dim}-d features; CPU seconds of one thread (torch and faiss on "
          f"{threads} thread(s)), so the numbers are per core\n")
    print("part | measured on | measured | per 1,000 h (extrapolated)")
    print("---|---|---:|---:")
    print(f"fit (faiss) | {args.fit_points:,} frames x {args.fit_iterations} iteration(s) | "
          f"{per_fit * args.fit_points * args.k * args.dim * args.fit_iterations:.0f} CPU s | "
          f"{fit_s / 3600:.1f} core-hours for {args.config_fit_frames:,} frames x {args.config_iterations} iterations "
          "(a fixed sample: the same for any corpus size)")
    print(f"fit sample in memory | - | - | {args.config_fit_frames * args.dim * 4 / 1e9:.1f} GB float32 "
          "(x2 while the per-utterance pieces are concatenated)")
    print(f"assign (torch, CPU) | {args.assign_frames:,} frames | {per_frame * 1e6:.0f} CPU us/frame | "
          f"{per_frame * FRAMES_PER_1000H / 3600:.0f} core-hours; "
          f"{2 * args.k * args.dim * FRAMES_PER_1000H / 1e12:.0f} TFLOP (a GPU's minutes)")
    if not args.skip_gather:
        with tempfile.TemporaryDirectory(prefix="l2d-kmeans-", dir=args.tmp) as tmp:
            gathers = bench_gather(Path(tmp), FRAMES_960H, UTTERANCES_960H)
        for mode, g in gathers.items():
            scale = FRAMES_PER_1000H / g["frames"]
            print(f"gather labels, {mode} | {g['frames'] / 1e6:.1f} M frames ({g['chunks_gb']:.2f} GB of int64 "
                  f"chunks) | {g['cpu']:.0f} CPU s ({g['seconds']:.0f} s wall), peak RSS {g['peak_gb']:.2f} GB | "
                  f"{g['cpu'] * scale:.0f} CPU s; peak RSS "
                  + (f"{g['peak_gb'] * scale:.1f} GB (linear in the corpus)" if mode == "in-memory" else
                     "independent of the corpus (one chunk)")
                  + f"; labels.npy {g['labels_gb'] * scale:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
