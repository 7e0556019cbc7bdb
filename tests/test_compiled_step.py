"""``train.compile``: the compiled joint step against the eager one on a fixed batch and seed (losses, gradients and
q_phi after its NLL steps) and batch sizes that change without a recompilation; bucketed batches; f run once.

The CPU test uses inductor (the ``default`` mode) on the tiny config (about a minute with a warm inductor cache,
several without one); the ``gpu`` one bf16 autocast on CUDA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pretrain_helpers import CONFIG
from test_pretrain_training import _fixed_batch

from learn2diss.data.batching import IGNORE, collate, frames_for_samples
from learn2diss.pretrain.config import load_config
from learn2diss.pretrain.stages import joint_stage
from learn2diss.training.ddp import DistributedContext
from learn2diss.training.loop import Trainer, TrainingStage
from learn2diss.upstream.model import Learn2Diss


def _stage(mode: str, device: torch.device, precision: str = "fp32") -> tuple[TrainingStage, Trainer]:
    config = load_config(CONFIG)
    torch.manual_seed(0)
    model = Learn2Diss(config.model).to(device).train()
    stage = joint_stage(model, config.joint, segment_frames=25)
    train_cfg = dataclasses.replace(config.train, compile=mode, precision=precision)
    return stage, Trainer(stage, train_cfg, DistributedContext(0, 0, 1, device))


def _micro_batch(stage: TrainingStage, trainer: Trainer, batch) -> tuple[dict, dict, dict]:
    """One micro-batch of the loop (forward, q_phi's NLL steps, loss, backward): terms, gradients, q_phi."""
    torch.manual_seed(1)
    with trainer.autocast:
        out = trainer.module(batch.to(trainer.ctx.device), torch.Generator(trainer.ctx.device).manual_seed(2))
    logged = trainer.auxiliary_steps(out)
    total, terms = stage.objective.loss(out, 0)
    total.backward()
    grads = {name: p.grad.clone() for name, p in stage.model.named_parameters() if p.grad is not None}
    stage.model.zero_grad(set_to_none=True)
    q = {name: p.detach().clone() for name, p in stage.objective.q.named_parameters()}
    return {**terms, **logged, "total": total.detach()}, grads, q


def _batch():
    config = load_config(CONFIG)
    return _fixed_batch(config, config.model.frame.num_targets, config.model.utterance.num_targets)


def _assert_close(got: dict, expected: dict, rtol: float, atol: float, part: str = "terms") -> None:
    assert got.keys() == expected.keys(), part
    for key in expected:
        # the CLUB estimate is a difference of sums of log-likelihoods of ~1e3: float32 rounding ~1e-4 absolute
        tolerance = dict(rtol=rtol, atol=max(atol, 2e-4 if key == "mi_club" else 0.0))
        torch.testing.assert_close(got[key].float(), expected[key].float(), **tolerance, msg=f"{part} {key}")


def _compare(device: torch.device, precision: str, rtol: float, atol: float) -> None:
    """Eager and compiled on the same batch; then a batch with other sizes must not compile anything new."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    batch = _batch()
    eager = _micro_batch(*_stage("none", device, precision), batch)
    stage, trainer = _stage("default", device, precision)
    compiled = _micro_batch(stage, trainer, batch)
    assert eager[0].keys() == compiled[0].keys() and "loss/q_nll" in eager[0] and "mi_club" in eager[0]
    for part, expected, got in zip(("terms", "gradients", "q_phi"), eager, compiled, strict=True):
        _assert_close(got, expected, rtol, atol, part)

    # the number of views, MI pairs and selected frames changes between batches: marked dynamic, no recompilation
    graphs = counters["stats"]["unique_graphs"]
    smaller = dataclasses.replace(batch, segment_valid=batch.segment_valid.clone())
    smaller.segment_valid[0] = False  # two utterances with two segments instead of three
    _micro_batch(stage, trainer, smaller)
    assert counters["stats"]["unique_graphs"] == graphs


def test_compiled_step_gives_the_eager_losses_and_gradients_on_the_cpu():
    _compare(torch.device("cpu"), "fp32", rtol=1e-4, atol=1e-5)


def test_bucketed_batches_give_the_losses_of_unpadded_ones():
    """data.bucket_seconds pads a batch to a multiple of the bucket: the frame targets cover the padded frames and
    the losses are those of the unpadded batch (padding is masked everywhere)."""
    config = load_config(CONFIG)
    conv = config.model.parent.conv_layers
    items = [{"wav": torch.randn(n, generator=torch.Generator().manual_seed(n)).numpy(), "utt": i, "epoch": 0,
              "batch": 0, "frame_labels": np.arange(frames_for_samples(n, conv)) % 16, "utt_label": i % 4}
             for i, n in enumerate([16960, 19200])]
    plain = collate(items, conv, segment_frames=25, seed=0)
    padded = collate(items, conv, segment_frames=25, seed=0, bucket=8000)
    assert padded.waveforms.shape[1] == 24000 and plain.waveforms.shape[1] == 19200
    frames = frames_for_samples(19200, conv)
    assert padded.frame_targets.shape[1] == frames_for_samples(24000, conv) > frames
    assert torch.equal(padded.frame_targets[:, :frames], plain.frame_targets)
    assert (padded.frame_targets[:, frames:] == IGNORE).all()
    terms = []
    for batch in (plain, padded):  # the same initial weights (q_phi takes its NLL steps in each)
        stage, trainer = _stage("none", torch.device("cpu"))
        stage.model.eval()  # no dropout: the same computation on both batches
        terms.append(_micro_batch(stage, trainer, batch)[0])
    _assert_close(terms[1], terms[0], rtol=1e-4, atol=1e-5)


def test_f_runs_once_per_micro_batch_for_both_encoders(monkeypatch):
    """f (the frozen feature extractor) runs once, without gradient, and g and h both read its output X'."""
    for frame_pass in ("masked", "unmasked"):
        stage, trainer = _stage("none", torch.device("cpu"))
        stage.objective.module.config = dataclasses.replace(
            stage.objective.module.config,
            club=dataclasses.replace(stage.objective.module.config.club, frame_pass=frame_pass))
        calls = []
        handle = stage.model.f.register_forward_hook(lambda module, args, out, seen=calls: seen.append(out.x.requires_grad))
        _micro_batch(stage, trainer, _batch())
        handle.remove()
        assert calls == [False], frame_pass


@pytest.mark.gpu
def test_compiled_step_gives_the_eager_losses_and_gradients_in_bf16_on_cuda():
    _compare(torch.device("cuda"), "bf16", rtol=5e-2, atol=5e-2)


@pytest.mark.gpu
def test_training_batches_are_pinned_and_copied_without_blocking():
    batch = _batch().pin_memory()
    assert all(t.is_pinned() for t in (batch.waveforms, batch.lengths, batch.frame_targets, batch.segment_starts))
    moved = batch.to(torch.device("cuda"))
    assert moved.waveforms.is_cuda and moved.frame_targets.is_cuda
