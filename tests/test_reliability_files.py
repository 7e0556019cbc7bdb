"""Issue 11, files: our checkpoint format, CTC checkpoints (pickles), truncated audio."""

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
    code = console(["eval", "abx", "--checkpoint", str(ckpt), "--item", str(tmp_path / "x.item"), "--audio", str(tmp_path)])
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(err) == 1 and str(config) in err[0] and not marker.exists()


def test_model_safetensors_that_is_not_safetensors_is_named(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_model(ckpt)


# ---- CTC checkpoint (items 5, 9) -----------------------------------------------------------------------------


def _ctc_run(tmp_path: Path, updates: int) -> None:
    from test_eval_ctc import tiny_config

    from learn2diss.eval.ctc.data import read_transcribed_folder

    if not (tmp_path / "train").is_dir():
        write_librispeech(tmp_path / "train", {"11": ["A CAT", "THE MAT"], "22": ["A HAT", "ON IT"]}, seconds=1.0)
    torch.manual_seed(0)
    finetune(Learn2Diss(tiny_50hz_config()), read_transcribed_folder(tmp_path / "train"),
             tiny_config(max_updates=updates, checkpoint_every=2), tmp_path / "run")


def test_pickle_in_place_of_ctc_trainer_state_is_refused(tmp_path):
    """The CTC fine-tune's checkpoints are the trainer's step_N.pt, read through load_untrusted."""
    _ctc_run(tmp_path, 2)
    marker = tmp_path / "executed"
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000002.pt"
    with open(checkpoint, "wb") as handle:
        pickle.dump({"step": _Payload(marker)}, handle)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_ctc_checkpoint(checkpoint)
    assert str(checkpoint) in str(info.value) and not SUGGESTS_UNSAFE_LOAD.search(str(info.value))
    with pytest.raises(CheckpointError, match="refused"):  # never a silent restart from update 0
        _ctc_run(tmp_path, 4)
    assert not marker.exists()


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
                        "--jobs", "1", *extra]) == 0
        skipped = (out / "skipped.tsv").read_text().splitlines()
        assert len(skipped) == 2 and skipped[1].startswith(f"{wav.resolve()}\t") and "truncated" in skipped[1]
        assert len((out / "train.tsv").read_text().splitlines()) == 1 + 3
