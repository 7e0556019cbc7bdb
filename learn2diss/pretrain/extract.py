"""Inference passes over a manifest (frame-target labels, utterance embeddings): batched, sharded, resumable.

:func:`map_utterances` runs ``fn(waveforms, lengths) -> one array per utterance`` over manifest rows in
chunks of ``chunk_size``; each chunk is written atomically to ``WORK/chunk_NNNNNN.npz`` and skipped
when it exists, and DDP rank r takes chunks r, r + G, ... :func:`read_chunks` gathers the arrays
back in manifest order. Audio is read in DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from learn2diss.data.audio import read_audio
from learn2diss.data.batching import inference_batches
from learn2diss.data.manifest import Manifest
from learn2diss.io import load_npz, save_npz
from learn2diss.training.ddp import DistributedContext, barrier
from learn2diss.upstream.padding import pad_waveforms

__all__ = ["iterate_batches", "map_utterances", "read_chunks", "chunk_lengths"]


class _BatchReader(torch.utils.data.Dataset):
    """Item i = the padded waveforms of batch i (each utterance cut to ``max_samples``)."""

    def __init__(self, paths: Sequence[str], batches: list[list[int]], max_samples: int) -> None:
        self.paths, self.batches, self.max_samples = paths, batches, max_samples

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        padded, lengths = pad_waveforms([read_audio(self.paths[u])[: self.max_samples] for u in self.batches[i]])
        return self.batches[i], padded, lengths


def iterate_batches(
    manifest: Manifest, indices: Sequence[int] | np.ndarray, max_batch_samples: int, max_samples: int, num_workers: int,
    device: torch.device,
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Yield ``(rows, waveforms (B, S) on device, lengths (B,))`` for ``indices``, length-sorted batches."""
    lengths = np.minimum(manifest.samples, max_samples)
    batches = inference_batches(list(indices), lengths, max_batch_samples)
    loader = torch.utils.data.DataLoader(
        _BatchReader(manifest.paths, batches, max_samples), batch_size=None, num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    for rows, wav, lens in loader:
        yield rows, wav.to(device, non_blocking=True), lens.to(device)


def map_utterances(
    manifest: Manifest,
    fn: Callable[[torch.Tensor, torch.Tensor], list[np.ndarray]],
    work_dir: Path,
    ctx: DistributedContext,
    max_batch_samples: int,
    max_samples: int,
    num_workers: int,
    chunk_size: int = 1000,
    desc: str = "",
) -> int:
    """Apply ``fn`` to every manifest row, chunk by chunk (see module doc); returns the number of chunks."""
    from tqdm import tqdm

    work_dir.mkdir(parents=True, exist_ok=True)
    num_chunks = math.ceil(len(manifest) / chunk_size)
    mine = [c for c in range(ctx.rank, num_chunks, ctx.world_size) if not (work_dir / f"chunk_{c:06d}.npz").exists()]
    total = sum(min(len(manifest), (c + 1) * chunk_size) - c * chunk_size for c in mine)
    with tqdm(total=total, desc=desc, unit="utt", disable=not ctx.is_main, dynamic_ncols=True) as bar:
        for c in mine:
            rows = range(c * chunk_size, min(len(manifest), (c + 1) * chunk_size))
            results: dict[int, np.ndarray] = {}
            for batch_rows, wav, lengths in iterate_batches(manifest, rows, max_batch_samples, max_samples,
                                                            num_workers, ctx.device):
                for row, array in zip(batch_rows, fn(wav, lengths), strict=True):
                    results[row] = array
                bar.update(len(batch_rows))
            arrays = [results[r] for r in rows]
            save_npz(work_dir / f"chunk_{c:06d}.npz", data=np.concatenate(arrays),
                      lengths=np.array([len(a) for a in arrays], dtype=np.int64))
    barrier(ctx)
    return num_chunks


def chunk_lengths(work_dir: Path, num_chunks: int) -> np.ndarray:
    """The length of every utterance's array in the chunks of :func:`map_utterances`, in manifest order."""
    out = []
    for c in range(num_chunks):
        out.append(load_npz(work_dir / f"chunk_{c:06d}.npz", "lengths")["lengths"])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def read_chunks(work_dir: Path, num_chunks: int) -> list[np.ndarray]:
    """The per-utterance arrays written by :func:`map_utterances`, in manifest order."""
    out: list[np.ndarray] = []
    for c in range(num_chunks):
        chunk = load_npz(work_dir / f"chunk_{c:06d}.npz", "data", "lengths")
        data, lengths = chunk["data"], chunk["lengths"]
        out += np.split(data, np.cumsum(lengths)[:-1])
    return out
