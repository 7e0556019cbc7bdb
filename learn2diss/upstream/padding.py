"""Waveform padding: the one way the package lays out a batch of waveforms of different lengths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["pad_waveforms"]


def pad_waveforms(waves: Sequence[np.ndarray | Tensor], width: int | None = None) -> tuple[Tensor, Tensor]:
    """The batch layout every entry point of the model takes: zero-padded ``(B, S)`` waveforms and their ``(B,)``
    int64 valid lengths, on the first wave's device and in its dtype. S is the longest wave, or ``width``.

    >>> padded, lengths = pad_waveforms([np.ones(3, np.float32), np.ones(1, np.float32)])
    >>> padded.tolist(), lengths.tolist()
    ([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], [3, 1])
    """
    tensors = [torch.as_tensor(wave) for wave in waves]
    sizes = [int(wave.shape[0]) for wave in tensors]
    lengths = torch.tensor(sizes, dtype=torch.long, device=tensors[0].device)
    padded = tensors[0].new_zeros(len(tensors), width or max(sizes))
    for row, wave in enumerate(tensors):
        padded[row, : sizes[row]] = wave
    return padded, lengths
