"""No non-finite model leaves training: values out of range are refused when the config is read, an update that
makes a weight NaN/inf stops the run at that step, and export refuses NaN/inf tensors.

One tiny run (all four stages) is made once; each test works on a copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pretrain_helpers import CONFIG, make_corpus

from learn2diss.cli import console, main
from learn2diss.pretrain.config import ConfigError, OptimizerConfig, load_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder with every stage done, manifest folder)."""
    root = tmp_path_factory.mktemp("safety-training")
    corpus = make_corpus(root)
    run = root / "run"
    assert main(["pretrain", "--config", str(CONFIG), "--data", str(corpus), "--out", str(run), "--device", "cpu",
                 "--random-parent"]) == 0
    return run, corpus


def _error_lines(stderr: str) -> list[str]:
    """The console's error lines; a traceback fails the test."""
    assert "Traceback" not in stderr
    return re.findall(r"learn2diss [\w ]+: error: .*", stderr)


OUT_OF_RANGE = [
    ("joint.frame_optimizer.lr", ".inf", "finite and > 0"),
    ("joint.utterance_optimizer.lr", ".inf", "finite and > 0"),
    ("joint.frame_optimizer.eps", "0", "finite and > 0"),
    ("joint.frame_optimizer.betas", "[1.5, 2.0]", "each in [0, 1)"),
    ("data.max_batch_seconds", ".inf", "finite and > 0"),
    ("utt_simclr.optimizer.lr", ".nan", "finite and > 0"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), OUT_OF_RANGE)
def test_out_of_range_value_is_refused_when_the_config_is_read(key, value, allowed):
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIG, [f"{key}={value}"])
    assert f"{key} = " in str(caught.value) and allowed in str(caught.value)


@pytest.mark.parametrize(("key", "value", "allowed"), OUT_OF_RANGE[:5])
def test_out_of_range_value_is_one_error_line_before_anything_runs(finished, tmp_path, capsys, key, value, allowed):
    _, corpus = finished
    out = tmp_path / "run"
    code = console(["pretrain", "--config", str(CONFIG), "--data", str(corpus), "--out", str(out), "--device", "cpu",
                    "--random-parent", "--set", f"{key}={value}"])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and key in err[0] and allowed in err[0]
    assert not out.exists()


def test_unknown_device_is_one_error_line(finished, tmp_path, capsys):
    _, corpus = finished
    code = console(["pretrain", "--config", str(CONFIG), "--data", str(corpus), "--out", str(tmp_path / "run"),
                    "--device", "tpu9", "--random-parent"])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "--device 'tpu9'" in err[0]


def test_an_update_that_makes_a_weight_nan_stops_the_run_at_that_step(finished, tmp_path, capsys, monkeypatch):
    """lr = inf with the range check bypassed: the first update makes the weights NaN; the run stops at step 1,
    naming a tensor, and no joint checkpoint is written (so none can be exported)."""
    run, corpus = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("joint"))
    monkeypatch.setattr(OptimizerConfig, "__post_init__", lambda self: None)
    capsys.readouterr()
    code = console(["pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus), "--out", str(copy),
                    "--device", "cpu", "--set", "joint.frame_optimizer.lr=.inf", "--set", "joint.steps=2"])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert re.search(r"joint: step 1: the update made \d+ of \d+ values of \S+ NaN/inf", err[0]), err[0]
    assert not list((copy / "joint" / "checkpoints").glob("step_*.pt"))
    assert not (copy / "joint" / "done.json").exists()


def _poison(run: Path) -> str:
    """Set one weight of the final joint checkpoint to NaN; returns the tensor's name."""
    (path,) = sorted((run / "joint" / "checkpoints").glob("step_*.pt"))[-1:]
    state = torch.load(path, weights_only=True)
    name = "g.head.weight"  # W_g
    state["model"][name].view(-1)[0] = float("nan")
    torch.save(state, path)
    return name


def test_export_refuses_nan_weights_naming_the_tensor(finished, tmp_path, capsys):
    run, _ = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    name = _poison(copy)
    code = console(["export", str(copy), "--out", str(tmp_path / "ckpt")])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and f"{name} (1 of " in err[0] and "NaN/inf" in err[0]
    assert not (tmp_path / "ckpt").exists()
    assert console(["export", str(copy), "--out", str(tmp_path / "ckpt"), "--allow-nonfinite"]) == 0
    assert "warning: exporting 1 tensors with NaN/inf values" in capsys.readouterr().err
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()


def test_ctrl_c_is_one_line_with_the_step_and_the_run_resumes(finished, tmp_path):
    """SIGINT to the process group (what Ctrl-C sends; a DataLoader worker included) during the joint stage:
    exit status 130 and one line "interrupted at step N; resume with --resume"; --resume then finishes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run, corpus = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("joint"))
    command = [sys.executable, "-m", "learn2diss.cli", "pretrain", "joint", "--config", str(CONFIG), "--data",
               str(corpus), "--out", str(copy), "--device", "cpu", "--set", "joint.steps=8", "--set",
               "data.num_workers=1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},  # SIGINT as in a terminal, even when
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # pytest ignores it
    deadline = time.time() + 300
    while not (copy / "joint" / "checkpoints" / "step_0000002.pt").exists():
        assert process.poll() is None and time.time() < deadline, process.stderr.read() if process.poll() else ""
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    lines = re.findall(r"learn2diss pretrain: .*interrupted.*", stderr)
    assert len(lines) == 1, stderr
    found = re.search(r"joint: interrupted at step (\d+); resume with --resume \(from its checkpoint of step (\d+)\)",
                      lines[0])
    assert found and int(found.group(1)) >= int(found.group(2)) >= 2, lines[0]
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {copy / 'joint' / 'checkpoints'}" in resumed.stdout
    assert (copy / "joint" / "done.json").is_file()


def test_a_second_pretrain_on_one_run_folder_is_refused_and_the_first_keeps_its_files(finished, tmp_path):
    """The first `pretrain joint` has logged a step (and is paused there); a second one with --resume and another λ
    is refused with one line naming the first; the first finishes with every step logged once, its config unchanged."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run, corpus = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("joint"))
    config_before = yaml.safe_load((copy / "config.yaml").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "learn2diss.cli", "pretrain", "joint", "--config", str(CONFIG), "--data",
               str(corpus), "--out", str(copy), "--device", "cpu", "--set", "joint.steps=8"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = copy / "joint" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert first.poll() is None and time.time() < deadline, first.communicate()[1] if first.poll() else ""
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGSTOP)  # the first is mid-run for as long as the second needs
    try:
        second = subprocess.run([*command, "--resume", "--set", "joint.club.weight=0.0"], capture_output=True,
                                text=True, env=env, timeout=600)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    lines = _error_lines(second.stderr)
    assert len(lines) == 1 and f"{copy}: in use by PID {first.pid} on " in lines[0], second.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, 9))
    stored = yaml.safe_load((copy / "config.yaml").read_text())
    assert stored["joint"]["club"]["weight"] == config_before["joint"]["club"]["weight"] > 0  # not the second's 0.0
    assert (copy / "joint" / "done.json").is_file()


class _Marker:
    """Unpickling this would create a file: the proof that code from a file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_refused_parent_leaves_no_run_folder(finished, tmp_path, capsys):
    _, corpus = finished
    parent, marker, out = tmp_path / "parent.pt", tmp_path / "marker", tmp_path / "run"
    torch.save({"cfg": {}, "model": {}, "task": _Marker(marker)}, parent)
    code = console(["pretrain", "--config", str(CONFIG), "--data", str(corpus), "--out", str(out), "--device", "cpu",
                    "--parent", str(parent)])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and f"{parent}: refused to load" in err[0]
    assert not marker.exists() and not out.exists() and sorted(os.listdir(tmp_path)) == ["parent.pt"]


@pytest.mark.parametrize("target", ["frame_targets/offsets.npy", "frame_targets/labels.npy", "utt_targets/labels.npy"])
def test_an_object_array_in_a_run_folders_targets_is_one_line_naming_it(finished, tmp_path, capsys, target):
    run, corpus = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("joint"))
    np.save(copy / target, np.array([{"not": "labels"}] * 3, dtype=object), allow_pickle=True)
    code = console(["pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus), "--out", str(copy),
                    "--device", "cpu"])
    err = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1
    assert f"{copy / target}: not a readable .npy array: it holds Python objects" in err[0]
