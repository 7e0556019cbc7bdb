"""The per-position feature-variance diagnostic (learn2diss.eval.variance)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

from learn2diss.club import GaussianCLUBNetwork
from learn2diss.eval.variance import RunningMoments, feature_variance
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.parent import valid_frames


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(2, 4000, generator=g), torch.tensor([4000, 3000])),
            (torch.randn(3, 3500, generator=g), torch.tensor([3500, 3500, 2000]))]


def test_running_moments_is_the_mean_variance_over_dimensions():
    x = torch.randn(100, 4, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)
    m = RunningMoments()
    m.add(x[:30])
    m.add(x[30:])
    assert m.variance() == pytest.approx(float(x.var(0, unbiased=False).mean()), rel=1e-9)
    assert math.isnan(RunningMoments().variance())


def test_feature_variance_matches_the_unmasked_pass_and_splits_the_masked_pass():
    torch.manual_seed(0)
    model = Learn2Diss(tiny_config("hubert", 1)).train()
    batches = _batches()
    stats = feature_variance(model, batches, seed=5)
    assert model.training  # mode restored
    # unmasked pass: every valid frame of frame:last, by hand
    rows = []
    with torch.no_grad():
        model.eval()
        for w, n in batches:
            feats = model.extract(w, n)
            out = model.frame_hidden_states(feats)[-1]
            rows.append(out[valid_frames(feats.lengths, out.shape[1])])
    ref = torch.cat(rows).double().var(0, unbiased=False).mean()
    assert stats["frame_var_unmasked"] == pytest.approx(float(ref), rel=1e-5)
    assert stats["frames"] == sum(r.shape[0] for r in rows)
    assert 0.0 < stats["masked_fraction"] < 1.0
    assert stats["frame_var_masked_pos"] > 0 and stats["frame_var_unmasked_pos"] > 0
    # the same seed draws the same masks; unmasked positions of the masked pass differ from the clean pass
    again = feature_variance(model, batches, seed=5)
    assert again["frame_var_masked_pos"] == stats["frame_var_masked_pos"]


def test_feature_variance_sees_a_rescaled_output():
    torch.manual_seed(0)
    model = Learn2Diss(tiny_config("hubert", 1))
    before = feature_variance(model, _batches())
    with torch.no_grad():  # the last (post-LN) layer's final layer norm scales frame:last
        model.g.layers[-1].final_layer_norm.weight.mul_(0.1)
        model.g.layers[-1].final_layer_norm.bias.mul_(0.1)
    after = feature_variance(model, _batches())
    for key in ("frame_var_unmasked", "frame_var_masked_pos", "frame_var_unmasked_pos"):
        assert after[key] == pytest.approx(before[key] * 0.01, rel=1e-4)


def test_q_logvar_floor_fraction():
    torch.manual_seed(0)
    model = Learn2Diss(tiny_config("hubert", 1))
    q = GaussianCLUBNetwork(16, 32, 8)
    with torch.no_grad():  # drive every log-variance to the tanh floor
        q.logvar[2].bias.fill_(-50.0)
        q.logvar[2].weight.zero_()
    stats = feature_variance(model, _batches(), q=q)
    assert stats["q_logvar_at_floor"] == 1.0
    assert stats["q_logvar_mean"] == pytest.approx(-1.0, abs=1e-4)
    with torch.no_grad():
        q.logvar[2].bias.fill_(0.0)
    assert feature_variance(model, _batches(), q=q, z_source="last")["q_logvar_at_floor"] == 0.0
