"""WebDataset shards: the shard loader against the file loader, the split across ranks x workers, exact resume."""

from __future__ import annotations

import json
import tarfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_helpers import make_corpus

from learn2diss.cli import main
from learn2diss.data.batching import (
    SecondsBatchSampler,
    UtteranceDataset,
    collate,
    frames_for_samples,
)
from learn2diss.data.manifest import read_manifest
from learn2diss.data.shards import (
    ShardError,
    ShardIndex,
    epoch_plan,
    shard_batches,
    targets_fingerprint,
    write_shards,
)

CONV = ((16, 10, 5), (16, 8, 4), (16, 4, 4), (16, 4, 4))  # config tiny: 320-sample stride
SEED, BUDGET = 3, 16000 * 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), per_speaker=8)  # 24 FLAC files of 1.2-3.2 s


@pytest.fixture(scope="module")
def labelled(corpus):
    """The manifest with random frame targets (one per 20 ms frame) and utterance targets."""
    manifest = read_manifest(corpus)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 50, n) for n in frames_for_samples(manifest.samples, CONV)]
    utts = rng.integers(0, 5, len(manifest))
    return manifest, frames, utts


@pytest.fixture(scope="module")
def shards(labelled, tmp_path_factory) -> Path:
    manifest, frames, utts = labelled
    out = tmp_path_factory.mktemp("shards")
    write_shards(manifest, out, 3, frames, "f" * 40, utts, targets_fingerprint(utts), progress=False)
    return out


def _dataset(labelled, max_seconds: float = 4.0) -> UtteranceDataset:
    manifest, frames, utts = labelled
    return UtteranceDataset(manifest.paths, manifest.samples, CONV, int(max_seconds * 16000), SEED, frames, utts)


def _loader(shards, labelled, rank=0, world=1, workers=0, max_seconds=4.0, buffer=5):
    manifest = labelled[0]
    dataset = _dataset(labelled, max_seconds)
    index = ShardIndex.load(shards)
    return shard_batches(shards, manifest, dataset, partial(collate, conv_layers=CONV, segment_frames=25, seed=SEED),
                         np.arange(len(manifest)), BUDGET, SEED, rank, world, workers, buffer, False), index


def _utterances(batch) -> dict[int, tuple]:
    """utterance -> (audio bytes, frame targets, utterance target) of one padded batch."""
    out = {}
    for row, utt in enumerate(batch.utterances.tolist()):
        n = int(batch.lengths[row])
        frames = batch.frame_targets[row]
        out[utt] = (batch.waveforms[row, :n].numpy().tobytes(), tuple(frames[frames >= 0].tolist()),
                    int(batch.utt_targets[row]))
    return out


def _epoch(iterator, epoch: int) -> list:
    batches = []
    for batch in iterator:
        if batch.epoch > epoch:
            return batches
        batches.append(batch)
    raise AssertionError("endless stream ended")


def test_shard_layout_is_webdataset(shards, labelled):
    manifest = labelled[0]
    index = ShardIndex.load(shards)
    assert len(index) == 8 and sorted(index.rows.tolist()) == list(range(len(manifest)))
    with tarfile.open(shards / index.names[0]) as tar:
        names = tar.getnames()
    row = int(index.shard_rows(0)[0])
    assert sorted(names[:3]) == [f"{row:09d}.cls", f"{row:09d}.flac", f"{row:09d}.frames.npy"]
    assert json.loads((shards / "index.json").read_text())["manifest_fingerprint"] == manifest.fingerprint()


def test_shard_loader_yields_the_file_loaders_utterances_and_targets(shards, labelled):
    """One rank: every epoch holds the same utterances as the file loader's, with the same audio and targets."""
    manifest = labelled[0]
    dataset = _dataset(labelled)
    sampler = SecondsBatchSampler(dataset.cropped_lengths(), np.arange(len(manifest)), BUDGET, SEED)
    files = {}
    for keys in sampler.epoch_batches(0):
        batch = collate([dataset[(u, 0, 0)] for u in keys], CONV, 25, SEED)
        files.update(_utterances(batch))
    assert len(files) == len(manifest)
    factory, _ = _loader(shards, labelled)
    stream = factory((0, 0))
    orders = []
    for epoch in (0, 1):
        batches = _epoch(stream, epoch) if epoch == 0 else _epoch(factory((1, 0)), 1)
        got = {}
        for b in batches:
            assert float(b.lengths.max()) * len(b.lengths) <= BUDGET  # the same seconds budget
            assert b.epoch == epoch
            got.update(_utterances(b))
        assert got == files  # set equality per epoch: utterances, audio, frame and utterance targets
        orders.append([u for b in batches for u in b.utterances.tolist()])
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_shards_split_disjointly_over_two_ranks_and_two_workers(shards, labelled):
    manifest = labelled[0]
    factory0, index = _loader(shards, labelled, rank=0, world=2, workers=2)
    factory1, _ = _loader(shards, labelled, rank=1, world=2, workers=2)
    plan = epoch_plan(index, np.minimum(manifest.samples, 4 * 16000), np.ones(len(manifest), bool), 0, SEED, 4, 5,
                      BUDGET)
    read = [set(s) for s in plan.shards]
    assert sum(map(len, read)) == len(index) and set().union(*read) == set(range(len(index)))  # each shard once
    seen = {}
    for rank, factory in enumerate((factory0, factory1)):
        batches = _epoch(factory((0, 0)), 0)
        assert len(batches) == 2 * len(plan.batches[0])  # every stream gives the same number of batches
        for b in batches:
            worker = b.index % 2
            stream = rank * 2 + worker
            shard_rows = set(np.concatenate([index.shard_rows(s) for s in plan.shards[stream]]).tolist())
            for u in b.utterances.tolist():
                assert u in shard_rows and u not in seen  # from this stream's shards, never twice
                seen[u] = stream
    assert len(set(seen.values())) == 4
    assert len(seen) + plan.dropped_utterances == len(manifest)  # what is not seen was cut to equalise streams


def test_resume_gives_exactly_the_batches_of_an_uninterrupted_run(shards, labelled):
    """Two workers, resumed at an odd batch index of the second epoch: identical crops, targets, segments."""
    factory, _ = _loader(shards, labelled, workers=2, max_seconds=1.5)  # crops are random
    straight = factory((0, 0))
    reference = [next(straight) for _ in range(40)]
    first_of_epoch1 = next(i for i, b in enumerate(reference) if b.epoch == 1)
    start = first_of_epoch1 + 3
    resumed = factory((1, 3))
    for expected in reference[start:]:
        got = next(resumed)
        assert (got.epoch, got.index) == (expected.epoch, expected.index)
        for field in ("waveforms", "lengths", "frame_targets", "utt_targets", "segment_starts", "segment_valid",
                      "utterances"):
            assert torch.equal(getattr(got, field), getattr(expected, field)), field


def test_shards_of_another_manifest_or_targets_are_refused(shards, labelled):
    manifest, frames, utts = labelled
    other = replace(manifest, paths=manifest.paths[:-1], samples=manifest.samples[:-1], speakers=manifest.speakers[:-1])
    with pytest.raises(ShardError, match="another manifest"):
        shard_batches(shards, other, _dataset(labelled), collate, np.arange(3), BUDGET, 0, 0, 1, 0, 5, False)
    with pytest.raises(ShardError, match="other settings"):
        write_shards(manifest, shards, 4, frames, "f" * 40, utts, targets_fingerprint(utts), progress=False)
    dataset = UtteranceDataset(manifest.paths, manifest.samples, CONV, 64000, SEED, None, utts + 1)
    with pytest.raises(ShardError, match="utterance targets in the shards are not this run's"):
        shard_batches(shards, manifest, dataset, collate, np.arange(3), BUDGET, 0, 0, 1, 0, 5, False)


def test_data_shard_command_resumes_an_interrupted_write(corpus, tmp_path):
    out = tmp_path / "shards"
    assert main(["data", "shard", "--data", str(corpus), "--out", str(out), "--shard-utterances", "10"]) == 0
    index = ShardIndex.load(out)
    assert (len(index), index.frame_targets, index.utt_targets) == (3, None, None)
    stamp = (out / index.names[0]).stat().st_mtime_ns
    (out / index.names[2]).unlink()
    (out / "index.json").unlink()
    assert main(["data", "shard", "--data", str(corpus), "--out", str(out), "--shard-utterances", "10"]) == 0
    assert (out / index.names[0]).stat().st_mtime_ns == stamp and (out / index.names[2]).is_file()
