"""Issue 11, files: our checkpoint format, CTC checkpoints (pickles, the folder-swap window), truncated audio."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from eval_helpers import tiny_50hz_config, tiny_checkpoint, write_librispeech

from learn2diss.cli import console
from learn2diss.data.audio import AudioError, read_audio
from learn2diss.eval.ctc.finetune import finetune, load_ctc_checkpoint
from learn2diss.upstream.checkpoints import CheckpointError, load_model
from learn2diss.upstream.model import Learn2Diss

# torch's own hint to retry with the unsafe loader, which our messages must never give
SUGGESTS_UNSAFE_LOAD = re.compile(r"weights_only\s*=\s*False")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---- our checkpoint format (item 6) ------------------------------------------------------------------------


def test_python_tag_in_config_yaml_is_refused_naming_the_file(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    marker = tmp_path / "executed"
    config = ckpt / "config.yaml"
    text = config.read_text()
    assert "format_version: 1\n" in text
    config.write_text(text.replace("format_version: 1\n", f"format_version: !!python/object/apply:os.system "
                                                          f"['touch {marker}']\n"))
    with pytest.raises(CheckpointError, match="config.yaml: not valid YAML"):
        load_model(ckpt)
    code = console(["eval", "abx", "--ckpt", str(ckpt), "--item", str(tmp_path / "x.item"), "--audio", str(tmp_path)])
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(err) == 1 and str(config) in err[0] and not marker.exists()


def test_model_safetensors_that_is_not_safetensors_is_named(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model(ckpt)


# ---- CTC checkpoint (items 5, 9) -----------------------------------------------------------------------------


def _ctc_run(tmp_path: Path, updates: int) -> list[float]:
    from test_eval_ctc import tiny_config

    from learn2diss.eval.ctc.data import read_transcribed_folder

    if not (tmp_path / "train").is_dir():
        write_librispeech(tmp_path / "train", {"11": ["A CAT", "THE MAT"], "22": ["A HAT", "ON IT"]}, seconds=1.0)
    torch.manual_seed(0)
    _, losses = finetune(Learn2Diss(tiny_50hz_config()), read_transcribed_folder(tmp_path / "train"),
                         tiny_config(max_updates=updates, save_every=2), tmp_path / "run", progress=False)
    return losses


def test_pickle_in_place_of_ctc_trainer_state_is_refused(tmp_path):
    _ctc_run(tmp_path, 2)
    marker = tmp_path / "executed"
    trainer = tmp_path / "run" / "checkpoint" / "trainer.pt"
    with open(trainer, "wb") as handle:
        pickle.dump({"step": _Payload(marker)}, handle)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_ctc_checkpoint(tmp_path / "run" / "checkpoint")
    assert str(trainer) in str(info.value) and not SUGGESTS_UNSAFE_LOAD.search(str(info.value))
    with pytest.raises(CheckpointError, match="refused"):  # never a silent restart from update 0
        _ctc_run(tmp_path, 4)
    assert not marker.exists()


def test_ctc_checkpoint_killed_between_renames_resumes(tmp_path, monkeypatch):
    """Item 9: killed right after the old checkpoint/ is renamed away (the rename window of the old
    _replace_dir); the next run recovers the complete copy and resumes instead of restarting from update 0."""
    import learn2diss.io as lio

    _ctc_run(tmp_path, 2)
    monkeypatch.setattr(lio, "_exchange", lambda a, b: False)  # the rename fallback: there is a window
    checkpoint = tmp_path / "run" / "checkpoint"
    real_rename, real_replace = os.rename, os.replace

    def kill_after_moving_the_old_one(rename):
        def wrapped(a, b):
            rename(a, b)
            if Path(a) == checkpoint:
                raise KeyboardInterrupt

        return wrapped

    monkeypatch.setattr(os, "rename", kill_after_moving_the_old_one(real_rename))
    monkeypatch.setattr(os, "replace", kill_after_moving_the_old_one(real_replace))
    with pytest.raises(KeyboardInterrupt):
        _ctc_run(tmp_path, 4)
    monkeypatch.setattr(os, "rename", real_rename)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not checkpoint.exists()
    assert len(_ctc_run(tmp_path, 6)) == 2  # resumed at update 4 (the new copy), not 0
    assert load_ctc_checkpoint(checkpoint)[1]["step"] == 6


# ---- audio (item 7) ------------------------------------------------------------------------------------------


def test_truncated_wav_is_listed_in_skipped_tsv(tmp_path):
    root = tmp_path / "corpus"
    write_librispeech(root / "train", {"11": ["A", "B"], "22": ["C"]}, seconds=1.0)
    wav = root / "train" / "22" / "100" / "22-100-0001.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[: 44 + 478 * 2])  # 478 samples left of the 16000 the header declares
    with pytest.raises(AudioError, match="truncated audio: the header declares 16000 samples, the file holds 478"):
        read_audio(wav)
    for extra in ([], ["--header-only"]):
        out = tmp_path / f"manifest{len(extra)}"
        assert console(["data", "manifest", "--root", str(root), "--subsets", "train", "--out", str(out),
                        "--workers", "1", *extra]) == 0
        skipped = (out / "skipped.tsv").read_text().splitlines()
        assert len(skipped) == 2 and skipped[1].startswith(f"{wav.resolve()}\t") and "truncated" in skipped[1]
        assert len((out / "train.tsv").read_text().splitlines()) == 1 + 3
