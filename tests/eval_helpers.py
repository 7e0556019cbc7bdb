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


def write_spelled_librispeech(root: Path, speakers: dict[str, list[str]], letter_seconds: float = 0.08,
                              seed: int = 0) -> None:
    """A LibriSpeech-layout corpus whose audio spells its transcript: each letter a tone of its own pitch for
    ``letter_seconds`` (4 frames at 50 Hz), 60 ms of silence after each word, 0.1 s at both ends, a little noise.
    Each speaker shifts every pitch by 3 %. CTC can learn it from a random front end in a hundred updates."""
    rng = np.random.default_rng(seed)
    for k, (spk, texts) in enumerate(speakers.items()):
        chapter = root / spk / "100"
        chapter.mkdir(parents=True, exist_ok=True)
        lines = []
        for n, text in enumerate(texts):
            parts = [np.zeros(1600)]
            for word in text.lower().split():
                for letter in word:
                    t = np.arange(int(letter_seconds * 16000)) / 16000
                    pitch = (250 + 140 * (ord(letter) - ord("a"))) * (1 + 0.03 * k)
                    parts.append(0.5 * np.sin(2 * np.pi * pitch * t))
                parts.append(np.zeros(960))
            parts.append(np.zeros(1600))
            wav = np.concatenate(parts)
            wav += 0.01 * rng.standard_normal(wav.size)
            utt = f"{spk}-100-{n:04d}"
            sf.write(chapter / f"{utt}.flac", wav.astype(np.float32), 16000)
            lines.append(f"{utt} {text}")
        (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")
