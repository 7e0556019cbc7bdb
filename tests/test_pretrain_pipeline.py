"""Every pretraining stage end to end on the tiny config, exact resume, export, DDP (gloo, 2 processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_helpers import CONFIG, kill_after_checkpoint, make_corpus, pretrain

from learn2diss.cli import main
from learn2diss.data.batching import frames_for_samples
from learn2diss.data.manifest import read_manifest
from learn2diss.pretrain.config import load_config
from learn2diss.pretrain.stages import layer_features
from learn2diss.upstream.checkpoints import load_model
from learn2diss.upstream.model import Learn2Diss


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    """A run folder with stages a-c done (frame targets, SimCLR of h, utterance clusters)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert pretrain(corpus, out, "frame-targets", "--random-parent") == 0
    assert pretrain(corpus, out, "utt-simclr") == 0
    assert pretrain(corpus, out, "utt-targets") == 0
    return out


def _metrics(run: Path, stage: str = "joint") -> list[dict]:
    return [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]


def test_preparation_stages_write_their_targets(prepared, corpus):
    manifest = read_manifest(corpus)
    config = load_config(CONFIG)
    offsets = np.load(prepared / "frame_targets" / "offsets.npy")
    labels = np.load(prepared / "frame_targets" / "labels.npy")
    expected = frames_for_samples(manifest.samples, config.model.parent.conv_layers)
    np.testing.assert_array_equal(np.diff(offsets), expected)  # one label per 20 ms frame of every utterance
    assert labels.min() >= 0 and labels.max() < config.model.frame.num_targets
    assert np.load(prepared / "frame_targets" / "centroids.npy").shape == (16, 32)
    simclr = _metrics(prepared, "utt_simclr")
    assert [m["step"] for m in simclr] == [1, 2, 3] and all(np.isfinite(m["loss/infonce"]) for m in simclr)
    utt = json.loads((prepared / "utt_targets" / "done.json").read_text())
    assert utt["counts"] == [2, 3, 4, 5, 6] and utt["num_clusters"] in utt["counts"]
    utt_labels = np.load(prepared / "utt_targets" / "labels.npy")
    assert utt_labels.shape == (len(manifest),) and utt_labels.max() < utt["num_clusters"]
    assert (prepared / "utt_targets" / "knee.png").stat().st_size > 1000


def test_layer_features_are_the_inference_hidden_states():
    config = load_config(CONFIG).model
    model = Learn2Diss(config).eval()
    wav, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    with torch.no_grad():
        reference = model(wav, lengths)
        for layer in range(config.parent.num_layers + 1):
            h, n = layer_features(model, wav, lengths, layer)
            torch.testing.assert_close(h, reference.frame_hidden_states[layer])
    assert n.tolist() == list(frames_for_samples(lengths.numpy(), config.parent.conv_layers))


def test_joint_stage_runs_logs_and_exports(prepared, corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    assert pretrain(corpus, run) == 0  # all stages: a-c are skipped, joint runs
    metrics = _metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for key in ("loss/frame_ce", "loss/pseudo_con", "loss/infonce", "loss/utt_ce", "loss/mi_club", "loss/q_nll",
                "loss/total", "lr/frame", "lr/utterance", "lr/q_phi", "throughput/audio_seconds_per_second"):
        assert all(np.isfinite(m[key]) for m in metrics), key
    assert metrics[0]["lr/frame"] == pytest.approx(1e-5) and metrics[2]["lr/frame"] == pytest.approx(1e-3)
    assert list((run / "tensorboard" / "joint").glob("events.out.tfevents.*"))
    assert pretrain(corpus, run, "joint") == 0  # done: skipped
    assert len(_metrics(run)) == 4

    assert main(["export", str(run), "--out", str(tmp_path / "ckpt")]) == 0
    model = load_model(tmp_path / "ckpt").eval()
    state = torch.load(run / "joint" / "checkpoints" / "step_0000004.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][key])
    out = model(torch.randn(1, 16000))
    assert len(out.frame_hidden_states) == 3 and out.utt_embedding.shape == (1, 16)


@pytest.mark.parametrize("mult", [0.0, 0.1])
def test_only_a_parents_own_run_trains_the_front_end(prepared, corpus, tmp_path, mult):
    """joint.feature_grad_mult > 0 trains the conv encoder, projection and positional conv; 0 leaves f as it was."""
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    assert pretrain(corpus, run, "joint", "--set", f"joint.feature_grad_mult={mult}") == 0
    before = torch.load(prepared / "utt_simclr" / "checkpoints" / "step_0000003.pt", weights_only=True)["model"]
    after = torch.load(run / "joint" / "checkpoints" / "step_0000004.pt", weights_only=True)["model"]
    for prefix in ("f.conv.", "f.projection.", "g.layer_input.pos_conv."):
        changed = [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]
        assert bool(changed) == bool(mult), prefix


def test_resume_after_kill_repeats_the_same_losses(prepared, corpus, tmp_path, monkeypatch):
    """Killed after the checkpoint of step 2, --resume gives steps 3..7 exactly as an uninterrupted run."""
    steps = ["--set", "joint.steps=7", "--set", "joint.grad_accum=1"]  # accumulation: the other tests
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    shutil.copytree(prepared, straight)
    shutil.copytree(prepared, killed)
    assert pretrain(corpus, straight, "joint", *steps) == 0

    kill_after_checkpoint(monkeypatch, 2, lambda: pretrain(corpus, killed, "joint", *steps))
    assert sorted(p.name for p in (killed / "joint" / "checkpoints").glob("*.pt")) == ["step_0000002.pt"]
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(corpus, killed, "joint", *steps)
    assert pretrain(corpus, killed, "joint", "--resume", *steps) == 0

    expected = _metrics(straight)[2:]
    resumed = _metrics(killed)[-5:]
    assert [m["step"] for m in resumed] == [3, 4, 5, 6, 7]
    for a, b in zip(expected, resumed, strict=True):
        a.pop("throughput/audio_seconds_per_second")
        b.pop("throughput/audio_seconds_per_second")
        assert a == b  # bit-for-bit: every loss term, gradient norm and learning rate


def test_stage_prerequisites_and_parent_are_checked(corpus, tmp_path):
    with pytest.raises(RuntimeError, match="--parent"):
        pretrain(corpus, tmp_path / "a")
    with pytest.raises(RuntimeError, match="needs frame-targets"):
        pretrain(corpus, tmp_path / "b", "joint", "--random-parent")


def test_joint_stage_with_two_processes(prepared, corpus, tmp_path):
    """torchrun --nproc_per_node=2 with the gloo backend on the CPU; the trainer checks the replicas agree."""
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "learn2diss.cli", "pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus),
           "--out", str(run), "--device", "cpu", "--set", "joint.steps=3"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(run / "joint" / "checkpoints" / "step_0000003.pt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 3
    metrics = _metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3]  # rank 0 alone writes
    assert all(np.isfinite(m["loss/total"]) for m in metrics)
