"""One writer per run folder: a second process is refused naming the holder, a dead holder's lock is taken over,
and every command that writes a run folder holds it (pretrain, export, study, CTC fine-tuning, superb run)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from learn2diss.cli import console

HOLDER = """
import sys
from learn2diss.runlock import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder():
    """Start another process that holds a folder until the test ends (or kills it)."""
    started = []

    def start(folder: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        line = process.stdout.readline()
        assert line == "held\n", process.stderr.read()
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.communicate("\n", timeout=60)


def _one_error_line(capsys) -> str:
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = re.findall(r"learn2diss [\w ]+: error: .*", stderr)
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_second_process_is_refused_naming_the_holder(tmp_path, holder):
    from learn2diss.runlock import FolderInUseError, hold

    folder = tmp_path / "run"
    other = holder(folder)
    with pytest.raises(FolderInUseError) as caught, hold(folder):
        pass
    message = str(caught.value)
    assert message.startswith(f"{folder}: in use by PID {other.pid} on {socket.gethostname()} since ")
    assert "-c" in message  # the holder's command line
    other.communicate("\n", timeout=60)
    notes = []
    with hold(folder, notes.append):  # released: free again, without a note
        assert json.loads((tmp_path / ".run.lock").read_text())["pid"] == os.getpid()
    assert notes == [] and not (tmp_path / ".run.lock").exists()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_note(tmp_path, holder):
    from learn2diss.runlock import hold

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".weights.npy.tmp-1234abcd").write_text("half")  # a write the killed process left
    other = holder(folder)
    os.kill(other.pid, signal.SIGKILL)
    other.wait(timeout=60)
    notes = []
    with hold(folder, notes.append):
        pass
    assert len(notes) == 1 and f"taking over the lock of PID {other.pid} on {socket.gethostname()}" in notes[0]
    assert "ended without releasing it" in notes[0]
    assert os.listdir(folder) == []


@pytest.mark.parametrize("case", ["alive here", "dead here", "other host"])
def test_without_flock_the_record_decides(tmp_path, monkeypatch, case):
    """A file system without flock: a live holder on this host is refused, a dead one taken over, and one on
    another host refused with the file to delete."""
    from learn2diss.runlock import FolderInUseError, hold

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = {"alive here": os.getppid(), "dead here": int(dead.stdout), "other host": os.getppid()}[case]
    host = "elsewhere" if case == "other host" else socket.gethostname()
    record = {"pid": pid, "host": host, "started": "2026-01-01T00:00:00", "command": "learn2diss pretrain"}
    (tmp_path / ".run.lock").write_text(json.dumps(record))
    notes = []
    if case == "dead here":
        with hold(tmp_path / "run", notes.append):
            pass
        assert len(notes) == 1 and f"PID {pid}" in notes[0]
        return
    with pytest.raises(FolderInUseError, match=rf"in use by PID {pid} on {host} since 2026") as caught, \
            hold(tmp_path / "run"):
        pass
    assert ("delete" in str(caught.value)) == (case == "other host")


def test_export_pretrain_study_and_superb_run_refuse_a_held_folder(tmp_path, holder, capsys):
    """Each command is refused before it writes anything; the holder's file is intact."""
    from pretrain_helpers import make_corpus

    data = make_corpus(tmp_path)
    commands = {
        "export": ["export", str(tmp_path / "no-run"), "--out", "{out}"],
        "pretrain": ["pretrain", "--config", "tiny", "--data", str(data), "--out", "{out}",
                     "--random-parent", "--device", "cpu"],
        "study": ["study", "--grid", "study_club", "--seeds", "0", "--shared", str(tmp_path / "no-run"), "--corpus",
                  str(tmp_path / "no-corpus"), "--out", "{out}"],
        "superb run": ["superb", "run", "--upstream", "learn2diss_local", "--data-root", str(tmp_path), "--out", "{out}"],
    }
    for name, argv in commands.items():
        out = tmp_path / name.replace(" ", "-")
        out.mkdir()
        (out / "mine.txt").write_text("the holder's file")
        other = holder(out)
        code = console([arg.format(out=out) for arg in argv])
        line = _one_error_line(capsys)
        assert code == 2 and f"{out}: in use by PID {other.pid}" in line, (name, line)
        assert os.listdir(out) == ["mine.txt"] and (out / "mine.txt").read_text() == "the holder's file"
        other.communicate("\n", timeout=60)


def test_ctc_finetuning_refuses_a_held_run_folder(tmp_path, holder):
    from eval_helpers import tiny_50hz_config
    from test_eval_ctc import tiny_config

    from learn2diss.eval.ctc.finetune import finetune
    from learn2diss.runlock import FolderInUseError
    from learn2diss.upstream.model import Learn2Diss

    out = tmp_path / "ctc"
    other = holder(out)
    with pytest.raises(FolderInUseError, match=rf"{out}: in use by PID {other.pid}"):
        finetune(Learn2Diss(tiny_50hz_config()), [], tiny_config(), out)
    assert not out.exists()
