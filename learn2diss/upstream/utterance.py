"""h, the utterance-level encoder (paper §3.2.3): speechbrain's ECAPA-TDNN with its per-frame layers exposed."""

from __future__ import annotations

from dataclasses import dataclass

from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from torch import Tensor, nn

from learn2diss.upstream.config import UtteranceConfig


@dataclass
class UtteranceOutput:
    """Output of h: ``layers`` z^1..z^{L-1} (batch, frame, d'); ``embedding`` z^L (batch, d^L); ``logits`` W_h z^L."""

    layers: list[Tensor]
    embedding: Tensor
    logits: Tensor


class LayerwiseECAPA(ECAPA_TDNN):
    """speechbrain's ECAPA-TDNN that also returns the outputs of its per-frame blocks (TDNN, the SE-Res2Net blocks,
    multi-layer feature aggregation).

    speechbrain's own ``forward`` runs; forward hooks on those blocks record their outputs while
    :meth:`layers_and_embedding` is running (and only then).
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._recorded: list[Tensor] | None = None
        for block in (*self.blocks, self.mfa):
            block.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: object, output: Tensor) -> None:
        if self._recorded is not None:
            self._recorded.append(output)

    def layers_and_embedding(self, x: Tensor, relative_lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """x: (batch, frame, channel), relative_lengths: speechbrain's (batch,) share of valid frames.

        Returns the per-frame layers, each (batch, channel, frame), and the pooled embedding (batch, d^L).
        """
        self._recorded = []
        try:
            embedding = self(x, lengths=relative_lengths)  # (batch, 1, d^L)
            layers = self._recorded
        finally:
            self._recorded = None
        return layers, embedding[:, 0]


class UtteranceEncoder(nn.Module):
    """h: ECAPA-TDNN (Desplanques et al. 2020, speechbrain's implementation) with its L-1 per-frame layers
    (TDNN, three SE-Res2Net blocks, multi-layer aggregation), the pooled embedding z^L, W_h and A^l."""

    def __init__(self, config: UtteranceConfig, input_dim: int) -> None:
        super().__init__()
        self.ecapa = LayerwiseECAPA(
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
        layers, pooled = self.ecapa.layers_and_embedding(x, relative)
        return UtteranceOutput([z.transpose(1, 2) for z in layers], pooled, self.head(pooled))

    def project_layers(self, layers: list[Tensor]) -> list[Tensor]:
        """Eq. 9, the terms of the sum: A^l z^l_{i,t} for l = 1..L-1; each (batch, frame, d^L)."""
        return [proj(z) for proj, z in zip(self.layer_projections, layers, strict=True)]

    def aggregate(self, output: UtteranceOutput) -> Tensor:
        """Eq. 9, right: z̄_{i,t} = z^L_i + Σ_{l=1..L-1} A^l z^l_{i,t}; (batch, frame, d^L)."""
        return output.embedding[:, None, :] + sum(self.project_layers(output.layers))
