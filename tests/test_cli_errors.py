"""One error path: bad input is one ``error:`` line (exit 2), a bug keeps its traceback, only the CLI exits."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest

import learn2diss
import learn2diss.params
from learn2diss.cli import console
from learn2diss.errors import (
    InputError,
    Learn2DissError,
    MissingInputError,
    OutputExistsError,
    UsageError,
)

PACKAGE = Path(learn2diss.__file__).resolve().parent
# The command-line layer: the `learn2diss` console, `python -m learn2diss`, `python -m learn2diss.s3prl` (its
# usage line) and run_downstream.py's launcher. Library code below them raises Learn2DissError subclasses.
CLI_LAYER = {"cli.py", "__main__.py", "s3prl.py", "run_downstream.py", "downstream_runs/launcher.py"}
EXITS = re.compile(r"\braise SystemExit\b|\bsys\.exit\(|\bos\._exit\(|^\s*(exit|quit)\(", re.M)


def _failing_run(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def run(args: object) -> int:
        raise error

    monkeypatch.setattr(learn2diss.params, "run", run)


@pytest.mark.parametrize("error", [InputError("cfg.yaml: model.frame.mask_prob: 1.5 is not in [0, 1]"),
                                   UsageError("--ckpt needs --audio DIR"),
                                   MissingInputError("runs/x: no joint-stage checkpoint"),
                                   OutputExistsError("runs/x exists: pass --resume")],
                         ids=lambda e: type(e).__name__)
def test_project_error_is_one_error_line(monkeypatch, capsys, error: Learn2DissError) -> None:
    _failing_run(monkeypatch, error)
    assert console(["params", "--config", "l2d_w12"]) == 2
    assert capsys.readouterr().err == f"learn2diss params: error: {error}\n"


def test_project_error_keeps_the_builtin_base() -> None:
    """Callers that catch the built-in class keep working."""
    assert issubclass(InputError, ValueError) and issubclass(UsageError, ValueError)
    assert issubclass(MissingInputError, FileNotFoundError) and issubclass(OutputExistsError, FileExistsError)
    assert str(MissingInputError("a: not found")) == "a: not found"


def test_os_error_naming_a_file_is_one_line(monkeypatch, capsys) -> None:
    """An environment error on a named file (permission, disk full, read-only) is PATH: reason."""
    _failing_run(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/data/train.tsv"))
    assert console(["params", "--config", "l2d_w12"]) == 2
    assert capsys.readouterr().err == "learn2diss params: error: /data/train.tsv: Permission denied\n"


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast"), KeyError("frame"),
                                   FileNotFoundError("no file named"), RuntimeError("shape mismatch")],
                         ids=lambda e: type(e).__name__)
def test_a_bug_propagates_to_the_traceback(monkeypatch, capsys, error: Exception) -> None:
    """Built-in exceptions (and an OSError without a file name) are bugs: console re-raises them."""
    _failing_run(monkeypatch, error)
    with pytest.raises(type(error)) as raised:
        console(["params", "--config", "l2d_w12"])
    assert raised.value is error
    assert "error:" not in capsys.readouterr().err


def test_debug_shows_the_traceback_of_a_project_error(monkeypatch) -> None:
    _failing_run(monkeypatch, InputError("cfg.yaml: bad"))
    monkeypatch.setenv("LEARN2DISS_DEBUG", "1")
    with pytest.raises(InputError, match="cfg.yaml: bad"):
        console(["params", "--config", "l2d_w12"])


def test_a_bug_exits_non_zero_with_a_traceback_from_the_command() -> None:
    """The installed entry point (console) on a bug: Python's traceback, exit status 1, no error: line."""
    program = ("import sys, learn2diss.params as p\n"
               "def run(args): return {}['frame']\n"
               "p.run = run\n"
               "from learn2diss.cli import console\n"
               "sys.exit(console(['params', '--config', 'l2d_w12']))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "KeyError: 'frame'" in done.stderr
    assert "error:" not in done.stderr


def _features(tmp_path: Path) -> Path:
    folder = tmp_path / "feats"
    folder.mkdir()
    return folder


def test_usage_errors_of_eval_commands_are_one_line(tmp_path, capsys) -> None:
    """Options that do not fit together (these were SystemExit with exit status 1 and no command name)."""
    alignments = tmp_path / "ali.txt"
    alignments.write_text("1-1-0001 0.0 0.5 AA\n1-1-0001 0.5 1.0 B\n")
    speakers = tmp_path / "spk.txt"
    speakers.write_text("1-1-0001 1\n")
    feats = _features(tmp_path)
    cases = {
        ("eval", "abx"): (["--features-dir", str(feats)], "give --item FILE"),
        ("eval", "purity"): (["--features-dir", str(feats), "--alignments", str(alignments), "--features",
                              "utt:embedding"], "phone purity needs per-frame features"),
        ("eval", "probes"): (["--features-dir", str(feats), "--alignments", str(alignments), "--speakers",
                              str(speakers), "--frame-features", "utt:embedding"], "is not a per-frame representation"),
    }
    for words, (argv, expected) in cases.items():
        assert console([*words, *argv, "--results", str(tmp_path / "results")]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"learn2diss {' '.join(words)}: error: ") and expected in err[0]


def test_missing_input_of_eval_is_one_line_naming_the_file(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.item"
    assert console(["eval", "abx", "--features-dir", str(_features(tmp_path)), "--item", str(missing)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # after a progress line
    assert len(err) == 1 and err[0].startswith("learn2diss eval abx: error: ") and str(missing) in err[0]


def test_no_exit_below_the_cli_layer() -> None:
    """Library code raises; only the command-line layer turns an error into an exit status."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in CLI_LAYER:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if EXITS.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "exits below the CLI layer (raise a learn2diss.errors class instead):\n" + "\n".join(found)


def test_nothing_below_the_console_imports_it() -> None:
    """Commands that run other commands (demo, study, scheduler jobs) use learn2diss.commands.run_command, so
    there is no cli -> demo -> cli cycle; only `python -m learn2diss` imports the console."""
    imports = re.compile(r"^\s*(from learn2diss\.cli import|import learn2diss\.cli\b|from learn2diss import cli\b)", re.M)
    found = [name for path in sorted(PACKAGE.rglob("*.py"))
             if (name := path.relative_to(PACKAGE).as_posix()) not in ("__main__.py", "cli.py")
             and imports.search(path.read_text(encoding="utf-8"))]
    assert not found, f"modules that import learn2diss.cli (use learn2diss.commands.run_command): {found}"


def test_run_command_runs_a_command_without_the_console(tmp_path, monkeypatch) -> None:
    """run_command parses with the command's own arguments; an argv built wrong is a bug (ValueError), not an exit."""
    from learn2diss import commands

    seen = {}

    def run(args) -> int:
        seen["config"] = args.config
        return 3

    monkeypatch.setattr(learn2diss.params, "run", run)
    assert commands.run_command("params", "--config", tmp_path / "x.yaml") == 3
    assert seen == {"config": str(tmp_path / "x.yaml")}
    with pytest.raises(ValueError, match="learn2diss params: .*--config"):
        commands.run_command("params")
    with pytest.raises(ValueError, match="no learn2diss command"):
        commands.run_command("nope")
