"""The s3prl upstream: a Learn2Diss checkpoint as an ``UpstreamExpert`` (s3prl's example contract).

s3prl builds it as ``UpstreamExpert(ckpt=<-k>, model_config=<-g>, refresh=<-r>)``, calls it on a list
of unpadded 1-D 16 kHz waveforms and picks one key of the returned dictionary with ``-s``; every
tensor of one key has the same shape (batch, frame, dim) so that s3prl's Featurizer can take a
learned weighted sum over the list.

Keys (all at the frame rate of the parent, one frame per ``config.parent.stride`` samples):

* ``hidden_states`` / ``frame_hidden_states``: the frame-level layers, input of the first
  transformer layer then every layer's output (13 x 768-d for the base models).
* ``utt_hidden_states``: the terms of eq. 9 (right), the utterance representation the paper
  disentangles: ``A^l z^l`` for the L-1 = 5 ECAPA-TDNN per-frame layers, then the pooled ``z^L``
  repeated over the frames (6 x d^L = 256-d). Their plain sum is z̄ of eq. 9.
* ``utt_embedding``: ``z^L`` alone, repeated over the frames (one tensor, no weighted sum).
* task keys: ``pr asr ks ic sf`` = the frame layers, ``sid asv er`` = the utterance layers
  (paper §4.1: semantic tasks read g, non-semantic tasks read h).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from learn2diss.upstream.checkpoints import load_model
from learn2diss.upstream.model import InferenceOutput, Learn2Diss

FRAME_TASKS = ("pr", "asr", "ks", "ic", "sf")
UTTERANCE_TASKS = ("sid", "asv", "er")
FRAME_KEYS = ("hidden_states", "frame_hidden_states", *FRAME_TASKS)
UTTERANCE_KEYS = ("utt_hidden_states", *UTTERANCE_TASKS)
FEATURE_KEYS = (*FRAME_KEYS, *UTTERANCE_KEYS, "utt_embedding")


def check_feature_key(key: str) -> str:
    """Return ``key`` if the expert outputs it; otherwise raise ValueError listing the valid keys."""
    if key not in FEATURE_KEYS:
        raise ValueError(f"unknown upstream feature key -s {key!r}; learn2diss upstreams output: "
                         f"{', '.join(FEATURE_KEYS)}")
    return key


def utterance_layers(model: Learn2Diss, output: InferenceOutput) -> list[Tensor]:
    """The terms of eq. 9 (right) per frame: [A^1 z^1, ..., A^{L-1} z^{L-1}, z^L]; each (batch, frame, d^L)."""
    projections = model.utterance_encoder.layer_projections
    projected = [proj(z) for proj, z in zip(projections, output.utt_hidden_states, strict=True)]
    batch, frames, dim = projected[0].shape
    return [*projected, output.utt_embedding[:, None, :].expand(batch, frames, dim)]


class UpstreamExpert(nn.Module):
    """A Learn2Diss model loaded from one of our checkpoint directories (``config.yaml`` + ``model.safetensors``).

    Args:
        ckpt: the checkpoint directory (s3prl's ``-k``).
        model_config: s3prl's ``-g``; unused, the architecture is read from the checkpoint.
    """

    def __init__(self, ckpt: str | Path | None = None, model_config: str | None = None, **kwargs: object) -> None:
        super().__init__()
        if not ckpt:
            raise ValueError("the learn2diss upstream needs a checkpoint directory: pass -k CKPT_DIR")
        self.checkpoint = str(ckpt)
        self.model = load_model(ckpt)
        self.model.eval()

    def get_downsample_rates(self, key: str) -> int:
        """Samples per output frame of ``key``: the parent's convolutional stride (320 for the base models)."""
        check_feature_key(key)
        return self.model.config.parent.stride

    def forward(self, wavs: list[Tensor]) -> dict[str, list[Tensor] | Tensor]:
        """wavs: unpadded 1-D 16 kHz waveforms; returns the keys of the module docstring."""
        lengths = torch.tensor([len(wav) for wav in wavs], dtype=torch.long, device=wavs[0].device)
        padded = pad_sequence(wavs, batch_first=True)  # (batch, max_samples)
        output = self.model(padded, lengths)
        frame = list(output.frame_hidden_states)  # (batch, frame, 768) each
        utterance = utterance_layers(self.model, output)  # (batch, frame, d^L) each
        features: dict[str, list[Tensor] | Tensor] = {key: frame for key in FRAME_KEYS}
        features.update({key: utterance for key in UTTERANCE_KEYS})
        features["utt_embedding"] = utterance[-1]
        return features
