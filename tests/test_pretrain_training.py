"""The training loop: the paper's LR schedule, NaN/inf steps skipped and counted, the joint loss falls on a fixed
batch through the loop's step, unknown config keys are named."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch
from pretrain_helpers import CONFIG
from torch import nn

from learn2diss.data.batching import Batch, collate, frames_for_samples
from learn2diss.pretrain.config import ConfigError, load_config
from learn2diss.pretrain.stages import joint_stage
from learn2diss.training.checkpoint import load_checkpoint
from learn2diss.training.config import OptimizerConfig
from learn2diss.training.ddp import DistributedContext
from learn2diss.training.loop import (
    Auxiliary,
    NonFiniteLossError,
    Objective,
    Progress,
    StepLoss,
    Trainer,
    TrainingStage,
    make_adam,
    train,
)
from learn2diss.training.metrics import MetricsLogger
from learn2diss.upstream.model import Learn2Diss

CPU = DistributedContext(0, 0, 1, torch.device("cpu"))


def test_frame_encoder_schedule_of_the_paper():
    cfg = load_config(CONFIG.parents[0] / "l2d_w12.yaml").joint.frame_optimizer
    assert cfg.learning_rate(0, 100_000) == pytest.approx(1e-6)
    assert cfg.learning_rate(5_000, 100_000) == pytest.approx((1e-6 + 1e-4) / 2)
    assert cfg.learning_rate(10_000, 100_000) == pytest.approx(1e-4)
    assert cfg.learning_rate(55_000, 100_000) == pytest.approx((1e-4 + 1e-6) / 2)
    assert cfg.learning_rate(100_000, 100_000) == pytest.approx(1e-6)


def test_unknown_config_key_is_named(tmp_path):
    text = CONFIG.read_text().replace("    inner_steps: 2\n", "    inner_steps: 2\n    lambda: 0.1\n")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) joint\.club\.lambda"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="joint.pseudo_con.temprature"):
        load_config(CONFIG, ["joint.pseudo_con.temprature=0.2"])


class _Toy(nn.Module):
    """Loss = weight . batch mean; NaN on the batches listed in ``poisoned``."""

    def __init__(self, poisoned: set[int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.poisoned = poisoned

    def forward(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        loss = (self.weight * batch.waveforms.mean(0)).sum()
        return loss * float("nan") if batch.index in self.poisoned else loss


def _toy_batches(position: tuple[int, int]):
    for index in itertools.count(position[1]):
        wav = torch.full((2, 3), 1.0)
        yield Batch(wav, torch.tensor([3, 3]), None, None, torch.zeros(2, 2, dtype=torch.long),
                    torch.zeros(2, dtype=torch.bool), torch.tensor([0, 1]), 0, index)


class _ToyObjective(Objective):
    def loss(self, outputs: torch.Tensor, step: int) -> StepLoss:
        return StepLoss(outputs, {"x": outputs})


_OPT = OptimizerConfig(lr=0.1, schedule="constant", initial_lr=0.1, final_lr=0.1, warmup_steps=0,
                       betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, clip_grad_norm=0.0)


def _toy_stage(poisoned: set[int], steps: int, auxiliaries: list[Auxiliary] | None = None) -> tuple[TrainingStage, _Toy]:
    toy = _Toy(poisoned)
    stage = TrainingStage("toy", toy, _ToyObjective(toy, auxiliaries),
                          {"main": (make_adam(list(toy.parameters()), _OPT), _OPT)}, steps=steps, grad_accum=1)
    return stage, toy


def test_nonfinite_steps_are_skipped_counted_then_abort(tmp_path):
    train_cfg = dataclasses.replace(load_config(CONFIG).train, max_nonfinite_steps=2, checkpoint_every=100)
    stage, toy = _toy_stage({1, 3}, steps=5)
    weights = []
    original_step = stage.optimizers["main"][0].step

    def record_step(*args, **kwargs):
        weights.append(toy.weight.detach().clone())
        return original_step(*args, **kwargs)

    stage.optimizers["main"][0].step = record_step
    train(stage, _toy_batches, tmp_path / "a", tmp_path / "tb", train_cfg, CPU, resume=False)
    assert len(weights) == 3  # 5 steps, 2 skipped
    assert torch.isfinite(toy.weight).all()
    metrics = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [m["train/nonfinite_steps"] for m in metrics] == [0, 1, 1, 2, 2]

    stage, _ = _toy_stage({0, 1, 2}, steps=5)
    with pytest.raises(NonFiniteLossError, match="max_nonfinite_steps = 2"):
        train(stage, _toy_batches, tmp_path / "b", tmp_path / "tb", train_cfg, CPU, resume=False)


def test_a_stage_of_zero_steps_checkpoints_every_part(tmp_path):
    """The checkpoint dict is built in one place: with steps = 0 it still holds the extra modules and optimisers."""
    train_cfg = load_config(CONFIG).train
    extra = nn.Linear(2, 2)
    auxiliary = Auxiliary("extra", extra, make_adam(list(extra.parameters()), _OPT), _OPT, steps=1,
                          loss=lambda module, out: module(out.new_ones(2)).sum(), items=lambda out: 1, min_items=1,
                          log_name="extra")
    stage, toy = _toy_stage(set(), steps=0, auxiliaries=[auxiliary])
    final = train(stage, _toy_batches, tmp_path / "a", tmp_path / "tb", train_cfg, CPU, resume=False,
                  checkpoint_extra={"config": {"k": 1}})
    state = load_checkpoint(final)
    assert final.name == "step_0000000.pt" and state["step"] == 0 and state["config"] == {"k": 1}
    assert set(state["optimizers"]) == {"main", "extra"}
    torch.testing.assert_close(state["modules"]["extra"], extra.state_dict())
    torch.testing.assert_close(state["model"], toy.state_dict())


def _fixed_batch(config, num_targets_k: int, num_targets_q: int) -> Batch:
    rng = np.random.default_rng(0)
    conv = config.model.parent.conv_layers
    items = []
    for i, seconds in enumerate([1.3, 1.1, 1.2]):
        n = int(16000 * seconds)
        t = np.arange(n) / 16000
        wav = (0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t) + 0.03 * rng.standard_normal(n)).astype(np.float32)
        frames = frames_for_samples(n, conv)
        items.append({"wav": wav, "utt": i, "epoch": 0, "batch": 0,
                      "frame_labels": (np.arange(frames) // 7 + i) % num_targets_k, "utt_label": i % num_targets_q})
    return collate(items, conv, segment_frames=25, seed=0)


def test_auxiliary_steps_belong_to_the_loop(tmp_path):
    """The loop takes the auxiliary's steps on each micro-batch's outputs, before the loss, and logs its last loss;
    a micro-batch with fewer items than min_items gets none."""
    train_cfg = dataclasses.replace(load_config(CONFIG).train, checkpoint_every=100)
    extra = nn.Linear(3, 1)
    seen: list[torch.Tensor] = []

    def aux_loss(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
        seen.append(out.detach())
        return module(torch.ones(3)).pow(2).sum()

    auxiliary = Auxiliary("extra", extra, make_adam(list(extra.parameters()), _OPT), _OPT, steps=2, loss=aux_loss,
                          items=lambda out: 2, min_items=2, log_name="extra_loss")
    stage, _ = _toy_stage(set(), steps=3, auxiliaries=[auxiliary])
    train(stage, _toy_batches, tmp_path / "a", tmp_path / "tb", train_cfg, CPU, resume=False)
    assert len(seen) == 6 and all(int(s["step"]) == 6 for s in auxiliary.optimizer.state.values())
    metrics = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all("loss/extra_loss" in m and "lr/extra" in m for m in metrics)
    assert set(load_checkpoint(tmp_path / "a" / "checkpoints" / "step_0000003.pt")["modules"]) == {"extra"}

    auxiliary.items = lambda out: 1
    stage, _ = _toy_stage(set(), steps=2, auxiliaries=[auxiliary])
    seen.clear()
    train(stage, _toy_batches, tmp_path / "b", tmp_path / "tb", train_cfg, CPU, resume=False)
    assert not seen


def test_total_loss_falls_on_a_fixed_batch():
    """The joint stage's objective, q_phi and optimisers (:func:`joint_stage`) through the loop's own step."""
    config = load_config(CONFIG)
    torch.manual_seed(0)
    model = Learn2Diss(config.model).train()
    joint = dataclasses.replace(config.joint, grad_accum=1,
                                frame_optimizer=dataclasses.replace(config.joint.frame_optimizer, lr=1e-3,
                                                                    schedule="constant"))
    batch = _fixed_batch(config, config.model.frame.num_targets, config.model.utterance.num_targets)
    stage = joint_stage(model, joint, segment_frames=25)
    trainer, progress, logger = Trainer(stage, config.train, CPU), Progress(), MetricsLogger(None, None, False)
    totals = []
    for _ in range(50):
        trainer.step(itertools.repeat(batch), progress, logger)
        means = logger.write(progress.step, {})
        assert all(np.isfinite(v) for v in means.values())
        totals.append(means["loss/total"])
    assert "loss/q_nll" in means and "loss/mi_club" in means
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5]), totals


def test_gather_segments_picks_the_frames_of_each_row():
    from learn2diss.pretrain.objectives import gather_segments

    x = (torch.arange(3)[:, None] * 100 + torch.arange(20)[None, :]).float()[..., None]  # x[b, t] = 100 b + t
    starts = torch.tensor([[2, 10], [0, 5]])
    out = gather_segments(x, starts, 4, rows=torch.tensor([2, 0]))
    assert out.shape == (2, 2, 4, 1)
    assert out[0, 0, :, 0].tolist() == [202, 203, 204, 205] and out[1, 1, :, 0].tolist() == [5, 6, 7, 8]


def test_batch_without_two_segment_utterances_has_no_utterance_terms():
    config = load_config(CONFIG)
    model = Learn2Diss(config.model).train()
    batch = _fixed_batch(config, config.model.frame.num_targets, config.model.utterance.num_targets)
    batch.segment_valid[:] = False
    objective = joint_stage(model, config.joint, segment_frames=25).objective
    out = objective.module(batch, torch.Generator().manual_seed(0))
    assert objective.mi_pairs(out) == 0
    total, terms = objective.loss(out, 0)
    assert terms["infonce"] == 0 and terms["utt_ce"] == 0
    assert "mi_club" not in terms and terms["count/mi_skipped_batches"] == 1  # no CLUB term without pairs
    assert torch.isfinite(total) and terms["frame_ce"] > 0
    total.backward()
