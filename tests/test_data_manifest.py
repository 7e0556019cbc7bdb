"""`learn2diss data manifest`: LibriSpeech layout in, validated TSV out, bad files skipped and counted."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from learn2diss.cli import main
from learn2diss.data.manifest import read_manifest


def _corpus(root):
    rng = np.random.default_rng(0)
    def path(subset, spk, name):
        folder = root / subset / spk / "1"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{spk}-1-{name}.flac"
    sf.write(path("train-a", "11", "0000"), 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    sf.write(path("train-a", "12", "0000"), 0.1 * rng.standard_normal((8000, 2)).astype(np.float32), 8000)
    path("train-a", "12", "0001").write_bytes(b"garbage")
    nan = 0.1 * rng.standard_normal(4000).astype(np.float32)
    nan[5] = np.nan
    sf.write(path("train-b", "13", "0000"), nan, 16000, format="WAV", subtype="FLOAT")  # NaN needs float samples
    sf.write(path("train-b", "13", "0001"), 0.1 * rng.standard_normal(24000).astype(np.float32), 16000)


def test_manifest_command_validates_and_reports(tmp_path, capsys):
    _corpus(tmp_path / "corpus")
    out = tmp_path / "manifests"
    code = main(["data", "manifest", "--root", str(tmp_path / "corpus"), "--subsets", "train-a,train-b",
                 "--out", str(out), "--jobs", "1"])
    assert code == 0
    manifest = read_manifest(out)
    assert [p.rsplit("/", 1)[1] for p in manifest.paths] == ["11-1-0000.flac", "12-1-0000.flac", "13-1-0001.flac"]
    assert manifest.samples.tolist() == [16000, 16000, 24000]  # the 8 kHz stereo file at 16 kHz
    assert manifest.speakers == ["11", "12", "13"]
    skipped = (out / "skipped.tsv").read_text().splitlines()[1:]
    assert len(skipped) == 2 and "unreadable" in skipped[0] and "NaN" in skipped[1]
    assert "skipped 2 bad files" in capsys.readouterr().out


def test_missing_subset_is_named(tmp_path):
    _corpus(tmp_path / "corpus")
    with pytest.raises(FileNotFoundError, match="train-c"):
        main(["data", "manifest", "--root", str(tmp_path / "corpus"), "--subsets", "train-c", "--out", str(tmp_path)])


def test_bad_manifest_line_is_named(tmp_path):
    (tmp_path / "m.tsv").write_text("path\tsamples\tspeaker\na.flac\tx\t1\n")
    with pytest.raises(ValueError, match=r"m.tsv:2"):
        read_manifest(tmp_path / "m.tsv")


def test_corpus_without_usable_audio_is_one_error_line(tmp_path, capsys):
    """Every file bad: the skipped list is written and the console says so in one error line (exit 2)."""
    from learn2diss.cli import console

    folder = tmp_path / "corpus" / "train" / "11" / "1"
    folder.mkdir(parents=True)
    (folder / "11-1-0000.flac").write_bytes(b"garbage")
    out = tmp_path / "manifests"
    assert console(["data", "manifest", "--root", str(tmp_path / "corpus"), "--subsets", "train", "--out", str(out),
                    "--jobs", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # after the progress bar
    assert len(err) == 1 and err[0].startswith("learn2diss data manifest: error: ") and "no usable audio" in err[0]
    assert len((out / "skipped.tsv").read_text().splitlines()) == 2
