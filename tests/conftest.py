"""Shared test helpers: tiny model configs that run in milliseconds on a CPU."""

from __future__ import annotations

import os

import pytest
import torch

from learn2diss.upstream.config import FrameConfig, ModelConfig, ParentConfig, UtteranceConfig

torch.set_num_threads(min(2, os.cpu_count() or 1))


def tiny_config(kind: str = "wavlm", num_frozen_layers: int = 0, extractor_mode: str = "group_norm") -> ModelConfig:
    """A 3-layer, 32-d parent (stride 20 samples) with a 32-channel ECAPA-TDNN."""
    return ModelConfig(
        parent=ParentConfig(
            kind=kind, conv_layers=((32, 10, 5), (32, 3, 2), (32, 2, 2)), extractor_mode=extractor_mode,
            conv_bias=False, embed_dim=32, num_layers=3, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
            pos_conv_groups=2, pos_conv_layers=1, layer_norm_first=False, num_buckets=320, max_distance=800,
            normalize_waveform=False, dropout=0.1, attention_dropout=0.1,
        ),
        frame=FrameConfig(num_frozen_layers=num_frozen_layers, num_targets=20, mask_prob=0.5, mask_length=4),
        utterance=UtteranceConfig(channels=(32,) * 5, kernel_sizes=(5, 3, 3, 3, 1), dilations=(1, 2, 3, 4, 1),
                                  attention_channels=8, res2net_scale=4, se_channels=8, embed_dim=16, num_targets=10),
    )


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every parameter so that no layer norm or bias is the identity (makes parity tests sensitive)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return module


@pytest.fixture
def waveforms() -> torch.Tensor:
    return torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skip them (with the reason) on a machine without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
