"""CUDA paths: bf16 autocast, fused attention kernels, padded batches (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from learn2diss.pretrain.config import load_config
from learn2diss.upstream.model import Learn2Diss

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", ["w12", "h12", "w6"])
def test_bf16_inference_uses_fused_attention_and_matches_fp32(name):
    model = Learn2Diss(load_config(f"l2d_{name}").model).cuda().eval()
    wav = torch.randn(4, 16000 * 6, device="cuda")
    lengths = torch.tensor([96000, 80000, 64000, 48000], device="cuda")
    with torch.inference_mode():
        reference = model(wav, lengths)
        # No math fallback allowed: a mask or dtype the fused kernels reject raises here.
        fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
        with sdpa_kernel(fused), torch.autocast("cuda", dtype=torch.bfloat16):
            fast = model(wav, lengths)
    for ref, out in zip(reference.frame_hidden_states, fast.frame_hidden_states, strict=True):
        assert torch.isfinite(out).all()
        valid = torch.arange(ref.shape[1], device="cuda")[None, :] < reference.frame_lengths[:, None]
        similarity = F.cosine_similarity(ref[valid].float(), out[valid].float(), dim=-1)
        assert similarity.mean() > 0.99
    assert F.cosine_similarity(reference.utt_embedding, fast.utt_embedding.float()).min() > 0.98
