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

The returned mapping is lazy (:class:`ExpertFeatures`): f runs in ``forward`` (which also validates
the input), g only when a frame key is read and h only when an utterance key is read, so a frame-level task never pays for the
ECAPA-TDNN and an utterance-level task never runs g's layers. The values are the tensors an eager
forward gives (same operations), computed under the gradient, inference and autocast modes that
were active when ``forward`` was called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor, nn

from learn2diss.errors import InputError
from learn2diss.upstream.checkpoints import load_model
from learn2diss.upstream.model import Features, Learn2Diss
from learn2diss.upstream.padding import pad_waveforms

FRAME_TASKS = ("pr", "asr", "ks", "ic", "sf")
UTTERANCE_TASKS = ("sid", "asv", "er")
T = TypeVar("T")
FRAME_KEYS = ("hidden_states", "frame_hidden_states", *FRAME_TASKS)
UTTERANCE_KEYS = ("utt_hidden_states", *UTTERANCE_TASKS)
FEATURE_KEYS = (*FRAME_KEYS, *UTTERANCE_KEYS, "utt_embedding")


def check_feature_key(key: str) -> str:
    """Return ``key`` if the expert outputs it; otherwise raise ValueError listing the valid keys."""
    if key not in FEATURE_KEYS:
        raise InputError(f"unknown upstream feature key -s {key!r}; learn2diss upstreams output: "
                         f"{', '.join(FEATURE_KEYS)}")
    return key


class _Modes:
    """The autograd, inference and autocast modes active at construction, to re-enter later."""

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self.grad = torch.is_grad_enabled()
        self.inference = torch.is_inference_mode_enabled()
        self.autocast = torch.is_autocast_enabled(device_type)
        self.dtype = torch.get_autocast_dtype(device_type)

    def __call__(self, compute: Callable[[], T]) -> T:
        with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad), \
                torch.autocast(self.device_type, dtype=self.dtype, enabled=self.autocast):
            return compute()


class ExpertFeatures(Mapping[str, "list[Tensor] | Tensor"]):
    """The expert's output keys over the output of f: the frame group (g) and the utterance group (h) are
    each computed on the first read of one of their keys. Listing or testing keys computes nothing."""

    def __init__(self, model: Learn2Diss, features: Features) -> None:
        self._model, self._features = model, features
        self._modes = _Modes(features.x.device.type)
        self._groups: dict[str, list[Tensor]] = {}

    def _group(self, level: str) -> list[Tensor]:
        if level not in self._groups:
            model, features = self._model, self._features
            if level == "frame":
                compute = lambda: model.frame_hidden_states(features)  # noqa: E731
            else:
                compute = lambda: model.utterance_hidden_states(  # noqa: E731
                    model.encode_utterance(features.x, features.lengths))
            self._groups[level] = self._modes(compute)
        return self._groups[level]

    @property
    def computed(self) -> tuple[str, ...]:
        """The groups computed so far (``frame``, ``utterance``)."""
        return tuple(self._groups)

    def __getitem__(self, key: str) -> list[Tensor] | Tensor:
        if key in FRAME_KEYS:
            return self._group("frame")
        if key in UTTERANCE_KEYS:
            return self._group("utterance")
        if key == "utt_embedding":
            return self._group("utterance")[-1]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in FEATURE_KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(FEATURE_KEYS)

    def __len__(self) -> int:
        return len(FEATURE_KEYS)


class UpstreamExpert(nn.Module):
    """A Learn2Diss model loaded from one of our checkpoint directories (``config.yaml`` + ``model.safetensors``).

    Args:
        ckpt: the checkpoint directory (s3prl's ``-k``).
        model_config: s3prl's ``-g``; unused, the architecture is read from the checkpoint.
    """

    def __init__(self, ckpt: str | Path | None = None, model_config: str | None = None, **kwargs: object) -> None:
        super().__init__()
        if not ckpt:
            raise InputError("the learn2diss upstream needs a checkpoint directory: pass -k CKPT_DIR")
        self.checkpoint = str(ckpt)
        self.model = load_model(ckpt)
        self.model.eval()

    def get_downsample_rates(self, key: str) -> int:
        """Samples per output frame of ``key``: the parent's convolutional stride (320 for the base models)."""
        check_feature_key(key)
        return self.model.config.parent.stride

    def forward(self, wavs: list[Tensor]) -> ExpertFeatures:
        """wavs: unpadded 1-D 16 kHz waveforms; returns the keys of the module docstring (computed when read).

        Frame keys: (batch, frame, 768) each; utterance keys: (batch, frame, d^L) each.
        """
        padded, lengths = pad_waveforms(wavs)  # (batch, max_samples), (batch,)
        return ExpertFeatures(self.model, self.model.extract(padded, lengths))
