"""The parent's modules, as torchaudio builds them, and the adapters that make every parent kind look alike.

torchaudio's ``wav2vec2_model`` / ``wavlm_model`` build the parent (HuBERT, wav2vec 2.0, data2vec audio or
WavLM); :func:`parent_modules` takes its modules and wraps each in the adapter its kind and config need, once,
at build time, so that f and g (:mod:`learn2diss.upstream.frames`) call every parent the same way:

* :class:`WavLMLayers` / :class:`TransformerLayers`: WavLM's layers take a key-padding mask and hand on the
  relative position bias that the first layer computes (across the f/g split too); the others take a
  boolean attention mask;
* :class:`PaddedLayerInput` / :class:`LayerInput`: data2vec's stacked positional convolution
  (:class:`StackedPositionalConv`) needs the padding mask, torchaudio's single convolution does not;
* :class:`GroupNormConvEncoder` / :class:`ConvEncoder`: the base models' group-norm front end normalises
  over each utterance's valid frames in a padded batch;
* :class:`WaveformNormalization` / :class:`Unchanged`: the Large models and data2vec take waveforms
  normalised per utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.models import wav2vec2_model, wavlm_model
from torchaudio.models.wav2vec2.components import FeatureExtractor

from learn2diss.upstream.config import ParentConfig


def valid_frames(lengths: Tensor, max_len: int) -> Tensor:
    """(batch, max_len) bool, True at valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalize_waveforms(waveforms: Tensor, lengths: Tensor, has_padding: bool) -> Tensor:
    """Zero mean and unit variance per utterance over its valid samples; padding stays 0.

    What the Large models and data2vec were trained on (fairseq ``task.normalize``, Microsoft WavLM
    ``cfg.normalize``: ``F.layer_norm(wav, wav.shape)``, eps 1e-5).
    """
    if not has_padding:
        return F.layer_norm(waveforms, waveforms.shape[1:])
    valid = valid_frames(lengths, waveforms.shape[1])
    count = lengths[:, None].to(waveforms.dtype)
    mean = (waveforms * valid).sum(1, keepdim=True) / count
    var = ((waveforms - mean).square() * valid).sum(1, keepdim=True) / count
    return ((waveforms - mean) * torch.rsqrt(var + 1e-5)).masked_fill(~valid, 0.0)


def masked_group_norm(x: Tensor, norm: nn.GroupNorm, lengths: Tensor) -> Tensor:
    """The base models' first-conv group norm (one group per channel, over time) over the valid frames only.

    x: (batch, channel, frame). Equals ``norm(x)`` on an utterance without padding; on a padded batch it
    gives each utterance what it gets alone (``norm`` would average the padding in).
    """
    valid = valid_frames(lengths, x.shape[2])[:, None, :]
    count = lengths[:, None, None].to(x.dtype)
    mean = (x * valid).sum(2, keepdim=True) / count
    var = ((x - mean).square() * valid).sum(2, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]


class StackedPositionalConv(nn.Module):
    """data2vec audio's positional embedding (fairseq ``pos_conv_depth`` > 1, HF ``Data2VecAudioPositionalConvEmbedding``).

    ``num_layers`` blocks of a grouped convolution (no weight norm), a layer norm without affine parameters
    and GELU. Padded frames are zeroed again before every block, so that a padded batch gives each
    utterance the output it gets alone (fairseq and HF zero them before the first block only).
    """

    def __init__(self, dim: int, kernel_size: int, groups: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleDict({"conv": nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)})
            for _ in range(num_layers)
        )
        self.num_remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (batch, frame, dim); padding_mask: (batch, frame), True at padding, or None."""
        x = x.transpose(1, 2)
        for layer in self.layers:
            if padding_mask is not None:
                x = x.masked_fill(padding_mask[:, None, :], 0.0)
            x = layer["conv"](x)
            if self.num_remove:
                x = x[..., : -self.num_remove]
            x = F.gelu(F.layer_norm(x.transpose(1, 2), x.shape[1:2]).transpose(1, 2))
        return x.transpose(1, 2)


def build_parent(config: ParentConfig) -> nn.Module:
    """A randomly initialised torchaudio wav2vec 2.0 (HuBERT, wav2vec 2.0, data2vec) or WavLM model."""
    common = dict(
        extractor_mode=config.extractor_mode,
        extractor_conv_layer_config=[tuple(layer) for layer in config.conv_layers],
        extractor_conv_bias=config.conv_bias,
        encoder_embed_dim=config.embed_dim,
        encoder_projection_dropout=config.dropout,
        encoder_pos_conv_kernel=config.pos_conv_kernel,
        encoder_pos_conv_groups=config.pos_conv_groups,
        encoder_num_layers=config.num_layers,
        encoder_num_heads=config.num_heads,
        encoder_attention_dropout=config.attention_dropout,
        encoder_ff_interm_features=config.ffn_dim,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=config.dropout,
        encoder_layer_norm_first=config.layer_norm_first,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    if config.kind == "wavlm":
        return wavlm_model(**common, encoder_num_buckets=config.num_buckets, encoder_max_distance=config.max_distance)
    model = wav2vec2_model(**common)
    if config.pos_conv_layers > 1:
        model.encoder.transformer.pos_conv_embed = StackedPositionalConv(
            config.embed_dim, config.pos_conv_kernel, config.pos_conv_groups, config.pos_conv_layers
        )
    return model


class Unchanged(nn.Module):
    """A stage that a parent or a split does not have: returns its input (the context arguments are ignored)."""

    def forward(self, x: Tensor, *context: object) -> Tensor:
        return x


class WaveformNormalization(nn.Module):
    """:func:`normalize_waveforms` as a stage: waveforms (batch, samples), lengths, has_padding → waveforms."""

    def forward(self, waveforms: Tensor, lengths: Tensor, has_padding: bool) -> Tensor:
        return normalize_waveforms(waveforms, lengths, has_padding)


class ConvEncoder(FeatureExtractor):
    """The parent's convolutional encoder (torchaudio's): waveforms (batch, samples) → (batch, frame, channel)
    features and valid frames. With layer norm in every block, a padded batch needs nothing more."""

    def forward(self, x: Tensor, length: Tensor | None, has_padding: bool = False) -> tuple[Tensor, Tensor | None]:
        return super().forward(x, length)


class GroupNormConvEncoder(ConvEncoder):
    """The base models' encoder: the first block's group norm (one group per channel, over time) normalises a
    padded batch over each utterance's valid frames only (:func:`masked_group_norm`)."""

    def forward(self, x: Tensor, length: Tensor | None, has_padding: bool = False) -> tuple[Tensor, Tensor | None]:
        if not has_padding or length is None:
            return super().forward(x, length)
        first = self.conv_layers[0]
        h = first.conv(x[:, None, :])
        length = torch.div(length - first.kernel_size, first.stride, rounding_mode="floor") + 1
        h = F.gelu(masked_group_norm(h, first.layer_norm, length))
        for layer in self.conv_layers[1:]:
            h, length = layer(h, length)
        return h.transpose(1, 2), length


class LayerInput(nn.Module):
    """The input of the first transformer layer: x plus its positional convolution, then the encoder layer norm
    where the parent applies it before the layers (the base models; ``nn.Identity`` otherwise)."""

    def __init__(self, pos_conv: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.pos_conv = pos_conv
        self.norm = norm

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """x: (batch, frame, dim), zero at padding; padding_mask: (batch, frame), True at padding, or None."""
        return self.norm(x + self.pos_conv(x))


class PaddedLayerInput(LayerInput):
    """:class:`LayerInput` around :class:`StackedPositionalConv`, which zeroes the padding before each block."""

    def forward(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        return self.norm(x + self.pos_conv(x, padding_mask))


def attention_mask(padding_mask: Tensor) -> Tensor:
    """torchaudio's (batch, 1, T, T) boolean attention mask, True = attend (a broadcast view, no copy)."""
    batch, frames = padding_mask.shape
    return (~padding_mask)[:, None, None, :].expand(batch, 1, frames, frames)


class TransformerLayers(nn.ModuleList):
    """Transformer layers of a HuBERT, wav2vec 2.0 or data2vec parent (torchaudio's ``EncoderLayer``s)."""

    def forward(
        self, x: Tensor, padding_mask: Tensor | None, position_bias: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Every layer's output; ``padding_mask`` None means no padding (no attention mask at all).

        ``position_bias`` is passed through unchanged: only WavLM has one (:class:`WavLMLayers`).
        """
        mask = None if padding_mask is None else attention_mask(padding_mask)
        outputs = []
        for layer in self:
            x, _ = layer(x, mask)
            outputs.append(x)
        return outputs, position_bias


class WavLMLayers(TransformerLayers):
    """WavLM's layers: an additive key-padding mask, and the gated relative position bias, which the parent's first
    layer computes, handed to each later layer (when layer 1 is in f, g gets it through ``Features.position_bias``)."""

    def forward(
        self, x: Tensor, padding_mask: Tensor | None, position_bias: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        key_padding = None
        if padding_mask is not None:
            key_padding = torch.zeros(padding_mask.shape, dtype=x.dtype, device=x.device)
            key_padding = key_padding.masked_fill(padding_mask, float("-inf"))
        outputs = []
        for layer in self:
            x, position_bias = layer(x, None, position_bias=position_bias, key_padding_mask=key_padding)
            outputs.append(x)
        return outputs, position_bias


@dataclass
class ParentModules:
    """The parent's modules in the order they run, each in the adapter its parent needs."""

    normalize: nn.Module  # waveforms, lengths, has_padding -> waveforms
    conv: ConvEncoder
    projection: nn.Module  # torchaudio's FeatureProjection (layer norm, linear, dropout)
    layer_input: LayerInput
    dropout: nn.Module  # after the layer input (torchaudio's Transformer.dropout)
    layers: TransformerLayers
    final_norm: nn.Module  # the encoder layer norm of a parent that applies it after the layers, else nn.Identity


def parent_modules(config: ParentConfig) -> ParentModules:
    """A random parent of ``config`` (torchaudio builds it), its modules wrapped in the adapters of its kind.

    Every difference between parents is chosen here, once: nothing downstream tests the kind.
    """
    parent = build_parent(config)
    transformer = parent.encoder.transformer
    norm_before_layers = transformer.layer_norm_first  # torchaudio: True when the layer norm precedes layer 1
    input_class = PaddedLayerInput if config.pos_conv_layers > 1 else LayerInput
    conv_class = GroupNormConvEncoder if config.extractor_mode == "group_norm" else ConvEncoder
    return ParentModules(
        normalize=WaveformNormalization() if config.normalize_waveform else Unchanged(),
        conv=conv_class(parent.feature_extractor.conv_layers),
        projection=parent.encoder.feature_projection,
        layer_input=input_class(transformer.pos_conv_embed, transformer.layer_norm if norm_before_layers else nn.Identity()),
        dropout=transformer.dropout,
        layers=(WavLMLayers if config.kind == "wavlm" else TransformerLayers)(transformer.layers),
        final_norm=nn.Identity() if norm_before_layers else transformer.layer_norm,
    )
