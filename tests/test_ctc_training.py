"""CTC fine-tuning as an objective of the training loop: exact resume after a kill, NaN updates
skipped and counted, the checkpoint reader, DDP through the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import (
    tiny_50hz_config,
    tiny_checkpoint,
    write_librispeech,
    write_spelled_librispeech,
)
from pretrain_helpers import kill_after_checkpoint
from test_eval_ctc import logged, tiny_config, tiny_schedule

from learn2diss.eval.ctc.data import read_transcribed_folder
from learn2diss.eval.ctc.decode import viterbi_decode
from learn2diss.eval.ctc.finetune import CtcModel, emissions, finetune, load_ctc_checkpoint
from learn2diss.eval.results import read_rows
from learn2diss.training.loop import NonFiniteLossError
from learn2diss.upstream.model import Learn2Diss

TEXTS = {"11": ["A CAT", "THE MAT", "A HAT"], "22": ["ON IT", "THE CAR", "AT SEA"]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ctc") / "train"
    write_librispeech(root, TEXTS, seconds=1.0)
    return root


def _run(corpus: Path, out: Path, **changes) -> CtcModel:
    torch.manual_seed(0)
    return finetune(Learn2Diss(tiny_50hz_config()), read_transcribed_folder(corpus), tiny_config(**changes), out)


def _losses(run: Path) -> list[dict]:
    records = logged(run)
    for record in records:
        record.pop("throughput/audio_seconds_per_second")
    return records


SPELLED = {"11": ["A CAT SAT", "THE MAT", "A HAT ON IT", "THE CAT ATE", "TEN MEN", "NO HAT"],
           "22": ["ON THE MAT", "IT SAT", "A NET", "THE HEN ATE", "NOT ME", "AT SEA"]}


def _spelled_run(tmp_path: Path, head_lr_scale: float) -> tuple[float, float, list[dict]]:
    """Blank share (%) and character error rate (%) on the training utterances after 100 updates at lr 1e-3 on
    spelled tones, and the logged metrics."""
    import jiwer

    write_spelled_librispeech(tmp_path / "train", SPELLED)
    train = read_transcribed_folder(tmp_path / "train")
    torch.manual_seed(0)
    config = tiny_config(max_updates=100, lr=1e-3, initial_lr=1e-5, final_lr=5e-5, head_lr_scale=head_lr_scale,
                         batch_seconds=8.0, max_seconds=8.0, log_every=10, checkpoint_every=100)
    ctc = finetune(Learn2Diss(tiny_50hz_config()), train, config, tmp_path / f"run{head_lr_scale}")
    outputs = [emissions(ctc, u) for u in train]
    blank = 100 * sum(int((e.argmax(-1) == 0).sum()) for e in outputs) / sum(len(e) for e in outputs)
    cer = 100 * jiwer.cer([u.text.lower() for u in train], [viterbi_decode(e) for e in outputs])
    return blank, cer, logged(tmp_path / f"run{head_lr_scale}")


@pytest.mark.slow  # two 100-update fine-tunes: about 2 CPU-minutes
def test_ctc_leaves_the_all_blank_plateau_with_a_faster_head(tmp_path):
    """The letter head at 10x the encoder's rate spells tones within 100 updates; with one rate g collapses to
    blanks everywhere (the plateau that ctc_demo's head_lr_scale avoids)."""
    blank, cer, records = _spelled_run(tmp_path, 10.0)
    assert blank < 95 and cer < 75, (blank, cer)
    assert records[-1]["ctc/blank_rate"] < 95 and records[-1]["loss/ctc"] < 2.0
    assert {"lr/head", "lr/encoder"} <= set(records[-1]) and records[-1]["lr/head"] == pytest.approx(10 * records[-1]["lr/encoder"])
    blank, cer, records = _spelled_run(tmp_path, 1.0)
    assert blank == 100 and cer == 100 and records[-1]["ctc/blank_rate"] == 100


def test_ctc_finetune_resumes_bit_exactly_after_a_kill(corpus, tmp_path, monkeypatch):
    """Killed right after the checkpoint of update 2, the rerun gives updates 3..6 exactly as an uninterrupted run:
    batch order across epochs, micro-batches, span masks, the freeze of g (lifted at update 4), Adam's state.
    The audio is read in a DataLoader worker."""
    settings = dict(max_updates=6, checkpoint_every=2, grad_accum=2, batch_seconds=2.0, max_seconds=2.0, mask_prob=0.3,
                    freeze_updates=3, num_workers=1, hold_steps=1, decay_steps=3)
    straight = _run(corpus, tmp_path / "straight", **settings)

    kill_after_checkpoint(monkeypatch, 2, lambda: _run(corpus, tmp_path / "killed", **settings))
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["step_0000002.pt"]
    resumed = _run(corpus, tmp_path / "killed", **settings)

    expected, got = _losses(tmp_path / "straight"), _losses(tmp_path / "killed")
    assert [m["step"] for m in got] == [1, 2, 3, 4, 5, 6]
    assert got == expected  # every loss, gradient norm and learning rate, bit for bit
    assert len({m["lr/encoder"] for m in got}) > 3  # the tri-stage schedule moved
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_nan_batch_is_skipped_and_counted(corpus, tmp_path, monkeypatch):
    """One utterance's audio overflows the model (read_audio patched: that file's samples at +-3.4e38, finite but
    inf after the first convolution, a NaN loss): each update whose batch holds it is skipped (no optimiser step)
    and counted; more than train.max_nonfinite_steps of them abort the run."""
    import learn2diss.data.audio as audio

    poisoned = sorted(corpus.rglob("*.flac"))[0]
    real_read = audio.read_audio

    def read_audio(path, *args, **kwargs):
        wav = real_read(path, *args, **kwargs)
        return np.sign(wav) * np.float32(3.4e38) if Path(path) == poisoned else wav

    monkeypatch.setattr(audio, "read_audio", read_audio)
    # one 1-s utterance per batch, 6 per epoch: 12 updates see the poisoned one twice
    settings = dict(max_updates=12, checkpoint_every=12, batch_seconds=1.0, max_seconds=1.0, max_nonfinite_steps=2)
    ctc = _run(corpus, tmp_path / "run", **settings)

    records = logged(tmp_path / "run")
    counts = [m["train/nonfinite_steps"] for m in records]
    skipped = [m["step"] for m, before in zip(records, [0.0, *counts[:-1]], strict=True)
               if m["train/nonfinite_steps"] > before]
    assert counts[-1] == 2 and len(skipped) == 2
    assert skipped == [m["step"] for m in records if not np.isfinite(m["loss/ctc"])]  # exactly the NaN updates
    assert all(torch.isfinite(p).all() for p in ctc.parameters())
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_0000012.pt", weights_only=True)
    assert state["nonfinite_steps"] == 2
    for name in ("encoder", "head"):  # 12 updates, 2 skipped
        assert {int(s["step"]) for s in state["optimizers"][name]["state"].values()} == {10}, name

    with pytest.raises(NonFiniteLossError, match="max_nonfinite_steps = 1"):
        _run(corpus, tmp_path / "abort", **{**settings, "max_nonfinite_steps": 1})


def test_a_checkpoint_without_the_head_and_encoder_optimisers_is_refused(corpus, tmp_path):
    """A CTC checkpoint of the single-optimiser layout (``ctc``) is not resumed half-initialised: the error names it."""
    from learn2diss.training.loop import ResumeError

    _run(corpus, tmp_path / "run", max_updates=2, checkpoint_every=2)
    path = tmp_path / "run" / "checkpoints" / "step_0000002.pt"
    state = torch.load(path, weights_only=True)
    state["optimizers"] = {"ctc": state["optimizers"]["encoder"]}
    torch.save(state, path)
    with pytest.raises(ResumeError, match=r"step_0000002.pt holds no state of the optimiser\(s\) \['encoder', 'head'\]"):
        _run(corpus, tmp_path / "run", max_updates=3, checkpoint_every=2)


def test_load_ctc_checkpoint_reads_the_run_folder_or_a_step_file(corpus, tmp_path):
    ctc = _run(corpus, tmp_path / "run", max_updates=3, checkpoint_every=2)
    utterance = read_transcribed_folder(corpus)[0]
    for path in (tmp_path / "run", tmp_path / "run" / "checkpoints" / "step_0000003.pt"):
        loaded, state = load_ctc_checkpoint(path)
        assert state["step"] == 3 and state["ctc_config"]["finetune"]["max_updates"] == 3
        np.testing.assert_array_equal(emissions(loaded, utterance), emissions(ctc, utterance))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000002.pt",
                                                                                  "step_0000003.pt"]


def test_ctc_command_under_torchrun_trains_with_ddp(corpus, tmp_path):
    """torchrun --nproc_per_node=2 (gloo, CPU): both ranks fine-tune, the head alone in update 1 and g too in
    update 2 (the trainer checks that the replicas agree at each checkpoint); rank 0 decodes and writes the rows."""
    write_librispeech(tmp_path / "dev", {"33": ["A CAT"]}, seconds=1.0)
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "learn2diss.cli",
           "eval", "ctc", "--checkpoint", str(ckpt), "--config", "ctc_demo", "--train", str(corpus), "--eval",
           str(tmp_path / "dev"), "--model-name", "tiny", "--condition", "1h", "--device", "cpu",
           "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
           *tiny_schedule(2), "--set", "finetune.batch_seconds=2", "--set", "finetune.max_seconds=2",
           "--set", "finetune.num_workers=0", "--set", "train.checkpoint_every=1"]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "work" / "ctc" / "tiny" / "1h" / "checkpoints" / "step_0000002.pt",
                       weights_only=True)
    assert state["world_size"] == 2 and state["stage"] == "ctc"
    first = torch.load(tmp_path / "work" / "ctc" / "tiny" / "1h" / "checkpoints" / "step_0000001.pt", weights_only=True)
    layer = next(k for k in state["model"] if k.startswith("model.g.layers.") and k.endswith("weight"))  # a layer of g
    assert not torch.equal(first["model"][layer], state["model"][layer])  # g trained in update 2
    rows = read_rows(tmp_path / "results" / "ctc.csv")
    assert [(r.dataset, r.metric) for r in rows] == [("dev", "wer_viterbi"), ("dev", "blank_rate")]  # by rank 0
