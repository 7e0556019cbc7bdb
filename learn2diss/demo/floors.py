"""The demo's floors: MFCC features scored by the same code, on the same frames and items, as the models.

A learned representation means little unless it beats the raw features it was learned from. The demo scores two
MFCC feature sets on the model's 50 Hz frame grid (one vector per frame of the parent's convolutional encoder:
a 25 ms window starting at each multiple of the conv stride, no context):

* ``mfcc-20``: 20 coefficients of torchaudio's ``MFCC`` (40 mel bands, no liftering), the plain MFCC floor of
  the project's corpus baselines (``bench/corpus_baselines.py``);
* ``mfcc-39``: Kaldi MFCC, 13 coefficients + Δ + ΔΔ, the features whose k-means clusters are the parent's
  targets (HuBERT's iteration 1, :func:`learn2diss.pretrain.targets.mfcc_features`), which HuBERT's first
  iteration beats. Kaldi's cepstral liftering weights the higher coefficients up, which makes these the stronger
  floor for cosine distances (ABX).

Their features are written like a model's (``WORK/features/<floor>/<split>/frame_last/<utt>.npy``) and scored
with :func:`learn2diss.study.evaluate.score_frame_features`, the PER of the linear CTC head included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

FLOORS = ("mfcc-20", "mfcc-39")


def mfcc_20(wav, frames: int, stride: int):
    """(frames, 20) torchaudio MFCCs: 25 ms windows every ``stride`` samples, 40 mel bands, not centred."""
    import torch
    import torchaudio

    from learn2diss.upstream.config import SAMPLE_RATE

    transform = torchaudio.transforms.MFCC(SAMPLE_RATE, n_mfcc=20, melkwargs={
        "n_fft": 400, "win_length": 400, "hop_length": stride, "n_mels": 40, "center": False})
    if wav.shape[0] < 400:
        wav = torch.nn.functional.pad(wav, (0, 400 - wav.shape[0]))
    feats = transform(wav.float()).T
    if len(feats) < frames:
        feats = torch.cat([feats, feats[-1:].expand(frames - len(feats), -1)])
    return feats[:frames]


def write_mfcc_features(floor: str, audio: Mapping[str, Path], conv_layers: Sequence[Sequence[int]],
                        folder: Path) -> None:
    """``folder/<utt>.npy`` of MFCC floor ``floor`` for each utterance, one frame per frame of a model with
    ``conv_layers``; existing files are kept (resume)."""
    import torch

    from learn2diss.data.audio import read_audio
    from learn2diss.data.batching import frames_for_samples
    from learn2diss.io import save_npy
    from learn2diss.pretrain.targets import mfcc_features
    from learn2diss.upstream.config import SAMPLE_RATE

    stride = int(np.prod([s for _, _, s in conv_layers]))
    for utt, path in audio.items():
        target = folder / f"{utt}.npy"
        if target.is_file():
            continue
        wav = torch.from_numpy(read_audio(path))
        frames = int(frames_for_samples(len(wav), [tuple(c) for c in conv_layers]))
        feats = mfcc_20(wav, frames, stride) if floor == "mfcc-20" else mfcc_features(wav, frames,
                                                                                        1000.0 * stride / SAMPLE_RATE)
        save_npy(target, np.ascontiguousarray(feats.numpy(), dtype=np.float32))
