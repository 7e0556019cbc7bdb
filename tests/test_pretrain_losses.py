"""The paper's losses against slow loop-form references written here from the equations."""

from __future__ import annotations

import math

import pytest
import torch

from learn2diss.club import (
    GaussianCLUBNetwork,
    club_negative_term,
    club_nll,
    club_upper_bound,
    gaussian_log_likelihood,
    standardize_features,
)
from learn2diss.pretrain.losses import (
    frame_cross_entropy,
    info_nce_loss,
    pseudo_con_loss,
    utterance_cross_entropy,
)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _log_q(y: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> float:
    """log N(y; mu, exp(logvar)) one dimension at a time."""
    total = 0.0
    for d in range(y.shape[0]):
        var = math.exp(float(logvar[d]))
        total += -0.5 * math.log(2 * math.pi * var) - (float(y[d]) - float(mu[d])) ** 2 / (2 * var)
    return total


@pytest.mark.parametrize("denominator", ["all_others", "negatives"])
def test_pseudo_con_matches_loop(denominator):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 6, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 4, 1, 0, 2])  # label 3 and 4: anchors without positives
    tau = 0.3
    losses = []
    for t in range(12):
        pos = [p for p in range(12) if p != t and labels[p] == labels[t]]
        if denominator == "all_others":
            den = [a for a in range(12) if a != t]
        else:
            den = [a for a in range(12) if labels[a] != labels[t]]
        if not pos or not den:
            continue
        log_den = math.log(sum(math.exp(_cos(feats[t], feats[a]) / tau) for a in den))
        losses.append(-sum(_cos(feats[t], feats[p]) / tau - log_den for p in pos) / len(pos))
    expected = sum(losses) / len(losses)
    got = pseudo_con_loss(feats, labels, tau, denominator=denominator)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_pseudo_con_without_positives_is_zero_with_finite_grad():
    feats = torch.randn(4, 3, requires_grad=True)
    loss = pseudo_con_loss(feats, torch.arange(4), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(feats.grad).all()


@pytest.mark.parametrize("denominator", ["all_others", "paper"])
def test_info_nce_matches_loop(denominator):
    g = torch.Generator().manual_seed(1)
    b, tau = 5, 0.5
    z = {1: torch.randn(b, 7, generator=g), 2: torch.randn(b, 7, generator=g)}
    total = 0.0
    for i in range(b):
        for j in (1, 2):
            other = 3 - j
            num = _cos(z[j][i], z[other][i]) / tau
            terms = []
            for k in range(b):
                for a in (1, 2):
                    in_denominator = (k, a) != (i, j) if denominator == "all_others" else (k != i and a != j)
                    if in_denominator:
                        terms.append(_cos(z[j][i], z[a][k]) / tau)
            total += -(num - math.log(sum(math.exp(s) for s in terms)))
    expected = total / (2 * b)
    got = info_nce_loss(z[1], z[2], tau, denominator=denominator)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_cross_entropies_match_loop():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 5, generator=g)
    targets = torch.randint(0, 5, (2, 4), generator=g)
    selected = torch.tensor([[True, False, True, True], [False, False, True, False]])
    terms = [
        -torch.log_softmax(logits[b, t], -1)[targets[b, t]].item()
        for b in range(2) for t in range(4) if selected[b, t]
    ]
    got = frame_cross_entropy(logits[selected], targets[selected])
    assert got.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)

    l1, l2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    mu = torch.tensor([2, 0, 3])
    expected = sum(
        -0.5 * (torch.log_softmax(l1[i], -1)[mu[i]] + torch.log_softmax(l2[i], -1)[mu[i]]).item() for i in range(3)
    ) / 3
    assert utterance_cross_entropy(l1, l2, mu).item() == pytest.approx(expected, rel=1e-5)


def _random_gaussian(b: int, t: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, d, generator=g), 0.5 * torch.randn(b, t, d, generator=g),
            torch.randn(b, t, d, generator=g))


def test_gaussian_log_likelihood_and_nll():
    mu, logvar, y = _random_gaussian(2, 3, 4, 3)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(y).sum(-1)
    torch.testing.assert_close(gaussian_log_likelihood(mu, logvar, y), ref)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    assert club_nll(mu, logvar, y, valid).item() == pytest.approx(-ref[valid].mean().item(), rel=1e-6)


@pytest.mark.parametrize("negatives", ["same_time", "all_frames"])
def test_club_closed_form_negative_equals_pairwise(negatives):
    b, t, d = 4, 6, 5
    mu, logvar, y = _random_gaussian(b, t, d, 4)
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[1, 4:] = False
    valid[3, 2:] = False
    # explicit pairs: log q(y_{i,t} | x_{j,s}) as a (B_i, T_i, B_j, T_j) tensor
    pair = gaussian_log_likelihood(mu[None, None], logvar[None, None], y[:, :, None, None])
    if negatives == "same_time":
        same_t = torch.eye(t, dtype=torch.bool)[None, :, None, :]
        weight = (valid[None, None] & same_t).float()
    else:
        weight = valid[None, None].float().expand(b, t, b, t)
    expected = (pair * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    got = club_negative_term(mu, logvar, y, valid, negatives)
    torch.testing.assert_close(got[valid], expected[valid], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_club_upper_bound_matches_loop(reduction):
    b, t, d = 3, 4, 3
    mu, logvar, y = _random_gaussian(b, t, d, 5)
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[2, 3] = False
    total = 0.0
    for i in range(b):
        for s in range(t):
            if not valid[i, s]:
                continue
            negs = [_log_q(y[i, s], mu[j, s], logvar[j, s]) for j in range(b) if valid[j, s]]
            total += _log_q(y[i, s], mu[i, s], logvar[i, s]) - sum(negs) / len(negs)
    expected = total / b if reduction == "sum" else total / int(valid.sum())
    got = club_upper_bound(mu, logvar, y, valid, "same_time", reduction)
    assert got.item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_club_network_shapes_and_bounded_logvar():
    q = GaussianCLUBNetwork(8, 12, 16, "tanh")
    mu, logvar = q(100 * torch.randn(2, 5, 8))
    assert mu.shape == logvar.shape == (2, 5, 12)
    assert logvar.abs().max() <= 1.0
    assert len(GaussianCLUBNetwork(8, 12, 16, "none").logvar) == 3


# ---- the joint-stage CLUB term: skipped batches, standardisation, the switches of issue 10 ----


def _joint_config(**club):
    import dataclasses

    from learn2diss.pretrain.config import load_config

    cfg = load_config("tiny").joint
    return dataclasses.replace(cfg, club=dataclasses.replace(cfg.club, **club))


def _outputs(n: int, scale: float = 1.0, seed: int = 0, standardize: str = "none"):
    """Joint-stage outputs with n MI pairs, standardised as the forward pass does (``joint.club.standardize``)."""
    from learn2diss.pretrain.objectives import JointOutput

    g = torch.Generator().manual_seed(seed)
    zbar = torch.randn(n, 6, 16, generator=g)
    ybar = scale * (zbar[..., :8].repeat(1, 1, 4) + 0.5 * torch.randn(n, 6, 32, generator=g))
    terms = [torch.tensor(v) for v in (1.0, 2.0, 3.0, 4.0)]  # frame_ce, pseudo_con, infonce, utt_ce
    ybar, zbar = (standardize_features(x.requires_grad_(), standardize) for x in (ybar, zbar))
    return JointOutput(*terms, ybar=ybar, zbar=zbar)


def _club(cfg, seed: int = 0):
    """q_phi, its optimiser and ``outputs -> StepLoss``: the training loop's auxiliary steps, then the joint loss."""
    from conftest import tiny_config

    from learn2diss.pretrain.config import load_config
    from learn2diss.pretrain.objectives import JointObjective
    from learn2diss.training.ddp import DistributedContext
    from learn2diss.training.loop import StepLoss, Trainer, TrainingStage
    from learn2diss.upstream.model import Learn2Diss

    torch.manual_seed(seed)
    q = GaussianCLUBNetwork(16, 32, 24, cfg.club.logvar_activation, cfg.club.standardize)
    opt = torch.optim.Adam(q.parameters(), lr=1e-3)
    model = Learn2Diss(tiny_config())
    objective = JointObjective(model, cfg, 6, q, opt)
    trainer = Trainer(TrainingStage("joint", model, objective, {}, 1, 1), load_config("tiny").train,
                      DistributedContext(0, 0, 1, torch.device("cpu")))

    def loss(outputs, step):
        logged = trainer.auxiliary_steps(outputs)
        total, terms = objective.loss(outputs, step)
        return StepLoss(total, {**terms, **{k.removeprefix("loss/"): v for k, v in logged.items()}})

    return q, opt, loss


@pytest.mark.parametrize("pairs", [0, 1])
def test_batch_without_mi_pairs_has_no_q_step_and_no_logged_term(pairs):
    from learn2diss.pretrain.objectives import MI_SKIPPED

    cfg = _joint_config(weight=1e-3, inner_steps=3)
    q, opt, loss = _club(cfg)
    before = [p.detach().clone() for p in q.parameters()]
    total, terms = loss(_outputs(pairs), 0)
    assert "mi_club" not in terms and "q_nll" not in terms
    assert terms[MI_SKIPPED].item() == 1.0
    assert total.item() == pytest.approx(1.0 + 2.0 + 3.0 + 4.0)  # tiny.yaml: pseudo-con weight 1
    assert all(torch.equal(a, b) for a, b in zip(before, q.parameters(), strict=True))
    assert not opt.state  # not even a momentum-only Adam step


def test_batch_with_mi_pairs_steps_q_and_adds_the_estimate():
    from learn2diss.pretrain.objectives import MI_SKIPPED

    cfg = _joint_config(weight=1e-3, inner_steps=3)
    q, opt, loss = _club(cfg)
    before = [p.detach().clone() for p in q.parameters()]
    total, terms = loss(_outputs(4), 0)
    assert terms[MI_SKIPPED].item() == 0.0 and "mi_club" in terms and "q_nll" in terms
    assert total.item() == pytest.approx(10.0 + 1e-3 * terms["mi_club"].item(), rel=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(before, q.parameters(), strict=True))
    assert all(int(state["step"]) == 3 for state in opt.state.values())  # the loop took the 3 inner steps


def test_logger_averages_each_term_over_the_batches_that_report_it(tmp_path):
    import json

    from learn2diss.training.metrics import MetricsLogger

    logger = MetricsLogger(tmp_path, tmp_path / "tb", True)
    logger.add({"loss/mi_club": torch.tensor(6.0), "count/mi_skipped_batches": torch.tensor(0.0)})
    logger.add({"grad_norm/frame": torch.tensor(1.0)})  # once per step: must not dilute the loss means
    logger.add({"count/mi_skipped_batches": torch.tensor(1.0)})  # a batch without pairs
    logger.add({"loss/mi_club": torch.tensor(2.0), "count/mi_skipped_batches": torch.tensor(1.0)})
    means = logger.write(3, {})
    logger.close()
    assert means == {"loss/mi_club": 4.0, "count/mi_skipped_batches": 2.0, "grad_norm/frame": 1.0}
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["loss/mi_club"] == 4.0


def test_standardized_estimate_ignores_the_scale_of_the_features():
    results = []
    for scale in (1.0, 0.1):
        cfg = _joint_config(weight=1e-3, inner_steps=2, standardize="batch", logvar_activation="none")
        q, _, loss = _club(cfg)
        _, terms = loss(_outputs(4, scale, standardize="batch"), 0)
        results.append((terms["mi_club"].item(), terms["q_nll"].item()))
    assert results[0][0] == pytest.approx(results[1][0], rel=2e-3, abs=1e-3)
    assert results[0][1] == pytest.approx(results[1][1], rel=2e-3, abs=1e-3)


def test_unstandardized_estimate_depends_on_the_scale():
    cfg = _joint_config(weight=1e-3, inner_steps=0)
    estimates = [_club(cfg)[2](_outputs(4, scale), 0)[1]["mi_club"].item() for scale in (1.0, 0.1)]
    assert estimates[0] != pytest.approx(estimates[1], rel=1e-2)


def test_standardize_features_batch_is_zero_mean_unit_variance():
    x = 5.0 + 3.0 * torch.randn(4, 10, 6)
    y = standardize_features(x, "batch")
    flat = y.reshape(-1, 6)
    assert torch.allclose(flat.mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(flat.var(0, unbiased=False), torch.ones(6), atol=1e-3)
    assert standardize_features(x, "none") is x


def test_mi_pass_and_z_source_switches():
    from conftest import tiny_config

    from learn2diss.pretrain.objectives import mi_frame_layers, mi_utterance_side
    from learn2diss.upstream.model import Learn2Diss

    torch.manual_seed(0)
    model = Learn2Diss(tiny_config("hubert", 1)).eval()
    features = model.extract(torch.randn(2, 4000, generator=torch.Generator().manual_seed(1)))
    mask = model.sample_mask(features, torch.Generator().manual_seed(2))
    assert bool(mask.any())
    masked = model.encode_frames(features, mask)
    clean = model.encode_frames(features, None)
    assert mi_frame_layers(model, features, masked, "masked") is masked.layers
    unmasked = mi_frame_layers(model, features, masked, "unmasked")  # the pass without a mask
    assert all(torch.equal(a, b) for a, b in zip(unmasked, clean.layers, strict=True))
    assert not torch.allclose(unmasked[-1], masked.layers[-1])
    utt = model.encode_utterance(features.x[:, :10], torch.tensor([10, 10]))
    assert torch.equal(mi_utterance_side(model, utt, 1, "aggregate"), model.aggregate_utterance_layers(utt)[:1])
    last = mi_utterance_side(model, utt, 2, "last")
    assert last.shape == (2, 10, utt.embedding.shape[-1])
    assert torch.equal(last[:, 3], utt.embedding) and torch.equal(last[:, 0], last[:, 9])
