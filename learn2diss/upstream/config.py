"""Architecture of a Learn2Diss model (paper §3.2, Table 1), as stored in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SAMPLE_RATE = 16_000  # Hz: every parent and Learn2Diss itself take 16 kHz audio (the one definition)


@dataclass(frozen=True)
class ParentConfig:
    """The parent (HuBERT, WavLM, wav2vec 2.0 or data2vec audio), in torchaudio's ``wav2vec2_model`` /
    ``wavlm_model`` terms.

    The defaults are the *base* models (12 layers, 768-d, 12 heads, 3072-d feed-forward). The Large
    models use ``extractor_mode: layer_norm``, ``layer_norm_first: true`` and ``normalize_waveform: true``;
    data2vec audio has a 5-layer positional convolution (``pos_conv_layers: 5``, kernel 19).
    """

    kind: Literal["hubert", "wavlm", "wav2vec2", "data2vec"] = "wavlm"
    conv_layers: tuple[tuple[int, int, int], ...] = (
        (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2),
    )  # (channels, kernel, stride) per conv layer; total stride 320 = 20 ms at 16 kHz
    extractor_mode: Literal["group_norm", "layer_norm"] = "group_norm"
    conv_bias: bool = False
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    pos_conv_kernel: int = 128  # kernel of each positional convolution layer
    pos_conv_groups: int = 16
    pos_conv_layers: int = 1  # data2vec audio: 5 layers (conv, layer norm without affine, GELU), no weight norm
    layer_norm_first: bool = False  # False for the base models
    num_buckets: int = 320  # WavLM relative position buckets (ignored for HuBERT)
    max_distance: int = 800  # WavLM relative position max distance (ignored for HuBERT)
    normalize_waveform: bool = False  # zero mean, unit variance per utterance (the Large models, data2vec)
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if not self.conv_layers:
            raise ValueError("conv_layers is empty")
        if self.pos_conv_layers < 1:
            raise ValueError(f"pos_conv_layers must be >= 1, got {self.pos_conv_layers}")
        if self.pos_conv_layers > 1 and self.kind == "wavlm":
            raise ValueError("pos_conv_layers > 1 (data2vec's positional convolution) is not a WavLM architecture")

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

    num_frozen_layers: int = 0  # N; the frame encoder g gets the remaining M = num_layers - N
    num_targets: int = 2048  # K
    mask_prob: float = 0.8  # HuBERT base pretraining
    mask_length: int = 10  # frames per masked span

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in [0, 1], got {self.mask_prob}")
        if self.mask_length < 1 or self.num_targets < 1 or self.num_frozen_layers < 0:
            raise ValueError("mask_length and num_targets must be >= 1, num_frozen_layers >= 0")


@dataclass(frozen=True)
class UtteranceConfig:
    """ECAPA-TDNN utterance encoder h (§3.2.3): L = len(channels) + 1 layers, d' = channels, d^L = embed_dim."""

    channels: tuple[int, ...] = (1024, 1024, 1024, 1024, 1024)  # the L-1 frame-level layers (TDNN, 3 SE-Res2Net, MFA)
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    attention_channels: int = 128
    res2net_scale: int = 8
    se_channels: int = 128
    embed_dim: int = 256  # d^L
    num_targets: int = 2000  # Q

    def __post_init__(self) -> None:
        if not len(self.channels) == len(self.kernel_sizes) == len(self.dilations) == 5:
            raise ValueError("channels, kernel_sizes and dilations need 5 entries each (speechbrain's ECAPA-TDNN)")
        if len(set(self.channels[:4])) != 1:
            raise ValueError(f"the first four ECAPA channels must be equal, got {self.channels}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a Learn2Diss model."""

    parent: ParentConfig = field(default_factory=ParentConfig)
    frame: FrameConfig = field(default_factory=FrameConfig)
    utterance: UtteranceConfig = field(default_factory=UtteranceConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.frame.num_frozen_layers < self.parent.num_layers:
            raise ValueError(
                f"frame.num_frozen_layers must be in [0, {self.parent.num_layers - 1}], "
                f"got {self.frame.num_frozen_layers}"
            )

    @property
    def num_trainable_layers(self) -> int:
        """M, the transformer layers of the frame encoder g."""
        return self.parent.num_layers - self.frame.num_frozen_layers
