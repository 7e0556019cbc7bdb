"""`learn2diss extract`: one .npy per audio file and representation, from a folder or a list; resumable."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import tiny_checkpoint, write_librispeech

from learn2diss.cli import console, main


def test_extract_a_folder_then_a_list_reuses_the_files(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    paths = write_librispeech(tmp_path / "audio", {"11": ["A", "B"], "12": ["C"]}, seconds=1.0)
    out = tmp_path / "feats"
    assert main(["extract", "--checkpoint", str(ckpt), "--audio", str(tmp_path / "audio"), "--features",
                 "frame:all", "frame:last", "utt:embedding", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "frame_last").glob("*.npy")) == [f"{u}.npy" for u in sorted(paths)]
    stacked, last = np.load(out / "frame_all" / "12-100-0000.npy"), np.load(out / "frame_last" / "12-100-0000.npy")
    assert stacked.shape == (4, 49, 32) and last.shape == (49, 32)  # 3 layers + their input, 50 Hz, 32-d
    np.testing.assert_array_equal(stacked[-1], last)
    assert np.load(out / "utt_embedding" / "12-100-0000.npy").shape == (16,)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}

    listing = tmp_path / "list.txt"  # a list of the same files, relative paths: nothing is recomputed
    listing.write_text("path\n" + "".join(f"{p.relative_to(tmp_path)}\n" for p in paths.values()))
    assert main(["extract", "--checkpoint", str(ckpt), "--audio", str(listing), "--features", "frame:all",
                 "frame:last", "utt:embedding", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == stamps


@pytest.mark.parametrize("case", ["duplicate", "missing-listed", "no-audio", "evaluation-only-spec"])
def test_extract_bad_input_is_one_line(tmp_path, capsys, case):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    paths = write_librispeech(tmp_path / "audio", {"11": ["A"]}, seconds=1.0)
    audio, features = tmp_path / "audio", "frame:last"
    if case == "duplicate":
        (tmp_path / "audio" / "copy").mkdir()
        (tmp_path / "audio" / "copy" / "11-100-0000.flac").write_bytes(paths["11-100-0000"].read_bytes())
    elif case == "missing-listed":
        audio = tmp_path / "list.txt"
        audio.write_text("audio/nowhere.flac\n")
    elif case == "no-audio":
        audio = tmp_path / "empty"
        audio.mkdir()
    else:
        features = "frame:everything"
    assert console(["extract", "--checkpoint", str(ckpt), "--audio", str(audio), "--features", features,
                    "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("learn2diss extract: error: ") and err.count("\n") == 1, err
