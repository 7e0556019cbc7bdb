"""f and g: the feature extractor and the frame-level encoder (paper §3.2.1, §3.2.2), made of the parent's modules.

Both are composed from :class:`learn2diss.upstream.parent.ParentModules` split at layer N (see
:func:`learn2diss.upstream.model.build_parts`); the adapters in them make every parent kind run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from learn2diss.upstream.parent import ConvEncoder, TransformerLayers, valid_frames


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


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward pass, its gradient times ``scale`` in the backward pass (fairseq's GradMultiply)."""
    return x * scale + x.detach() * (1.0 - scale)


class FeatureExtractor(nn.Module):
    """f (§3.2.1): the parent's waveform normalisation (where it has one), convolutional encoder and feature
    projection, then for N > 0 its positional convolution and first N transformer layers.

    Runs without gradient unless ``grad_scale`` > 0 (a parent training its own front end): then the convolutional
    encoder's gradient is multiplied by ``grad_scale`` (HuBERT's ``feature_grad_mult``).
    """

    def __init__(self, normalize: nn.Module, conv: ConvEncoder, projection: nn.Module, layer_input: nn.Module,
                 layers: TransformerLayers) -> None:
        super().__init__()
        self.normalize = normalize
        self.conv = conv
        self.projection = projection
        self.layer_input = layer_input
        self.layers = layers
        self.grad_scale = 0.0

    def front_end(self) -> tuple[nn.Module, ...]:
        """The parent's front end as far as f holds it: conv encoder, projection and (N > 0) the layer input."""
        return self.conv, self.projection, self.layer_input

    def forward(self, waveforms: Tensor, lengths: Tensor, has_padding: bool) -> Features:
        """waveforms (batch, samples), lengths (batch,) valid samples → X' and the frozen hidden states."""
        trained = bool(self.grad_scale) and torch.is_grad_enabled()
        with torch.set_grad_enabled(trained):
            waveforms = self.normalize(waveforms, lengths, has_padding)
            x, frame_lengths = self.conv(waveforms, lengths, has_padding)
            if trained and self.grad_scale != 1.0:
                x = scale_gradient(x, self.grad_scale)
            padding_mask = ~valid_frames(frame_lengths, x.shape[1])
            x = self.projection(x)
            if has_padding:
                x = x.masked_fill(padding_mask[..., None], 0.0)
            if not len(self.layers):
                return Features(x, frame_lengths, padding_mask, None, [], has_padding)
            mask = padding_mask if has_padding else None
            x = self.layer_input(x, mask)
            outputs, position_bias = self.layers(x, mask)
        return Features(outputs[-1], frame_lengths, padding_mask, position_bias, [x, *outputs], has_padding)


class FrameEncoder(nn.Module):
    """g (§3.2.2): masked frames of X' replaced by the mask embedding, the parent's layers N+1..L and W_g.

    For N = 0, g starts with the parent's positional convolution (still frozen: it belongs to the parent's front
    end, see :meth:`learn2diss.upstream.model.Learn2Diss.front_end_modules`) and its input dropout; a parent with
    the encoder layer norm after its layers (``layer_norm_first``) ends with it.
    """

    def __init__(self, mask_embedding: nn.Parameter, layer_input: nn.Module, dropout: nn.Module,
                 layers: TransformerLayers, final_norm: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.mask_embedding = mask_embedding
        self.layer_input = layer_input
        self.dropout = dropout
        self.layers = layers
        self.final_norm = final_norm
        self.head = head  # W_g

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Everything but the layer input: layers, mask embedding, W_g, and a final layer norm if any."""
        return [*self.layers.parameters(), self.mask_embedding, *self.head.parameters(),
                *self.final_norm.parameters()]

    def encode(self, features: Features, mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """The input of g's first layer and the outputs y^1..y^M of g's layers; ``mask`` (batch, frame) or None."""
        x = features.x
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        padding_mask = features.padding_mask if features.has_padding else None
        x = self.dropout(self.layer_input(x, padding_mask))
        layers, _ = self.layers(x, padding_mask, features.position_bias)
        layers[-1] = self.final_norm(layers[-1])
        return x, layers

    def forward(self, features: Features, mask: Tensor | None = None) -> FrameOutput:
        """Replace masked frames of X' by the mask embedding, run layers N+1..L, project with W_g."""
        x, layers = self.encode(features, mask)
        return FrameOutput(layers, self.head(layers[-1]), x)
