"""The Learn2Diss dual encoder (paper §3.2, Fig. 1, Table 1).

* f, the frozen feature extractor: the parent's convolutional encoder, feature projection and
  positional convolution, plus its first N transformer layers (§3.2.1); a *parent* trained by this
  code (N = 0) may train the front end instead (:meth:`Learn2Diss.train_front_end`);
* g, the frame-level encoder: the parent's layers N+1..12, span masking with a learned mask
  embedding, and W_g to K targets (§3.2.2);
* h, the utterance-level encoder: speechbrain's ECAPA-TDNN with its per-frame layers exposed,
  W_h to Q targets and the projections A^l of eq. 9 (§3.2.3).

The parent (HuBERT, WavLM, wav2vec 2.0 or data2vec audio) is built with torchaudio's wav2vec 2.0 /
WavLM modules and its parts are reused as they are; data2vec's multi-layer positional convolution is
the one part torchaudio lacks (:class:`StackedPositionalConv`). The CLUB network q_phi is
training-only and lives in :mod:`learn2diss.pretrain`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from torch import Tensor, nn
from torchaudio.models import wav2vec2_model, wavlm_model

from learn2diss.upstream.config import SAMPLE_RATE, ModelConfig, ParentConfig, UtteranceConfig


@dataclass
class Features:
    """Output X' of the frozen feature extractor f.

    Attributes:
        x: (batch, frame, dim) features.
        lengths: (batch,) valid frames.
        padding_mask: (batch, frame), True at padding.
        position_bias: WavLM's relative position bias from its first layer, or None.
        hidden_states: the N+1 frozen hidden states (input of layer 1, then each frozen layer's output);
            empty when N = 0 (g then computes the input of layer 1 from the masked X').
        has_padding: whether any utterance is shorter than the batch (known on the host: without
            padding the attention layers run without masks, so SDPA may pick its fastest kernel).
    """

    x: Tensor
    lengths: Tensor
    padding_mask: Tensor
    position_bias: Tensor | None
    hidden_states: list[Tensor]
    has_padding: bool = True


@dataclass
class FrameOutput:
    """Output of the frame encoder g: ``layers`` are y^1..y^M (batch, frame, dim); ``logits`` = W_g y^M."""

    layers: list[Tensor]
    logits: Tensor
    input_state: Tensor  # the input of g's first layer (for N = 0: after the positional convolution)


@dataclass
class UtteranceOutput:
    """Output of h: ``layers`` z^1..z^{L-1} (batch, frame, d'); ``embedding`` z^L (batch, d^L); ``logits`` W_h z^L."""

    layers: list[Tensor]
    embedding: Tensor
    logits: Tensor


@dataclass
class InferenceOutput:
    """What a downstream model reads: frame hidden states (input of layer 1 + every layer), utterance layers."""

    frame_hidden_states: list[Tensor]
    frame_lengths: Tensor
    utt_hidden_states: list[Tensor]
    utt_embedding: Tensor


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


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward pass, its gradient times ``scale`` in the backward pass (fairseq's GradMultiply)."""
    return x * scale + x.detach() * (1.0 - scale)


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


def aggregate_frame_layers(layers: list[Tensor]) -> Tensor:
    """Eq. 9, left: ȳ_{i,t} = Σ_{l=1..M} y^l_{i,t}; (batch, frame, dim)."""
    return torch.stack(layers).sum(0)


def valid_frames(lengths: Tensor, max_len: int) -> Tensor:
    """(batch, max_len) bool, True at valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def span_mask(
    lengths: Tensor, max_len: int, mask_prob: float, mask_length: int, generator: torch.Generator | None = None
) -> Tensor:
    """wav2vec 2.0 / HuBERT span masking (Baevski et al. 2020 §3.1), never on padding.

    Each utterance of ``n`` valid frames gets ``floor(mask_prob * n / mask_length + u)`` spans
    (u ~ U[0, 1)) of ``mask_length`` frames with uniform start frames; spans may overlap.

    Args:
        lengths: (batch,) valid frames.
        max_len: padded length T.
        generator: the random source (on ``lengths``'s device); None uses the global one.

    Returns:
        (batch, max_len) bool, True at masked frames.
    """
    batch = lengths.shape[0]
    device = lengths.device
    lengths_f = lengths.to(torch.float32)
    num_spans = (mask_prob * lengths_f / mask_length + torch.rand(batch, generator=generator, device=device)).long()
    max_spans = max(int(num_spans.max().item()), 1)
    last_start = (lengths - mask_length).clamp(min=0).to(torch.float32) + 1
    starts = (torch.rand(batch, max_spans, generator=generator, device=device) * last_start[:, None]).long()
    positions = starts[:, :, None] + torch.arange(mask_length, device=device)  # (batch, span, mask_length)
    keep = (torch.arange(max_spans, device=device)[None, :] < num_spans[:, None])[:, :, None]
    keep = keep & (positions < lengths[:, None, None])
    index = torch.where(keep, positions, max_len)  # dropped positions go to a spare column
    mask = torch.zeros(batch, max_len + 1, dtype=torch.bool, device=device)
    mask.scatter_(1, index.flatten(1), True)
    return mask[:, :max_len]


class UtteranceEncoder(nn.Module):
    """h: ECAPA-TDNN (Desplanques et al. 2020, speechbrain's implementation) with its L-1 per-frame layers
    (TDNN, three SE-Res2Net blocks, multi-layer aggregation), the pooled embedding z^L, W_h and A^l."""

    def __init__(self, config: UtteranceConfig, input_dim: int) -> None:
        super().__init__()
        self.ecapa = ECAPA_TDNN(
            input_size=input_dim,
            lin_neurons=config.embed_dim,
            channels=list(config.channels),
            kernel_sizes=list(config.kernel_sizes),
            dilations=list(config.dilations),
            attention_channels=config.attention_channels,
            res2net_scale=config.res2net_scale,
            se_channels=config.se_channels,
        )
        self.head = nn.Linear(config.embed_dim, config.num_targets)  # W_h
        self.layer_projections = nn.ModuleList(  # A^l, l = 1..L-1 (eq. 9)
            nn.Linear(channels, config.embed_dim, bias=False) for channels in config.channels
        )

    def forward(self, x: Tensor, lengths: Tensor) -> UtteranceOutput:
        """x: (batch, frame, input_dim); lengths: (batch,) valid frames."""
        relative = lengths.float() / x.shape[1]  # speechbrain's convention, at this boundary only (float32)
        h = self.ecapa.blocks[0](x.transpose(1, 2))  # (batch, channel, frame)
        layers = [h]
        for block in self.ecapa.blocks[1:]:
            h = block(h, lengths=relative)
            layers.append(h)
        h = self.ecapa.mfa(torch.cat(layers[1:], dim=1))
        layers.append(h)
        pooled = self.ecapa.fc(self.ecapa.asp_bn(self.ecapa.asp(h, lengths=relative)))[:, :, 0]  # (batch, d^L)
        return UtteranceOutput([z.transpose(1, 2) for z in layers], pooled, self.head(pooled))

    def project_layers(self, layers: list[Tensor]) -> list[Tensor]:
        """Eq. 9, the terms of the sum: A^l z^l_{i,t} for l = 1..L-1; each (batch, frame, d^L)."""
        return [proj(z) for proj, z in zip(self.layer_projections, layers, strict=True)]

    def aggregate(self, output: UtteranceOutput) -> Tensor:
        """Eq. 9, right: z̄_{i,t} = z^L_i + Σ_{l=1..L-1} A^l z^l_{i,t}; (batch, frame, d^L)."""
        return output.embedding[:, None, :] + sum(self.project_layers(output.layers))


class Learn2Diss(nn.Module):
    """Frozen feature extractor f, frame encoder g and utterance encoder h (paper §3.2)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        parent = build_parent(config.parent)
        transformer = parent.encoder.transformer
        self.feature_extractor = parent.feature_extractor
        self.feature_projection = parent.encoder.feature_projection
        self.pos_conv_embed = transformer.pos_conv_embed
        self.encoder_layer_norm = transformer.layer_norm
        # torchaudio's Transformer.layer_norm_first is True when the layer norm comes *before* the layers.
        self.norm_before_layers = transformer.layer_norm_first
        self.layers = transformer.layers
        self.layer_dropout = transformer.dropout
        dim = config.parent.embed_dim
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())
        self.frame_head = nn.Linear(dim, config.frame.num_targets)  # W_g
        self.utterance_encoder = UtteranceEncoder(config.utterance, dim)
        self._is_wavlm = config.parent.kind == "wavlm"
        self._stacked_pos_conv = isinstance(self.pos_conv_embed, StackedPositionalConv)
        self.front_end_grad_scale = 0.0  # 0: f frozen (Learn2Diss); > 0: see train_front_end
        for module in self.frozen_modules():
            module.requires_grad_(False)

    @property
    def num_frozen_layers(self) -> int:
        return self.config.frame.num_frozen_layers

    def front_end_modules(self) -> Iterator[nn.Module]:
        """The front end of f: conv encoder, feature projection, positional conv and the pre-layer norm."""
        yield from (self.feature_extractor, self.feature_projection, self.pos_conv_embed)
        if self.norm_before_layers:
            yield self.encoder_layer_norm

    def frozen_modules(self) -> Iterator[nn.Module]:
        """The modules of f: the front end (unless :meth:`train_front_end` was called) and layers 1..N."""
        if not self.front_end_grad_scale:
            yield from self.front_end_modules()
        yield from self.layers[: self.num_frozen_layers]

    def train_front_end(self, grad_scale: float) -> list[nn.Parameter]:
        """Make the front end trainable, for pretraining a *parent* (HuBERT, WavLM train theirs); returns its
        parameters. The convolutional encoder's gradient is multiplied by ``grad_scale`` (HuBERT's
        ``feature_grad_mult``, 0.1 for its base models); the projection and positional convolution get the full
        gradient. Learn2Diss itself keeps f frozen (§3.2.1), so this needs N = 0 frozen layers.
        """
        if self.num_frozen_layers:
            raise ValueError(f"a trainable front end needs num_frozen_layers = 0 (a parent), got {self.num_frozen_layers}")
        if grad_scale <= 0:
            raise ValueError(f"grad_scale must be > 0, got {grad_scale}")
        self.front_end_grad_scale = float(grad_scale)
        params = [p for module in self.front_end_modules() for p in module.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.train(self.training)
        return params

    def frame_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of g: layers N+1..12, the mask embedding, W_g (and a final layer norm if any)."""
        params = [p for layer in self.layers[self.num_frozen_layers :] for p in layer.parameters()]
        params += [self.mask_embedding, *self.frame_head.parameters()]
        if not self.norm_before_layers:
            params += list(self.encoder_layer_norm.parameters())
        return params

    def utterance_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of h: ECAPA-TDNN, W_h and A^l."""
        return list(self.utterance_encoder.parameters())

    def train(self, mode: bool = True) -> Learn2Diss:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # f never uses dropout
        return self

    def check_input(
        self, waveforms: Tensor, lengths: Tensor | None, sample_rate: int = SAMPLE_RATE
    ) -> tuple[Tensor, bool]:
        """Validate a batch; returns ``lengths`` (filled in when None) and whether the batch has padding.

        Raises ValueError saying what is wrong. One device synchronisation for all the checks.
        """
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"Learn2Diss takes {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}; resample first")
        if waveforms.ndim != 2:
            raise ValueError(
                f"waveforms must be (batch, samples) mono 16 kHz audio, got shape {tuple(waveforms.shape)}"
                + ("; average or pick one channel first" if waveforms.ndim == 3 else "")
            )
        if not waveforms.is_floating_point():
            raise ValueError(f"waveforms must be floating point, got {waveforms.dtype}")
        batch, samples = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=waveforms.device)
        if lengths.shape != (batch,) or lengths.is_floating_point():
            raise ValueError(f"lengths must be an integer tensor of shape ({batch},), got {tuple(lengths.shape)}")
        bad = ~torch.isfinite(waveforms).all(dim=1)
        low, high, num_bad = torch.stack([lengths.min(), lengths.max(), bad.sum()]).tolist()
        if low <= 0 or high > samples:
            raise ValueError(f"lengths must be in [1, {samples}], got {lengths.tolist()}")
        if low < self.min_samples:
            raise ValueError(f"utterance too short: {low} samples, need at least {self.min_samples}")
        if num_bad:
            raise ValueError(f"waveforms contain NaN or inf (batch items {bad.nonzero().flatten().tolist()})")
        return lengths, low < samples

    @property
    def min_samples(self) -> int:
        """The shortest input: enough frames for the widest ECAPA-TDNN convolution (it pads by reflection)."""
        utt = self.config.utterance
        frames = max(d * (k - 1) // 2 for k, d in zip(utt.kernel_sizes, utt.dilations, strict=True)) + 1
        span = 1
        for _, kernel, stride in reversed(self.config.parent.conv_layers):
            span = (span - 1) * stride + kernel
        return span + (frames - 1) * self.config.parent.stride

    def _attention_mask(self, padding_mask: Tensor) -> Tensor:
        """HuBERT's layers take a (batch, 1, T, T) boolean mask, True = attend (a broadcast view, no copy)."""
        batch, frames = padding_mask.shape
        return (~padding_mask)[:, None, None, :].expand(batch, 1, frames, frames)

    def _run_layers(
        self, x: Tensor, layers: nn.ModuleList, padding_mask: Tensor | None, position_bias: Tensor | None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Run transformer ``layers``; ``padding_mask`` None means no padding (no attention mask at all)."""
        outputs = []
        if self._is_wavlm:
            key_padding = None
            if padding_mask is not None:
                key_padding = torch.zeros(padding_mask.shape, dtype=x.dtype, device=x.device)
                key_padding = key_padding.masked_fill(padding_mask, float("-inf"))
        else:
            attention_mask = None if padding_mask is None else self._attention_mask(padding_mask)
        for layer in layers:
            if self._is_wavlm:
                x, position_bias = layer(x, None, position_bias=position_bias, key_padding_mask=key_padding)
            else:
                x, _ = layer(x, attention_mask)
            outputs.append(x)
        return outputs, position_bias

    def _layer_input(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Positional convolution and (for the base models) the encoder layer norm: the input of layer 1.

        ``x`` is zero at padding; ``padding_mask`` (None without padding) re-zeroes it inside data2vec's
        stacked positional convolution.
        """
        x = x + (self.pos_conv_embed(x, padding_mask) if self._stacked_pos_conv else self.pos_conv_embed(x))
        return self.encoder_layer_norm(x) if self.norm_before_layers else x

    def _conv_features(self, waveforms: Tensor, lengths: Tensor, has_padding: bool) -> tuple[Tensor, Tensor]:
        """The convolutional encoder: (batch, frame, channel) features and valid frames.

        With padding, a group-norm first layer normalises over each utterance's valid frames only.
        """
        first = self.feature_extractor.conv_layers[0]
        if not (has_padding and isinstance(first.layer_norm, nn.GroupNorm)):
            return self.feature_extractor(waveforms, lengths)
        x = first.conv(waveforms[:, None, :])
        lengths = torch.div(lengths - first.kernel_size, first.stride, rounding_mode="floor") + 1
        x = F.gelu(masked_group_norm(x, first.layer_norm, lengths))
        for layer in self.feature_extractor.conv_layers[1:]:
            x, lengths = layer(x, lengths)
        return x.transpose(1, 2), lengths

    def extract(self, waveforms: Tensor, lengths: Tensor | None = None, sample_rate: int = SAMPLE_RATE) -> Features:
        """f: waveforms (batch, samples) at 16 kHz, lengths (batch,) valid samples → X' (no gradient, unless the
        front end is trained: :meth:`train_front_end`).

        Parents trained on normalised waveforms (``normalize_waveform``) get each utterance normalised here,
        so training, the s3prl expert and feature extraction all see what the parent expects.
        """
        lengths, has_padding = self.check_input(waveforms, lengths, sample_rate)
        trained = bool(self.front_end_grad_scale) and torch.is_grad_enabled()
        with torch.set_grad_enabled(trained):
            if self.config.parent.normalize_waveform:
                waveforms = normalize_waveforms(waveforms, lengths, has_padding)
            x, frame_lengths = self._conv_features(waveforms, lengths, has_padding)
            if trained and self.front_end_grad_scale != 1.0:
                x = scale_gradient(x, self.front_end_grad_scale)
            padding_mask = ~valid_frames(frame_lengths, x.shape[1])
            x = self.feature_projection(x)
            if has_padding:
                x = x.masked_fill(padding_mask[..., None], 0.0)
            hidden_states: list[Tensor] = []
            position_bias = None
            if self.num_frozen_layers:
                x = self._layer_input(x, padding_mask if has_padding else None)
                outputs, position_bias = self._run_layers(
                    x, self.layers[: self.num_frozen_layers], padding_mask if has_padding else None, None
                )
                hidden_states = [x, *outputs]
                x = outputs[-1]
        return Features(x, frame_lengths, padding_mask, position_bias, hidden_states, has_padding)

    def sample_mask(self, features: Features, generator: torch.Generator | None = None) -> Tensor:
        """Span mask over X' with the configured probability and span length; (batch, frame) bool."""
        frame = self.config.frame
        return span_mask(features.lengths, features.x.shape[1], frame.mask_prob, frame.mask_length, generator)

    def _frame_layers(self, features: Features, mask: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        """The input of g's first layer and the outputs y^1..y^M of g's layers."""
        x = features.x
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        padding_mask = features.padding_mask if features.has_padding else None
        if not self.num_frozen_layers:
            x = self.layer_dropout(self._layer_input(x, padding_mask))
        layers, _ = self._run_layers(x, self.layers[self.num_frozen_layers :], padding_mask, features.position_bias)
        if not self.norm_before_layers:
            layers[-1] = self.encoder_layer_norm(layers[-1])
        return x, layers

    def encode_frames(self, features: Features, mask: Tensor | None = None) -> FrameOutput:
        """g: replace masked frames of X' by the mask embedding, run layers N+1..12, project with W_g."""
        x, layers = self._frame_layers(features, mask)
        return FrameOutput(layers, self.frame_head(layers[-1]), x)

    def encode_utterance(self, x: Tensor, lengths: Tensor) -> UtteranceOutput:
        """h on features ``x`` (batch, frame, dim) with ``lengths`` (batch,) valid frames."""
        return self.utterance_encoder(x, lengths)

    def aggregate_utterance_layers(self, output: UtteranceOutput) -> Tensor:
        """Eq. 9, right: z̄ (batch, frame, d^L)."""
        return self.utterance_encoder.aggregate(output)

    def utterance_hidden_states(self, output: UtteranceOutput) -> list[Tensor]:
        """Inference of the utterance path: the terms of eq. 9 (right) per frame, [A^1 z^1, ..., A^{L-1} z^{L-1},
        z^L repeated over the frames], each (batch, frame, d^L); their plain sum is z̄."""
        projected = self.utterance_encoder.project_layers(output.layers)
        batch, frames, dim = projected[0].shape
        return [*projected, output.embedding[:, None, :].expand(batch, frames, dim)]

    def frame_hidden_states(self, features: Features) -> list[Tensor]:
        """Inference of the frame path: the input of layer 1 and every layer's output (frozen ones first)."""
        layer_input, layers = self._frame_layers(features, None)
        return [*(features.hidden_states or [layer_input]), *layers]

    def forward(
        self, waveforms: Tensor, lengths: Tensor | None = None, sample_rate: int = SAMPLE_RATE
    ) -> InferenceOutput:
        """Inference without masking: every frame hidden state, the utterance layers and the pooled embedding."""
        features = self.extract(waveforms, lengths, sample_rate)
        utterance = self.encode_utterance(features.x, features.lengths)
        return InferenceOutput(
            frame_hidden_states=self.frame_hidden_states(features),
            frame_lengths=features.lengths,
            utt_hidden_states=utterance.layers,
            utt_embedding=utterance.embedding,
        )
