"""Issue 11, run folders: moved and copied runs, damaged checkpoints at resume, metrics once, full disk.

One tiny run (all four stages, joint checkpoints at steps 2 and 4) is launched with a *relative* ``--out``
from a launch folder, as a user would; each test works on a copy.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from pretrain_helpers import CONFIG, make_corpus

from learn2diss.cli import console, main
from learn2diss.training.checkpoint import load_checkpoint
from learn2diss.upstream.checkpoints import CheckpointError, load_model

# torch's own hint to retry with the unsafe loader, which our messages must never give
SUGGESTS_UNSAFE_LOAD = re.compile(r"weights_only\s*=\s*False")


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(launch folder, run folder inside it, manifest folder): the run was started as ``--out run`` from launch/."""
    root = tmp_path_factory.mktemp("reliability")
    corpus = make_corpus(root)
    launch = root / "launch"
    launch.mkdir()
    here = os.getcwd()
    os.chdir(launch)
    try:
        assert main(["pretrain", "--config", str(CONFIG), "--data", str(corpus), "--out", "run", "--device", "cpu",
                     "--random-parent"]) == 0
    finally:
        os.chdir(here)
    return launch, launch / "run", corpus


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _steps(run: Path) -> list[int]:
    """The steps logged in the joint stage's metrics.jsonl (a line cut short is not a step)."""
    steps = []
    for line in (run / "joint" / "metrics.jsonl").read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            continue
    return steps


def _joint(corpus: Path, run: Path, *extra: str) -> int:
    return main(["pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus), "--out", str(run),
                 "--device", "cpu", *extra])


def _error_lines(stderr: str) -> list[str]:
    """The console's error messages (a progress bar left open shares their line); no traceback."""
    assert "Traceback" not in stderr
    return re.findall(r"learn2diss [\w ]+: error: .*", stderr)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_moved_run_exports_from_another_working_directory(launched, tmp_path, monkeypatch):
    """Item 2: done.json paths are relative to the run folder, not to the directory the run was launched from."""
    _, run, _ = launched
    moved = tmp_path / "elsewhere" / "moved-run"
    moved.parent.mkdir()
    shutil.move(_copy(run, tmp_path / "copy"), moved)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(moved), "--out", str(tmp_path / "ckpt")]) == 0
    expected = load_checkpoint(moved / "joint" / "checkpoints" / "step_0000004.pt")["model"]
    for key, value in load_model(tmp_path / "ckpt").state_dict().items():
        torch.testing.assert_close(value, expected[key])


def test_copied_run_uses_its_own_files(launched, tmp_path, monkeypatch):
    """Item 2: a copy exported from the original's launch folder reads its own joint checkpoint, not the original's."""
    launch, run, _ = launched
    copy = _copy(run, launch / "copy")
    path = copy / "joint" / "checkpoints" / "step_0000004.pt"
    state = load_checkpoint(path)
    state["model"] = {k: v + 1.0 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, path)
    monkeypatch.chdir(launch)
    assert main(["export", "copy", "--out", str(tmp_path / "ckpt")]) == 0
    exported = load_model(tmp_path / "ckpt").state_dict()
    for key, value in exported.items():
        torch.testing.assert_close(value, state["model"][key])
    shutil.rmtree(copy)


def test_done_json_of_an_older_run_is_resolved_inside_the_run(launched, tmp_path):
    """Item 2: runs written before stored the launch-relative or absolute path; only the file name is used."""
    _, run, _ = launched
    copy = _copy(run, tmp_path / "copy")
    done = copy / "joint" / "done.json"
    info = json.loads(done.read_text())
    info["checkpoint"] = str(run / "joint" / "checkpoints" / "step_0000004.pt")  # the original run's file
    done.write_text(json.dumps(info))
    path = copy / "joint" / "checkpoints" / "step_0000004.pt"
    state = load_checkpoint(path)
    state["model"] = {k: v - 1.0 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, path)
    assert main(["export", str(copy), "--out", str(tmp_path / "ckpt")]) == 0
    for key, value in load_model(tmp_path / "ckpt").state_dict().items():
        torch.testing.assert_close(value, state["model"][key])


def test_truncated_latest_checkpoint_resumes_from_the_previous_one(launched, tmp_path, capsys, monkeypatch):
    """Item 4: the damaged step 4 is named, skipped and moved aside; training continues from step 2."""
    launch, run, corpus = launched
    monkeypatch.chdir(launch)  # where the run was launched: the other faults stay out of the way
    copy = _copy(run, tmp_path / "run")
    (copy / "joint" / "done.json").unlink()
    _truncate(copy / "joint" / "checkpoints" / "step_0000004.pt")
    capsys.readouterr()
    assert _joint(corpus, copy, "--resume") == 0
    out = capsys.readouterr().out
    assert "skipping a damaged checkpoint" in out and "step_0000004.pt" in out
    assert "resuming from" in out and "step_0000002.pt (step 2)" in out
    assert (copy / "joint" / "checkpoints" / "step_0000004.pt.damaged").is_file()
    assert load_checkpoint(copy / "joint" / "checkpoints" / "step_0000004.pt")["step"] == 4  # written anew
    assert _steps(copy) == [1, 2, 3, 4]


def test_export_latest_skips_a_truncated_checkpoint(launched, tmp_path, capsys):
    """Item 4: ``export --latest`` names the damaged file and exports the newest complete checkpoint."""
    _, run, _ = launched
    copy = _copy(run, tmp_path / "run")
    (copy / "joint" / "done.json").unlink()
    _truncate(copy / "joint" / "checkpoints" / "step_0000004.pt")
    assert main(["export", str(copy), "--latest", "--out", str(tmp_path / "ckpt")]) == 0
    captured = capsys.readouterr()
    assert "step_0000004.pt" in captured.err and "(step 2)" in captured.out


class _Payload:
    """Unpickling this would run ``os.system`` (touch a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_in_place_of_a_checkpoint_is_refused_without_running(launched, tmp_path, capsys, monkeypatch):
    """Item 5: refused through load_untrusted, never executed, and the message does not suggest turning weights_only off."""
    launch, run, corpus = launched
    monkeypatch.chdir(launch)  # where the run was launched: the other faults stay out of the way
    copy = _copy(run, tmp_path / "run")
    (copy / "joint" / "done.json").unlink()
    marker = tmp_path / "executed"
    bad = copy / "joint" / "checkpoints" / "step_0000004.pt"
    with open(bad, "wb") as handle:
        pickle.dump({"step": _Payload(marker)}, handle)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value) and not SUGGESTS_UNSAFE_LOAD.search(str(info.value))
    capsys.readouterr()
    assert _joint(corpus, copy, "--resume") == 0
    out = capsys.readouterr().out
    assert "refused" in out and not SUGGESTS_UNSAFE_LOAD.search(out) and "step_0000002.pt (step 2)" in out
    assert not marker.exists()


def test_resumed_run_logs_every_step_once(launched, tmp_path, monkeypatch):
    """Item 8: killed after logging step 4 but before its checkpoint; metrics.jsonl is cut back at resume."""
    launch, run, corpus = launched
    monkeypatch.chdir(launch)  # where the run was launched: the other faults stay out of the way
    copy = _copy(run, tmp_path / "run")
    (copy / "joint" / "done.json").unlink()
    (copy / "joint" / "checkpoints" / "step_0000004.pt").unlink()
    with open(copy / "joint" / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "loss/to')  # a line cut short by the kill
    assert _joint(corpus, copy, "--resume") == 0
    assert _steps(copy) == [1, 2, 3, 4]
    assert all(json.loads(line) for line in (copy / "joint" / "metrics.jsonl").read_text().splitlines())


def test_full_disk_at_a_checkpoint_is_one_error_line_and_leaves_no_temporary(launched, tmp_path, monkeypatch, capsys):
    """Item 9: ENOSPC while torch writes the checkpoint, as torch 2.x reports it on a real full disk (the OSError
    of the write, then a RuntimeError "unexpected pos" when the archive is closed; test_reliability_io checks a
    real tmpfs): one ``error:`` line naming the checkpoint, no temporary file left."""
    launch, run, corpus = launched
    monkeypatch.chdir(launch)  # where the run was launched: the other faults stay out of the way
    copy = _copy(run, tmp_path / "run")
    shutil.rmtree(copy / "joint")
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if isinstance(f, str | os.PathLike):
            Path(f).write_bytes(b"PK" * 64)
        else:
            f.write(b"PK" * 64)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    code = console(["pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus), "--out", str(copy),
                    "--device", "cpu"])
    monkeypatch.setattr(torch, "save", real_save)
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("learn2diss pretrain: error: ") and "step_0000002.pt" in err[0]
    assert "no space left on device" in err[0]
    assert sorted(p.name for p in (copy / "joint" / "checkpoints").iterdir()) == []


def test_read_only_checkpoint_folder_is_one_error_line(launched, tmp_path, monkeypatch, capsys):
    """Item 9: a read-only file system (EROFS when the checkpoint file is created) is one line naming it."""
    launch, run, corpus = launched
    monkeypatch.chdir(launch)  # where the run was launched: the other faults stay out of the way
    copy = _copy(run, tmp_path / "run")
    shutil.rmtree(copy / "joint")
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if "checkpoints" in str(path) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    capsys.readouterr()
    code = console(["pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus), "--out", str(copy),
                    "--device", "cpu"])
    monkeypatch.setattr(os, "open", real_open)
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "step_0000002.pt" in err[0] and "read-only file system" in err[0].lower()


@pytest.mark.parametrize("value", ["[1,", "!!python/object/apply:os.system ['echo hi']"])
def test_bad_set_value_is_one_error_line(launched, tmp_path, capsys, value):
    """Item 10: a --set value that is not YAML, or carries a Python tag, names the key."""
    _, _, corpus = launched
    code = console(["pretrain", "--config", str(CONFIG), "--data", str(corpus), "--out", str(tmp_path / "r"),
                    "--random-parent", "--set", f"joint.steps={value}"])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "--set joint.steps" in err[0]
    assert ("Python tags are never loaded" in err[0]) == value.startswith("!!python")
