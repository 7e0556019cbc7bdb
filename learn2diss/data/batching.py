"""Training batches: utterances grouped by padded audio seconds, random crops and the two views of h.

Everything random here (batch order, crops, segment positions) is a pure function of
``(seed, epoch, batch index, utterance)``, so a run resumed from ``(epoch, batch index)`` sees
exactly the batches an uninterrupted run would have seen, without any sampler state.

- :class:`SecondsBatchSampler`: an endless stream of batches whose padded length x size stays
  under a budget (25 s per GPU in the paper); each rank of a DDP run takes every world-size-th batch.
- :class:`UtteranceDataset`: reads the audio, crops long utterances at a random frame-aligned
  offset and slices their frame labels to match.
- :func:`collate`: pads, and picks two non-overlapping segments per utterance on the frame grid;
  utterances shorter than two segments are flagged (excluded from the utterance-level losses).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, overload

import numpy as np
import torch

from learn2diss.data.audio import read_audio
from learn2diss.errors import InputError
from learn2diss.rng import keyed_rng
from learn2diss.upstream.config import SAMPLE_RATE
from learn2diss.upstream.padding import pad_waveforms

IGNORE = -100  # frame label of padding (torch's cross-entropy ignore_index)

__all__ = ["IGNORE", "Batch", "PaddedBatch", "SecondsBatchSampler", "UtteranceDataset", "collate", "frames_for_samples",
           "sample_segments", "inference_batches", "bucketed", "LabelTable"]


class LabelTable(Protocol):
    """Frame labels by manifest row: a list of arrays, or the stage's memory-mapped ``FrameLabels``."""

    def __len__(self) -> int: ...
    def __getitem__(self, row: int) -> np.ndarray: ...


@overload
def frames_for_samples(samples: int, conv_layers: Sequence[Sequence[int]]) -> int: ...
@overload
def frames_for_samples(samples: np.ndarray, conv_layers: Sequence[Sequence[int]]) -> np.ndarray: ...
def frames_for_samples(samples: np.ndarray | int, conv_layers: Sequence[Sequence[int]]) -> np.ndarray | int:
    """Frames the convolutional encoder makes from ``samples`` (torchaudio's ``floor((L - k) / s) + 1`` per layer)."""
    n = np.asarray(samples, dtype=np.int64)
    for _, kernel, stride in conv_layers:
        n = np.maximum((n - kernel) // stride + 1, 0)
    return int(n) if np.ndim(n) == 0 else n


def sample_segments(frames: np.ndarray, segment_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two non-overlapping segments of ``segment_frames`` inside each utterance's valid frames.

    The first start is uniform in ``[0, T - 2 S]``, the second uniform in the frames left after the
    first segment, then the two are put in random order (either may be view 1).

    Returns:
        starts (B, 2) int64 (0 where not eligible), eligible (B,) bool: T >= 2 S.
    """
    frames = np.asarray(frames, dtype=np.int64)
    eligible = frames >= 2 * segment_frames
    slack = np.maximum(frames - 2 * segment_frames, 0)
    u = rng.random((len(frames), 3))
    first = np.floor(u[:, 0] * (slack + 1)).astype(np.int64)
    second = first + segment_frames + np.floor(u[:, 1] * (slack - first + 1)).astype(np.int64)
    swap = u[:, 2] < 0.5
    starts = np.stack([np.where(swap, second, first), np.where(swap, first, second)], axis=1)
    return np.where(eligible[:, None], starts, 0), eligible


@overload
def bucketed(samples: int, bucket: int) -> int: ...
@overload
def bucketed(samples: np.ndarray, bucket: int) -> np.ndarray: ...
def bucketed(samples: np.ndarray | int, bucket: int) -> np.ndarray | int:
    """``samples`` rounded up to a multiple of ``bucket`` (0: unchanged): the padded length of a bucketed batch.

    >>> bucketed(np.array([1, 16000, 16001]), 16000).tolist()
    [16000, 16000, 32000]
    """
    if not bucket:
        return samples
    return -(-np.asarray(samples) // bucket) * bucket if np.ndim(samples) else -(-int(samples) // bucket) * bucket


def inference_batches(indices: Sequence[int], samples: np.ndarray, max_batch_samples: int) -> list[list[int]]:
    """Length-sorted batches of ``indices`` with padded size <= ``max_batch_samples`` (an over-long one alone)."""
    order = sorted(indices, key=lambda i: int(samples[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and int(samples[i]) * (len(current) + 1) > max_batch_samples:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class SecondsBatchSampler:
    """An endless, deterministic stream of batches of ``(utterance, epoch, batch index)`` keys.

    Args:
        lengths: (N,) samples of each utterance *after* cropping.
        indices: the utterances to draw from (others are never used).
        max_batch_samples: budget for ``longest x count`` in a batch.
        seed, rank, world_size: batch order and DDP sharding.
        start: ``(epoch, batch index)`` of the first batch to yield.
        bucket: batches are padded to a multiple of this many samples (:func:`collate`): the budget counts that.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        indices: Sequence[int] | np.ndarray,
        max_batch_samples: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: tuple[int, int] = (0, 0),
        bucket: int = 0,
    ) -> None:
        self.lengths = bucketed(np.asarray(lengths, dtype=np.int64), bucket)
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) == 0:
            raise InputError("no utterance is long enough to train on (see data.min_utterance_seconds)")
        if int(self.lengths[self.indices].max()) > max_batch_samples:
            raise InputError("an utterance is longer than the batch budget: lower data.max_utterance_seconds")
        self.max_batch_samples = max_batch_samples
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start = start
        if len(self.epoch_batches(0)) == 0:
            raise InputError(f"{len(self.indices)} utterances make fewer batches than the {world_size} processes")

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: length-sorted groups (random ties), in random order."""
        rng = keyed_rng(self.seed, epoch)
        shuffled = self.indices[rng.permutation(len(self.indices))]
        ordered = shuffled[np.argsort(self.lengths[shuffled], kind="stable")]
        batches = inference_batches(list(ordered), self.lengths, self.max_batch_samples)
        batches = [batches[i] for i in rng.permutation(len(batches))]
        per_rank = len(batches) // self.world_size
        return batches[self.rank :: self.world_size][:per_rank]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        epoch, index = self.start
        while True:
            batches = self.epoch_batches(epoch)
            for b in range(index, len(batches)):
                yield [(utt, epoch, b) for utt in batches[b]]
            epoch, index = epoch + 1, 0


class UtteranceDataset(torch.utils.data.Dataset):
    """One cropped utterance per key ``(utterance, epoch, batch index)`` (see :class:`SecondsBatchSampler`).

    Args:
        paths, samples: the manifest rows.
        conv_layers: the parent's convolutional layers (frame grid).
        max_samples: longer utterances are cropped to this many samples, at a random multiple of the stride.
        seed: crop positions.
        frame_labels: row i -> (frames_for_samples(samples[i]),) k-means labels, or None.
        utt_labels: (N,) utterance cluster of each row, or None.
    """

    def __init__(
        self,
        paths: Sequence[str],
        samples: np.ndarray,
        conv_layers: Sequence[Sequence[int]],
        max_samples: int,
        seed: int,
        frame_labels: LabelTable | None = None,
        utt_labels: np.ndarray | None = None,
    ) -> None:
        self.paths, self.samples = paths, np.asarray(samples, dtype=np.int64)
        self.conv_layers = [tuple(c) for c in conv_layers]
        self.stride = int(np.prod([s for _, _, s in self.conv_layers]))
        self.max_samples, self.seed = max_samples, seed
        self.frame_labels, self.utt_labels = frame_labels, utt_labels

    def cropped_lengths(self) -> np.ndarray:
        return np.minimum(self.samples, self.max_samples)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        return self.item(key, read_audio(self.paths[key[0]]))

    def item(self, key: tuple[int, int, int], wav: np.ndarray, frame_labels: np.ndarray | None = None,
             utt_label: int | None = None) -> dict:
        """Crop ``wav`` (the utterance's audio, read elsewhere: a file or a shard) and attach its targets.

        ``frame_labels``/``utt_label`` replace the dataset's own targets of that row when given.
        """
        utt, epoch, batch = key
        if len(wav) != self.samples[utt]:
            raise InputError(f"{self.paths[utt]}: {len(wav)} samples, the manifest says {self.samples[utt]}; "
                             "rebuild the manifest")
        offset = 0
        if len(wav) > self.max_samples:
            steps = (len(wav) - self.max_samples) // self.stride
            offset = int(keyed_rng(self.seed, 0, epoch, batch, utt).integers(0, steps + 1)) * self.stride
            wav = wav[offset : offset + self.max_samples]
        item = {"wav": wav, "utt": utt, "epoch": epoch, "batch": batch}
        if frame_labels is None and self.frame_labels is not None:
            frame_labels = self.frame_labels[utt]
        if frame_labels is not None:
            labels = np.asarray(frame_labels)
            expected = frames_for_samples(int(self.samples[utt]), self.conv_layers)
            if len(labels) != expected:
                raise InputError(f"{self.paths[utt]}: {len(labels)} frame labels for {expected} frames; "
                                 "the frame targets were made for another manifest or model")
            first = offset // self.stride
            item["frame_labels"] = labels[first : first + frames_for_samples(len(wav), self.conv_layers)]
        if utt_label is None and self.utt_labels is not None:
            utt_label = int(self.utt_labels[utt])
        if utt_label is not None:
            item["utt_label"] = int(utt_label)
        return item


class PaddedBatch:
    """What every training batch dataclass shares: ``waveforms``/``lengths`` fields, the audio seconds it holds,
    and moving or pinning all its tensor fields (the data loader and the trainer call these)."""

    lengths: torch.Tensor  # (B,) valid samples of each row, a field of every subclass

    @property
    def audio_seconds(self) -> float:
        return float(self.lengths.sum()) / SAMPLE_RATE

    def pin_memory(self) -> Self:
        return self._apply(lambda t: t.pin_memory())

    def to(self, device: torch.device | str) -> Self:
        return self._apply(lambda t: t.to(device, non_blocking=True))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        batch: Any = self  # a dataclass: every subclass is one
        return dataclasses.replace(batch, **{f.name: fn(value) for f in dataclasses.fields(batch)
                                            if isinstance(value := getattr(self, f.name), torch.Tensor)})


@dataclass
class Batch(PaddedBatch):
    """A padded training batch (CPU tensors; :meth:`to` moves them).

    Attributes:
        waveforms: (B, S) float32, zero-padded. lengths: (B,) int64 valid samples.
        frame_targets: (B, T) int64 k-means labels, IGNORE at padding; or None.
        utt_targets: (B,) int64 utterance clusters; or None.
        segment_starts: (B, 2) int64 first frame of each view. segment_valid: (B,) bool, T >= 2 segments.
        utterances: (B,) int64 manifest rows. epoch, index: position in the sampler's stream.
    """

    waveforms: torch.Tensor
    lengths: torch.Tensor
    frame_targets: torch.Tensor | None
    utt_targets: torch.Tensor | None
    segment_starts: torch.Tensor
    segment_valid: torch.Tensor
    utterances: torch.Tensor
    epoch: int
    index: int


def collate(items: list[dict], conv_layers: Sequence[Sequence[int]], segment_frames: int, seed: int,
            bucket: int = 0) -> Batch:
    """Pad a list of :class:`UtteranceDataset` items (to a multiple of ``bucket`` samples when given) and pick the
    segment pairs."""
    waveforms, lengths = pad_waveforms([it["wav"] for it in items], bucketed(max(len(it["wav"]) for it in items), bucket))
    frames = frames_for_samples(lengths.numpy(), conv_layers)
    frame_targets: torch.Tensor | None = None
    if "frame_labels" in items[0]:
        width = frames_for_samples(waveforms.shape[1], conv_layers)  # the model's frames of the padded batch
        labels = np.full((len(items), width), IGNORE, dtype=np.int64)
        for row, it in enumerate(items):
            labels[row, : len(it["frame_labels"])] = it["frame_labels"]
        frame_targets = torch.from_numpy(labels)
    utt_targets = torch.tensor([it["utt_label"] for it in items]) if "utt_label" in items[0] else None
    epoch, index = items[0]["epoch"], items[0]["batch"]
    starts, eligible = sample_segments(frames, segment_frames, keyed_rng(seed, 1, epoch, index))
    return Batch(
        waveforms=waveforms,
        lengths=lengths,
        frame_targets=frame_targets,
        utt_targets=utt_targets,
        segment_starts=torch.from_numpy(starts),
        segment_valid=torch.from_numpy(eligible),
        utterances=torch.tensor([it["utt"] for it in items]),
        epoch=epoch,
        index=index,
    )
