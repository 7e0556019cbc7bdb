"""Discrete targets: the knee point, MFCC features, label files (k-means itself: :mod:`learn2diss.kmeans`).

- :func:`knee_point` is the Kneedle algorithm (Satopaa et al. 2011) from the ``kneed`` package.
- :func:`mfcc_features` are HuBERT's iteration-1 features (MFCC + deltas), on the 50 Hz frame grid.
- :class:`FrameLabels` stores one int16/int32 label per 20 ms frame for every manifest row in a
  flat ``labels.npy`` with ``offsets.npy``, read through a memory map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from learn2diss import io as lio
from learn2diss.io import atomic_path
from learn2diss.upstream.config import SAMPLE_RATE

__all__ = ["knee_point", "plot_knee", "mfcc_features", "FrameLabels"]


def mfcc_features(wav: torch.Tensor, frames: int, frame_shift_ms: float = 20.0) -> torch.Tensor:
    """HuBERT iteration-1 targets' features (Hsu et al. 2021 §IV-A; fairseq ``dump_mfcc_feature.py``).

    Kaldi MFCC (13 coefficients, 25 ms window, no energy, torchaudio's ``compliance.kaldi``) with first
    and second deltas: 39-d, unnormalised. The shift is the model's frame period (``frame_shift_ms``: its conv
    stride, 20 ms for every parent here) instead of fairseq's 10 ms, so that frame i lies on the model's grid; the result is cut (or its last frame repeated) to ``frames``,
    the count of the model's convolutional encoder.

    Args:
        wav: (samples,) 16 kHz waveform.
        frames: frames to return.

    Returns:
        (frames, 39) float32, on ``wav``'s device.
    """
    from torchaudio.compliance.kaldi import mfcc
    from torchaudio.functional import compute_deltas

    wav = wav.float()
    if wav.shape[0] < 400:  # shorter than one 25 ms window
        wav = torch.nn.functional.pad(wav, (0, 400 - wav.shape[0]))
    with torch.autocast(wav.device.type, enabled=False):  # float32 even inside a bf16 region
        ceps = mfcc(wav[None], sample_frequency=SAMPLE_RATE, frame_shift=frame_shift_ms, use_energy=False).T  # (13, T)
        delta = compute_deltas(ceps)
        feats = torch.cat([ceps, delta, compute_deltas(delta)]).T  # (T, 39)
    if len(feats) < frames:
        feats = torch.cat([feats, feats[-1:].expand(frames - len(feats), -1)])
    return feats[:frames]


def knee_point(counts: Sequence[int], inertias: Sequence[float]) -> int | None:
    """The knee of the decreasing, convex inertia curve (Kneedle, S = 1); None when the curve has none."""
    from kneed import KneeLocator

    if len(counts) < 3:
        return None
    knee = KneeLocator(list(counts), list(inertias), curve="convex", direction="decreasing", S=1.0).knee
    return None if knee is None else int(knee)


def plot_knee(counts: Sequence[int], inertias: Sequence[float], knee: int | None, chosen: int, path: Path) -> None:
    """Save the knee curve as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(counts, inertias, "o-", label="k-means inertia")
    if knee is not None:
        ax.axvline(knee, color="tab:red", linestyle="--", label=f"knee Q = {knee}")
    if chosen != knee:
        ax.axvline(chosen, color="tab:green", linestyle=":", label=f"used Q = {chosen}")
    ax.set_xlabel("Q (utterance clusters)")
    ax.set_ylabel("sum of squared distances")
    ax.set_title("Utterance clusters: Kneedle knee point")
    ax.legend()
    fig.tight_layout()
    lio.save_figure(path, fig, dpi=120)
    plt.close(fig)


class FrameLabels:
    """Row ``i`` -> its frame labels, from ``DIR/labels.npy`` (flat) and ``DIR/offsets.npy`` (N + 1).

    The memory map is opened lazily, so the object pickles cheaply into DataLoader workers.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.offsets = lio.load_npy(self.directory / "offsets.npy")
        if self.offsets.ndim != 1 or self.offsets.dtype.kind not in "iu" or not len(self.offsets):
            raise lio.FileReadError(f"{self.directory / 'offsets.npy'}: expected N + 1 integer offsets, got "
                                    f"{self.offsets.dtype} {self.offsets.shape}")
        self._labels: np.ndarray | None = None

    @staticmethod
    def write(directory: Path, per_utterance: Sequence[np.ndarray], num_classes: int) -> None:
        dtype = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32
        offsets = np.zeros(len(per_utterance) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(a) for a in per_utterance])
        flat = np.concatenate(per_utterance).astype(dtype) if per_utterance else np.zeros(0, dtype)
        lio.save_npy(directory / "labels.npy", flat)
        lio.save_npy(directory / "offsets.npy", offsets)

    @staticmethod
    def write_chunks(directory: Path, chunk_dir: Path, num_chunks: int, num_classes: int) -> np.ndarray:
        """Like :meth:`write`, from the chunk files of :func:`learn2diss.pretrain.extract.map_utterances`,
        one chunk in memory at a time (a corpus of any size); returns the frames of each utterance."""
        from learn2diss.pretrain.extract import chunk_lengths

        dtype = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32
        lengths = chunk_lengths(chunk_dir, num_chunks)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        with atomic_path(directory / "labels.npy") as tmp:
            flat = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(int(offsets[-1]),))
            start = 0
            for c in range(num_chunks):
                data = lio.load_npz(chunk_dir / f"chunk_{c:06d}.npz", "data")["data"]
                flat[start : start + len(data)] = data
                start += len(data)
            flat.flush()
            del flat
        lio.save_npy(directory / "offsets.npy", offsets)
        return lengths

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        if self._labels is None:
            self._labels = lio.load_npy(self.directory / "labels.npy", mmap=True)
        return np.asarray(self._labels[self.offsets[i] : self.offsets[i + 1]], dtype=np.int64)

    def __getstate__(self) -> dict:
        return {"directory": self.directory, "offsets": self.offsets, "_labels": None}
