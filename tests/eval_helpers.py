"""Helpers for the evaluation tests: a tiny 50 Hz model checkpoint and a small LibriSpeech-style corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from learn2diss.upstream.checkpoints import save_model
from learn2diss.upstream.config import FrameConfig, ModelConfig, ParentConfig, UtteranceConfig
from learn2diss.upstream.model import Learn2Diss


def tiny_50hz_config(num_frozen_layers: int = 1) -> ModelConfig:
    """A 3-layer, 32-d HuBERT-like parent whose convolutions stride 320 samples (50 Hz, like the real ones)."""
    return ModelConfig(
        parent=ParentConfig(
            kind="hubert", conv_layers=((16, 10, 5), (16, 4, 4), (16, 4, 4), (16, 4, 4)), extractor_mode="group_norm",
            conv_bias=False, embed_dim=32, num_layers=3, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
            pos_conv_groups=2, pos_conv_layers=1, layer_norm_first=False, num_buckets=320, max_distance=800,
            normalize_waveform=False, dropout=0.0, attention_dropout=0.0,
        ),
        frame=FrameConfig(num_frozen_layers=num_frozen_layers, num_targets=20, mask_prob=0.5, mask_length=4),
        utterance=UtteranceConfig(channels=(24,) * 5, kernel_sizes=(5, 3, 3, 3, 1), dilations=(1, 2, 3, 4, 1),
                                  attention_channels=8, res2net_scale=4, se_channels=8, embed_dim=16, num_targets=10),
    )


def tiny_checkpoint(directory: Path, seed: int = 0, extra: dict | None = None) -> Path:
    torch.manual_seed(seed)
    return save_model(Learn2Diss(tiny_50hz_config()), directory, extra=extra)


def write_librispeech(root: Path, speakers: dict[str, list[str]], seconds: float = 1.0, seed: int = 0) -> dict[str, Path]:
    """``root/<spk>/<chapter>/<spk>-<chapter>-<n>.flac`` + ``.trans.txt``; ``speakers`` maps id -> transcripts.

    Each speaker's audio is a tone at its own pitch plus noise, so speakers differ acoustically.
    """
    rng = np.random.default_rng(seed)
    paths = {}
    for k, (spk, texts) in enumerate(speakers.items()):
        chapter = root / spk / "100"
        chapter.mkdir(parents=True, exist_ok=True)
        lines = []
        for n, text in enumerate(texts):
            utt = f"{spk}-100-{n:04d}"
            t = np.arange(int(seconds * 16000)) / 16000
            wav = 0.3 * np.sin(2 * np.pi * (120 + 60 * k) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(chapter / f"{utt}.flac", wav.astype(np.float32), 16000)
            lines.append(f"{utt} {text}")
            paths[utt] = chapter / f"{utt}.flac"
        (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
    return paths
