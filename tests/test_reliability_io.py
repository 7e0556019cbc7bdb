"""learn2diss.io: atomic files (permissions, cleanup, full disk) and folder swaps (every instant, recovery)."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

import learn2diss
import learn2diss.io as lio


def test_atomic_file_has_umask_permissions_and_failures_leave_nothing(tmp_path):
    old = os.umask(0o022)
    try:
        lio.write_text(tmp_path / "a.txt", "one")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not mkstemp's 0600
    with pytest.raises(KeyboardInterrupt), lio.atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert (tmp_path / "a.txt").read_text() == "one" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_disk_full_is_a_write_error_naming_the_file(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # where delayed allocation reports a full disk
    with pytest.raises(lio.FileWriteError, match=r"a\.npy: cannot write: no space left on device"):
        lio.save_npy(tmp_path / "a.npy", np.zeros(3))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert os.listdir(tmp_path) == []


def _swap(tmp_path: Path, monkeypatch, exchange: bool) -> Path:
    target = tmp_path / "ckpt"
    with lio.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("old")
    if not exchange:
        monkeypatch.setattr(lio, "_exchange", lambda a, b: False)
    return target


@pytest.mark.parametrize("exchange", [True, False])
def test_folder_swap_keeps_a_complete_folder_at_every_rename(tmp_path, monkeypatch, exchange):
    """Checked after every rename of the swap: the destination, or a complete copy beside it, holds a checkpoint."""
    target = _swap(tmp_path, monkeypatch, exchange)
    real_rename = os.rename
    seen = []

    def watch(a, b):
        real_rename(a, b)
        complete = [p for p in (target, tmp_path / ".ckpt.new", tmp_path / ".ckpt.old") if (p / "weights").is_file()]
        seen.append(bool(complete))

    monkeypatch.setattr(os, "rename", watch)
    with lio.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert all(seen) and (target / "weights").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_killed_between_the_renames_recovers_the_newest_copy(tmp_path, monkeypatch):
    """The rename fallback (no RENAME_EXCHANGE): killed when the old folder is moved away, start-up recovery
    puts the new complete folder in place."""
    target = _swap(tmp_path, monkeypatch, exchange=False)
    real_rename = os.rename

    def kill_after_moving_the_old_one(a, b):
        real_rename(a, b)
        if Path(a) == target:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", kill_after_moving_the_old_one)
    with pytest.raises(KeyboardInterrupt), lio.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    monkeypatch.setattr(os, "rename", real_rename)
    assert not target.exists()
    lio.recover_dir(target)
    assert (target / "weights").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["ckpt"]




@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KiB tmpfs (needs root or CAP_SYS_ADMIN; skipped elsewhere: the simulated ENOSPC tests remain)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_real_full_disk_and_read_only_file_system(small_disk):
    """torch.save (whose RuntimeError hides the OSError), safetensors (its "os error 28") and a read-only
    remount: each a FileWriteError naming the final file, nothing left behind."""
    import subprocess

    import torch

    weights = {"w": torch.zeros(1_000_000)}  # 4 MB
    with pytest.raises(lio.FileWriteError, match=r"ckpt/step_0000002\.pt: cannot write: no space left on device"):
        lio.save_torch(small_disk / "ckpt" / "step_0000002.pt", weights)
    with (pytest.raises(lio.FileWriteError, match=r"model/model\.safetensors: cannot write: no space left on device"),
          lio.atomic_dir(small_disk / "model") as tmp):
        lio.save_safetensors(tmp / "model.safetensors", weights)
    assert os.listdir(small_disk) == ["ckpt"] and os.listdir(small_disk / "ckpt") == []
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(lio.FileWriteError, match=r"ckpt/done\.json: cannot write: read-only file system"):
        lio.write_json(small_disk / "ckpt" / "done.json", {})


# module.function calls that read or write a file's content, allowed in learn2diss/io.py only
_IO_CALLS = {("json", "load"), ("json", "loads"), ("yaml", "load"), ("yaml", "safe_load"), ("yaml", "unsafe_load"),
             ("yaml", "full_load"), ("np", "load"), ("np", "save"), ("np", "savez"), ("np", "savez_compressed"),
             ("numpy", "load"), ("numpy", "save"), ("numpy", "savez"), ("numpy", "savez_compressed"),
             ("torch", "save"), ("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("os", "replace"),
             ("os", "rename")}
_WRITE_MODES = set("wax+")


def io_calls(source: str) -> list[tuple[int, str]]:
    """(line, call) of every direct file read/write that should go through learn2diss.io: ``open`` with a write
    mode, ``Path.write_text/write_bytes`` (one argument: not ``io.write_text(path, text)``), ``Path.replace/rename``
    (one argument: not ``str.replace``), and the parsers and savers of :data:`_IO_CALLS`."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open" or isinstance(func, ast.Attribute) and func.attr == "open":
            # open(path, mode), module.open(path, mode) or Path.open(mode)
            modes = [a.value for a in [*node.args[:2], *(k.value for k in node.keywords if k.arg == "mode")]
                     if isinstance(a, ast.Constant) and isinstance(a.value, str) and re.fullmatch(r"[rwxabt+]{1,4}", a.value)]
            if modes and _WRITE_MODES & set(modes[0]):
                found.append((node.lineno, node.col_offset, f"open(..., {modes[0]!r})"))
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if (owner, func.attr) in _IO_CALLS:
                found.append((node.lineno, node.col_offset, f"{owner}.{func.attr}"))
            elif func.attr in ("write_text", "write_bytes") and len(node.args) == 1:  # not io.write_text(path, text)
                found.append((node.lineno, node.col_offset, f".{func.attr}"))
            elif func.attr in ("replace", "rename") and len(node.args) + len(node.keywords) == 1 and owner != "os":
                found.append((node.lineno, node.col_offset, f".{func.attr}(target)"))
    return [(line, call) for line, _, call in sorted(found)]


def test_the_guard_finds_each_kind_of_direct_file_access():
    source = """
import json, yaml, numpy as np, torch
from pathlib import Path
open(p, "w"); open(p, mode="ab"); p.open("w"); Path(p).write_text("x"); p.write_bytes(b"")
Path(a).replace(b); p.rename(q); json.loads(t); json.load(f); yaml.safe_load(t); np.load(p); np.save(p, a)
torch.save(x, p); torch.load(p)
open(p); open(p, "rb"); "abc".replace("a", "b"); text.split(); os.path.join(a, b)
"""
    calls = [call for _, call in io_calls(source)]
    assert calls == ["open(..., 'w')", "open(..., 'ab')", "open(..., 'w')", ".write_text", ".write_bytes",
                     ".replace(target)", ".rename(target)", "json.loads", "json.load", "yaml.safe_load", "np.load",
                     "np.save", "torch.save", "torch.load"]


def test_every_file_read_and_write_goes_through_learn2diss_io():
    """One way to read and write a file: every direct ``open(..., "w")``, ``Path.write_*``, ``Path.replace/rename``,
    ``os.replace/rename``, ``json.load(s)``, ``yaml.safe_load``, ``np.load/save``, ``torch.load/save`` or ``pickle.load``
    of the package, of ``run_downstream.py`` and of ``scripts/`` is in learn2diss/io.py (the AST of every module is
    read, not grepped). The timing scripts of ``bench/`` write scratch files of their own and are not checked."""
    package = Path(learn2diss.__file__).parent
    root = Path(__file__).resolve().parents[1]  # the checkout: run_downstream.py and scripts/ beside the package
    files = [*sorted(package.rglob("*.py")), root / "run_downstream.py", *sorted((root / "scripts").rglob("*.py"))]
    offenders = [f"{path}:{line}: {call}" for path in files
                 if path != package / "io.py" for line, call in io_calls(path.read_text())]
    assert offenders == []


def test_save_figure_writes_the_format_of_the_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    for name, magic in [("a.png", b"\x89PNG"), ("b.pdf", b"%PDF")]:
        assert lio.save_figure(tmp_path / name, fig).read_bytes().startswith(magic)
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.pdf"]
