"""Issue 11, evaluations: content-keyed feature caches, results files under concurrency, hostile feature files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from eval_helpers import tiny_checkpoint
from test_eval_abx import tiny_abx_corpus

from learn2diss.cli import console, main
from learn2diss.eval.results import read_rows


def _abx(tmp_path: Path, ckpt: Path, work: Path, results: Path, *extra: str) -> dict[tuple[str, str], float]:
    args = ["eval", "abx", "--checkpoint", str(ckpt), "--item", str(tmp_path / "audio" / "tiny.item"),
            "--audio", str(tmp_path / "audio"), "--features", "frame:last", "--model-name", "M",
            "--results", str(results), "--work-dir", str(work), *extra]
    assert main(args) == 0
    return {(r.variant, r.condition): r.value for r in read_rows(results / "abx.csv")}


def test_two_checkpoints_with_one_name_and_one_work_dir_get_their_own_features(tmp_path):
    """Item 1: B evaluated after A under the same --model-name and --work-dir is not given A's cached features."""
    tiny_abx_corpus(tmp_path / "audio")
    a = tiny_checkpoint(tmp_path / "a" / "ckpt", seed=0)
    b = tiny_checkpoint(tmp_path / "b" / "ckpt", seed=1)
    cached = tmp_path / "work" / "features" / "M" / "tiny" / "frame_last" / "11-100-0000.npy"
    _abx(tmp_path, a, tmp_path / "work", tmp_path / "results")
    from_a = np.load(cached)
    shared = _abx(tmp_path, b, tmp_path / "work", tmp_path / "results", "--variant", "no-mi")
    from_b = np.load(cached)
    fresh = _abx(tmp_path, b, tmp_path / "fresh", tmp_path / "fresh-results", "--variant", "no-mi")
    fresh_b = np.load(tmp_path / "fresh" / "features" / "M" / "tiny" / "frame_last" / "11-100-0000.npy")
    assert not np.allclose(from_a, from_b)  # recomputed for B
    np.testing.assert_array_equal(from_b, fresh_b)
    assert {k: v for k, v in shared.items() if k[0] == "no-mi"} == fresh  # B's rows: B's numbers


def test_changed_audio_is_extracted_again(tmp_path):
    """Item 1: a cached file is valid only for the audio it was computed from (path, size, modification time)."""
    import soundfile as sf

    tiny_abx_corpus(tmp_path / "audio")
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    cached = tmp_path / "work" / "features" / "M" / "tiny" / "frame_last" / "11-100-0000.npy"
    _abx(tmp_path, ckpt, tmp_path / "work", tmp_path / "results")
    before = np.load(cached)
    audio = next((tmp_path / "audio").rglob("11-100-0000.flac"))
    wav, sr = sf.read(audio)
    sf.write(audio, np.ascontiguousarray(wav[::-1]), sr)
    _abx(tmp_path, ckpt, tmp_path / "work", tmp_path / "results")
    assert not np.allclose(before, np.load(cached))


_WRITER = """
import sys, time
from pathlib import Path
from learn2diss.eval.results import ResultRow, append_rows
path, writer, start = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
while not start.exists():
    time.sleep(0.001)
for i in range(40):
    append_rows(path, [ResultRow(eval="abx", model=writer, dataset="d", condition=str(i), metric="m", value=i)])
"""


def test_two_processes_appending_40_rows_each_keep_80(tmp_path):
    """Item 3: concurrent evaluations appending to one results file lose no row."""
    path, start = tmp_path / "results" / "abx.csv", tmp_path / "start"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name, str(start)]) for name in ("a", "b")]
    time.sleep(1.0)  # both interpreters up and waiting
    start.touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    rows = read_rows(path)
    assert len(rows) == 80
    assert {(r.model, r.condition) for r in rows} == {(m, str(i)) for m in "ab" for i in range(40)}


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if "error:" in line]


def _features_for(item: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    utterances = sorted({line.split()[0] for line in item.read_text().splitlines()[1:]})
    rng = np.random.default_rng(0)
    paths = []
    for utt in utterances:
        np.save(folder / f"{utt}.npy", rng.standard_normal((49, 8)).astype(np.float32))
        paths.append(folder / f"{utt}.npy")
    return paths


def test_object_array_in_features_dir_is_one_error_line_naming_the_file(tmp_path, capsys):
    """Item 10: a pickled object array is refused (never unpickled), with the file's name."""
    item = tiny_abx_corpus(tmp_path / "audio")
    paths = _features_for(item, tmp_path / "feats")
    np.save(paths[2], np.array([{"not": "numbers"}] * 49, dtype=object), allow_pickle=True)
    code = console(["eval", "abx", "--features-dir", str(tmp_path / "feats"), "--item", str(item),
                    "--model-name", "F", "--results", str(tmp_path / "results")])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("learn2diss eval abx: error: ") and str(paths[2]) in err[0] and "Python objects" in err[0]


def test_read_only_results_folder_is_one_error_line_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    """Item 9: the results file cannot be created (EROFS): one line naming it, nothing left in the folder."""
    item = tiny_abx_corpus(tmp_path / "audio")
    _features_for(item, tmp_path / "feats")
    results = tmp_path / "results"
    results.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(results)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code = console(["eval", "abx", "--features-dir", str(tmp_path / "feats"), "--item", str(item),
                    "--model-name", "F", "--results", str(results)])
    monkeypatch.setattr(os, "open", real_open)
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert str(results / "abx.csv") in err[0] and "read-only file system" in err[0].lower()
    assert not [p for p in results.iterdir() if ".tmp" in p.name]
