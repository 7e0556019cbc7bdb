"""The helpers the package has one of: k-means and its contract, the weights' digest, waveform padding, keyed random
streams, table and interval formatting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from learn2diss.errors import InputError
from learn2diss.eval.purity import frame_phone_scores, utterance_speaker_purity
from learn2diss.eval.results import checkpoint_digest, checkpoint_hash, state_digest, state_hash
from learn2diss.eval.tables import format_interval, markdown_table
from learn2diss.kmeans import assign, fit_kmeans
from learn2diss.rng import keyed_rng, seed_for
from learn2diss.upstream.checkpoints import save_model
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.padding import pad_waveforms


def test_kmeans_refuses_fewer_points_than_clusters_everywhere():
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    with pytest.raises(InputError, match="k-means with 6 clusters needs at least 6 points, got 5"):
        fit_kmeans(x, 6, 5, 0)
    with pytest.raises(InputError, match="needs at least 6 points"):  # purity's frames: the same contract
        frame_phone_scores([x], [np.array(["a", "b"] * 2 + ["a"])], k=6)
    with pytest.raises(InputError, match="NaN or infinite"):
        fit_kmeans(np.full((4, 2), np.nan, np.float32), 2, 5, 0)
    _, q = utterance_speaker_purity(x, ["a", "b", "a", "b", "a"], q=6)  # Q follows the data: capped, documented
    assert q == 5
    centroids, inertia = fit_kmeans(x, 2, 5, 0)
    labels = assign(torch.from_numpy(x), torch.from_numpy(centroids))
    assert labels.dtype == torch.int64 and torch.equal(labels, assign(x, centroids))  # numpy or torch, one result
    assert inertia == pytest.approx(float(((x - centroids[labels.numpy()]) ** 2).sum()), rel=1e-4)


def test_the_weights_digest_is_the_same_in_memory_and_on_disk(tmp_path):
    torch.manual_seed(0)
    model = Learn2Diss(tiny_config())
    state = model.state_dict()
    path = save_model(model, tmp_path / "ckpt")
    assert state_digest(state) == checkpoint_digest(path) and state_hash(state) == checkpoint_hash(path)
    changed = {k: v.clone() for k, v in state.items()}
    next(iter(changed.values())).add_(1.0)
    assert state_digest(changed) != state_digest(state)


def test_padding_is_one_function_for_arrays_and_tensors():
    waves = [np.arange(3, dtype=np.float32), np.arange(1, dtype=np.float32)]
    padded, lengths = pad_waveforms(waves)
    assert padded.dtype == torch.float32 and padded.tolist() == [[0, 1, 2], [0, 0, 0]] and lengths.tolist() == [3, 1]
    tensors, tensor_lengths = pad_waveforms([torch.from_numpy(w) for w in waves], width=5)
    assert tensors.shape == (2, 5) and torch.equal(tensors[:, :3], padded) and torch.equal(tensor_lengths, lengths)


def test_random_streams_are_functions_of_their_keys():
    assert keyed_rng(3, 1, 4).random() == keyed_rng(3, 1, 4).random() != keyed_rng(3, 1, 5).random()
    assert seed_for(0, 7, 1) == seed_for(0, 7, 1) != seed_for(0, 7, 2) and 0 <= seed_for(0, 7, 1) < 2**63


def test_tables_and_intervals_have_one_format():
    assert markdown_table(["a", "b"], [["x", "1"], ["y", "2"]]) == "| a | b |\n|:---|---:|\n| x | 1 |\n| y | 2 |\n"
    assert format_interval(1.23456, 1.0, 1.5, 3) == "1.235 ± 0.250"
    assert format_interval(1.2, float("nan"), float("nan"), 1) == "1.2"
