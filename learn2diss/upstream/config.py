"""Architecture of a Learn2Diss model (paper §3.2, Table 1), as stored in every checkpoint.

No field has a default: the run configs (``learn2diss/configs/``, ``model:``) and stored checkpoints give
every value (docs/pretraining.md, "Configs"). The comments give the base models' values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from learn2diss.schema import check_ranges

SAMPLE_RATE = 16_000  # Hz: every parent and Learn2Diss itself take 16 kHz audio (the one definition)


@dataclass(frozen=True)
class ParentConfig:
    """The parent (HuBERT, WavLM, wav2vec 2.0 or data2vec audio), in torchaudio's ``wav2vec2_model`` /
    ``wavlm_model`` terms.

    The *base* models have 12 layers, 768-d, 12 heads, 3072-d feed-forward. The Large
    models use ``extractor_mode: layer_norm``, ``layer_norm_first: true`` and ``normalize_waveform: true``;
    data2vec audio has a 5-layer positional convolution (``pos_conv_layers: 5``, kernel 19).
    """

    kind: Literal["hubert", "wavlm", "wav2vec2", "data2vec"]
    # (channels, kernel, stride) per conv layer; base: (512, 10, 5), 4 x (512, 3, 2), 2 x (512, 2, 2), a total
    # stride of 320 = 20 ms at 16 kHz
    conv_layers: tuple[tuple[int, int, int], ...]
    extractor_mode: Literal["group_norm", "layer_norm"]  # group_norm: the base models
    conv_bias: bool
    embed_dim: int  # 768 (base)
    num_layers: int  # 12 (base)
    num_heads: int  # 12 (base)
    ffn_dim: int  # 3072 (base)
    pos_conv_kernel: int  # kernel of each positional convolution layer: 128 (base)
    pos_conv_groups: int  # 16
    pos_conv_layers: int  # 1; data2vec audio: 5 layers (conv, layer norm without affine, GELU), no weight norm
    layer_norm_first: bool  # false for the base models
    num_buckets: int  # WavLM relative position buckets: 320 (ignored for the others)
    max_distance: int  # WavLM relative position max distance: 800 (ignored for the others)
    normalize_waveform: bool  # zero mean, unit variance per utterance (the Large models, data2vec)
    dropout: float  # 0.1
    attention_dropout: float  # 0.1

    def __post_init__(self) -> None:
        check_ranges(
            ("embed_dim", self.embed_dim, self.embed_dim % self.num_heads == 0 if self.num_heads > 0 else True,
             f"a multiple of num_heads ({self.num_heads})"),
            ("num_heads", self.num_heads, self.num_heads >= 1, ">= 1"),
            ("conv_layers", list(self.conv_layers), bool(self.conv_layers), "at least one (channels, kernel, stride)"),
            ("pos_conv_layers", self.pos_conv_layers, self.pos_conv_layers >= 1 and (
                self.pos_conv_layers == 1 or self.kind != "wavlm"),
             ">= 1, and 1 for kind wavlm (more is data2vec's positional convolution)"),
            ("dropout", self.dropout, 0 <= self.dropout < 1, "in [0, 1)"),
            ("attention_dropout", self.attention_dropout, 0 <= self.attention_dropout < 1, "in [0, 1)"),
        )

    @property
    def stride(self) -> int:
        """Samples per output frame of the convolutional encoder."""
        stride = 1
        for _, _, s in self.conv_layers:
            stride *= s
        return stride


@dataclass(frozen=True)
class FrameConfig:
    """Frozen layers N, masking (wav2vec 2.0 / HuBERT style) and the K-way target projection W_g (§3.2.2)."""

    num_frozen_layers: int  # N; the frame encoder g gets the remaining M = num_layers - N
    num_targets: int  # K (2048 in the paper)
    mask_prob: float  # 0.8: HuBERT base pretraining
    mask_length: int  # frames per masked span (10)

    def __post_init__(self) -> None:
        check_ranges(
            ("num_frozen_layers", self.num_frozen_layers, self.num_frozen_layers >= 0, ">= 0"),
            ("num_targets", self.num_targets, self.num_targets >= 1, ">= 1"),
            ("mask_prob", self.mask_prob, 0.0 <= self.mask_prob <= 1.0, "in [0, 1]"),
            ("mask_length", self.mask_length, self.mask_length >= 1, ">= 1"),
        )


@dataclass(frozen=True)
class UtteranceConfig:
    """ECAPA-TDNN utterance encoder h (§3.2.3): L = len(channels) + 1 layers, d' = channels, d^L = embed_dim."""

    channels: tuple[int, ...]  # the L-1 frame-level layers (TDNN, 3 SE-Res2Net, MFA): 5 x 1024 in the paper
    kernel_sizes: tuple[int, ...]  # (5, 3, 3, 3, 1)
    dilations: tuple[int, ...]  # (1, 2, 3, 4, 1)
    attention_channels: int  # 128
    res2net_scale: int  # 8
    se_channels: int  # 128
    embed_dim: int  # d^L (256)
    num_targets: int  # Q (2000)

    def __post_init__(self) -> None:
        five = "5 entries (speechbrain's ECAPA-TDNN)"
        check_ranges(
            ("channels", list(self.channels), len(self.channels) == 5 and len(set(self.channels[:4])) == 1,
             f"{five}, the first four equal"),
            ("kernel_sizes", list(self.kernel_sizes), len(self.kernel_sizes) == 5, five),
            ("dilations", list(self.dilations), len(self.dilations) == 5, five),
        )


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a Learn2Diss model."""

    parent: ParentConfig
    frame: FrameConfig
    utterance: UtteranceConfig

    def __post_init__(self) -> None:
        check_ranges(("frame.num_frozen_layers", self.frame.num_frozen_layers,
                      0 <= self.frame.num_frozen_layers < self.parent.num_layers,
                      f"in [0, {self.parent.num_layers - 1}] (parent.num_layers - 1)"))

    @property
    def num_trainable_layers(self) -> int:
        """M, the transformer layers of the frame encoder g."""
        return self.parent.num_layers - self.frame.num_frozen_layers
