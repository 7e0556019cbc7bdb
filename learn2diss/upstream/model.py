"""The Learn2Diss dual encoder (paper §3.2, Fig. 1, Table 1): f, g and h composed.

* f, the frozen feature extractor (:class:`~learn2diss.upstream.frames.FeatureExtractor`): the parent's
  convolutional encoder, feature projection and positional convolution, plus its first N transformer layers
  (§3.2.1); a *parent* trained by this code (N = 0) may train the front end instead (:meth:`Learn2Diss.train_front_end`);
* g, the frame-level encoder (:class:`~learn2diss.upstream.frames.FrameEncoder`): the parent's layers N+1..L,
  span masking with a learned mask embedding, and W_g to K targets (§3.2.2);
* h, the utterance-level encoder (:class:`~learn2diss.upstream.utterance.UtteranceEncoder`): speechbrain's
  ECAPA-TDNN with its per-frame layers exposed, W_h to Q targets and the projections A^l of eq. 9 (§3.2.3).

:func:`build_parts` makes the three from a :class:`ModelConfig`: torchaudio builds the parent (HuBERT, WavLM,
wav2vec 2.0 or data2vec audio) and :mod:`learn2diss.upstream.parent` wraps its modules in the adapters of its
kind. :class:`Learn2Diss` runs them and knows nothing of the parent kind. The CLUB network q_phi is
training-only and lives in :mod:`learn2diss.club`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from learn2diss.errors import InputError
from learn2diss.upstream import formats
from learn2diss.upstream.config import SAMPLE_RATE, ModelConfig
from learn2diss.upstream.frames import FeatureExtractor, Features, FrameEncoder, FrameOutput
from learn2diss.upstream.parent import Unchanged, parent_modules
from learn2diss.upstream.utterance import UtteranceEncoder, UtteranceOutput


@dataclass
class InferenceOutput:
    """What a downstream model reads: frame hidden states (input of layer 1 + every layer), utterance layers."""

    frame_hidden_states: list[Tensor]
    frame_lengths: Tensor
    utt_hidden_states: list[Tensor]
    utt_embedding: Tensor


def aggregate_frame_layers(layers: list[Tensor]) -> Tensor:
    """Eq. 9, left: ȳ_{i,t} = Σ_{l=1..M} y^l_{i,t}; (batch, frame, dim)."""
    return torch.stack(layers).sum(0)


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


def build_parts(config: ModelConfig) -> tuple[FeatureExtractor, FrameEncoder, UtteranceEncoder]:
    """Randomly initialised f, g and h of ``config``: the parent's modules split at layer N (the positional
    convolution goes with layer 1: to f for N > 0, to the start of g for N = 0), g's mask embedding and W_g, h."""
    parent = parent_modules(config.parent)
    n, dim = config.frame.num_frozen_layers, config.parent.embed_dim
    f = FeatureExtractor(parent.normalize, parent.conv, parent.projection,
                         parent.layer_input if n else Unchanged(), parent.layers[:n])
    mask_embedding = nn.Parameter(torch.empty(dim).uniform_())
    g = FrameEncoder(mask_embedding, Unchanged() if n else parent.layer_input, nn.Identity() if n else parent.dropout,
                     parent.layers[n:], parent.final_norm, nn.Linear(dim, config.frame.num_targets))
    return f, g, UtteranceEncoder(config.utterance, dim)


def _read_first_layout(module: Learn2Diss, state_dict: dict[str, Tensor], prefix: str, *_: object) -> None:
    """``load_state_dict`` pre-hook: weights named in our first layout (the parent's modules flat on the model)
    are renamed to the current names, so checkpoints and training states written in it still load."""
    old = [k for k in state_dict if k.startswith(prefix) and formats.in_first_layout(k.removeprefix(prefix))]
    if old:
        current = formats.from_first_layout({k.removeprefix(prefix): state_dict.pop(k) for k in old}, module.config)
        state_dict.update({prefix + k: v for k, v in current.items()})


class Learn2Diss(nn.Module):
    """Frozen feature extractor f, frame encoder g and utterance encoder h (paper §3.2).

    Args:
        config: the architecture.
        parts: (f, g, h) to compose instead of the ones :func:`build_parts` makes (e.g. a stand-in in a test).
    """

    def __init__(self, config: ModelConfig,
                 parts: tuple[FeatureExtractor, FrameEncoder, UtteranceEncoder] | None = None) -> None:
        super().__init__()
        self.config = config
        self.f, self.g, self.h = parts or build_parts(config)
        for module in self.frozen_modules():
            module.requires_grad_(False)
        self.register_load_state_dict_pre_hook(_read_first_layout)

    @property
    def num_frozen_layers(self) -> int:
        return self.config.frame.num_frozen_layers

    def front_end_modules(self) -> Iterator[nn.Module]:
        """The parent's front end: conv encoder, feature projection, positional conv and the pre-layer norm
        (all in f, except that for N = 0 the positional convolution and norm start g)."""
        yield from self.f.front_end()
        yield self.g.layer_input

    def frozen_modules(self) -> Iterator[nn.Module]:
        """f, and for N = 0 the positional convolution that starts g; none after :meth:`train_front_end`."""
        if not self.f.grad_scale:
            yield self.f
            yield self.g.layer_input

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
        self.f.grad_scale = float(grad_scale)
        params = [p for module in self.front_end_modules() for p in module.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.train(self.training)
        return params

    def frame_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of g: layers N+1..L, the mask embedding, W_g (and a final layer norm if any)."""
        return self.g.trainable_parameters()

    def utterance_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of h: ECAPA-TDNN, W_h and A^l."""
        return list(self.h.parameters())

    def train(self, mode: bool = True) -> Learn2Diss:
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # f never uses dropout
        return self

    def check_input(
        self, waveforms: Tensor, lengths: Tensor | None, sample_rate: int = SAMPLE_RATE
    ) -> tuple[Tensor, bool]:
        """Validate a batch; returns ``lengths`` (filled in when None) and whether the batch has padding.

        Raises :class:`~learn2diss.errors.InputError` (a ``ValueError``) saying what is wrong. One device synchronisation for all the checks.
        """
        if sample_rate != SAMPLE_RATE:
            raise InputError(f"Learn2Diss takes {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}; resample first")
        if waveforms.ndim != 2:
            raise InputError(
                f"waveforms must be (batch, samples) mono 16 kHz audio, got shape {tuple(waveforms.shape)}"
                + ("; average or pick one channel first" if waveforms.ndim == 3 else "")
            )
        if not waveforms.is_floating_point():
            raise InputError(f"waveforms must be floating point, got {waveforms.dtype}")
        batch, samples = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=waveforms.device)
        if lengths.shape != (batch,) or lengths.is_floating_point():
            raise InputError(f"lengths must be an integer tensor of shape ({batch},), got {tuple(lengths.shape)}")
        bad = ~torch.isfinite(waveforms).all(dim=1)
        low, high, num_bad = torch.stack([lengths.min(), lengths.max(), bad.sum()]).tolist()
        if low <= 0 or high > samples:
            raise InputError(f"lengths must be in [1, {samples}], got {lengths.tolist()}")
        if low < self.min_samples:
            raise InputError(f"utterance too short: {low} samples, need at least {self.min_samples}")
        if num_bad:
            raise InputError(f"waveforms contain NaN or inf (batch items {bad.nonzero().flatten().tolist()})")
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

    def extract(self, waveforms: Tensor, lengths: Tensor | None = None, sample_rate: int = SAMPLE_RATE) -> Features:
        """f: waveforms (batch, samples) at 16 kHz, lengths (batch,) valid samples → X' (no gradient, unless the
        front end is trained: :meth:`train_front_end`).

        Parents trained on normalised waveforms (``normalize_waveform``) get each utterance normalised here,
        so training, the s3prl expert and feature extraction all see what the parent expects.
        """
        lengths, has_padding = self.check_input(waveforms, lengths, sample_rate)
        return self.f(waveforms, lengths, has_padding)

    def sample_mask(self, features: Features, generator: torch.Generator | None = None) -> Tensor:
        """Span mask over X' with the configured probability and span length; (batch, frame) bool."""
        frame = self.config.frame
        return span_mask(features.lengths, features.x.shape[1], frame.mask_prob, frame.mask_length, generator)

    def encode_frames(self, features: Features, mask: Tensor | None = None) -> FrameOutput:
        """g: replace masked frames of X' by the mask embedding, run layers N+1..L, project with W_g."""
        return self.g(features, mask)

    def encode_utterance(self, x: Tensor, lengths: Tensor) -> UtteranceOutput:
        """h on features ``x`` (batch, frame, dim) with ``lengths`` (batch,) valid frames."""
        return self.h(x, lengths)

    def aggregate_utterance_layers(self, output: UtteranceOutput) -> Tensor:
        """Eq. 9, right: z̄ (batch, frame, d^L)."""
        return self.h.aggregate(output)

    def utterance_hidden_states(self, output: UtteranceOutput) -> list[Tensor]:
        """Inference of the utterance path: the terms of eq. 9 (right) per frame, [A^1 z^1, ..., A^{L-1} z^{L-1},
        z^L repeated over the frames], each (batch, frame, d^L); their plain sum is z̄."""
        projected = self.h.project_layers(output.layers)
        batch, frames, dim = projected[0].shape
        return [*projected, output.embedding[:, None, :].expand(batch, frames, dim)]

    def frame_hidden_states(self, features: Features) -> list[Tensor]:
        """Inference of the frame path: the input of layer 1 and every layer's output (frozen ones first)."""
        layer_input, layers = self.g.encode(features)
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
