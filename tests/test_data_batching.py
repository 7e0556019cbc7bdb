"""Batching by audio seconds, resumable order, DDP shards, crops with aligned labels, segment pairs."""

from __future__ import annotations

import itertools

import numpy as np
import soundfile as sf

from learn2diss.data.batching import (
    IGNORE,
    SecondsBatchSampler,
    UtteranceDataset,
    collate,
    frames_for_samples,
    sample_segments,
)

CONV = ((8, 10, 5), (8, 8, 4), (8, 4, 4), (8, 4, 4))  # stride 320, like the real parents


def test_frames_for_samples_matches_conv_arithmetic():
    assert frames_for_samples(16000, CONV) == 49
    assert list(frames_for_samples(np.array([320 * 10 + 80, 400, 300]), CONV)) == [10, 1, 0]  # receptive field 345


def test_sampler_budget_coverage_resume_and_shards():
    lengths = np.random.default_rng(0).integers(8000, 40000, size=50)
    budget = 100_000
    sampler = SecondsBatchSampler(lengths, range(50), budget, seed=3)
    epoch0 = sampler.epoch_batches(0)
    assert sorted(itertools.chain(*epoch0)) == list(range(50))
    assert all(max(lengths[b]) * len(b) <= budget for b in epoch0)
    assert epoch0 != sampler.epoch_batches(1)
    stream = list(itertools.islice(iter(sampler), len(epoch0) + 3))
    resumed = SecondsBatchSampler(lengths, range(50), budget, seed=3, start=(0, 4))
    assert list(itertools.islice(iter(resumed), len(epoch0) - 1)) == stream[4:]
    shards = [SecondsBatchSampler(lengths, range(50), budget, seed=3, rank=r, world_size=2).epoch_batches(0)
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(epoch0) // 2
    assert not set(itertools.chain(*shards[0])) & set(itertools.chain(*shards[1]))


def test_bucketed_batches_repeat_their_shapes_within_the_budget():
    """data.bucket_seconds: batches padded to a multiple of the bucket, and budgeted with that padded length."""
    lengths = np.random.default_rng(0).integers(8000, 40000, size=50)
    budget, bucket = 100_000, 8000
    batches = SecondsBatchSampler(lengths, range(50), budget, seed=3, bucket=bucket).epoch_batches(0)
    padded = [-(-max(lengths[b]) // bucket) * bucket for b in batches]
    assert sorted(itertools.chain(*batches)) == list(range(50))
    assert all(width * len(b) <= budget for width, b in zip(padded, batches, strict=True))
    assert len({(width, len(b)) for width, b in zip(padded, batches, strict=True)}) < len(batches) // 2


def test_segments_are_inside_and_disjoint():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 300, size=2000)
    starts, eligible = sample_segments(frames, 50, rng)
    assert np.array_equal(eligible, frames >= 100)
    s = starts[eligible]
    assert (s >= 0).all() and (s + 50 <= frames[eligible, None]).all()
    assert (np.abs(s[:, 0] - s[:, 1]) >= 50).all()
    assert 0.3 < (s[:, 0] < s[:, 1]).mean() < 0.7  # either segment may come first


def test_crop_keeps_labels_aligned_and_collate_pads(tmp_path):
    samples = np.array([320 * 40 + 80, 320 * 12 + 80])
    paths = []
    for i, n in enumerate(samples):
        paths.append(str(tmp_path / f"{i}.wav"))
        sf.write(paths[-1], np.linspace(0, 0.5, n, dtype=np.float32), 16000, subtype="FLOAT")
    labels = [np.arange(frames_for_samples(int(n), CONV)) for n in samples]  # label = frame index
    ds = UtteranceDataset(paths, samples, CONV, max_samples=320 * 20 + 80, seed=0, frame_labels=labels,
                          utt_labels=np.array([5, 7]))
    offsets = set()
    for epoch in range(6):
        item = ds[(0, epoch, 0)]
        first = int(item["frame_labels"][0])
        offsets.add(first)
        assert len(item["wav"]) == 320 * 20 + 80
        np.testing.assert_array_equal(item["frame_labels"], np.arange(first, first + 20))
        # the crop starts at the frame the first label belongs to
        np.testing.assert_allclose(item["wav"][0], np.linspace(0, 0.5, samples[0])[first * 320], rtol=1e-6)
    assert len(offsets) > 1
    batch = collate([ds[(1, 0, 0)], ds[(0, 0, 0)]], CONV, segment_frames=5, seed=0)
    assert batch.waveforms.shape == (2, 320 * 20 + 80) and batch.lengths.tolist() == [320 * 12 + 80, 320 * 20 + 80]
    assert batch.frame_targets.shape == (2, 20) and (batch.frame_targets[0, 12:] == IGNORE).all()
    assert batch.utt_targets.tolist() == [7, 5] and batch.segment_valid.tolist() == [True, True]
