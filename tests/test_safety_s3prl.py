"""No code from a file runs through our s3prl hand-overs: run_downstream.py and superb run refuse an upstream
checkpoint that needs arbitrary unpickling (one line naming the file and the upstream; no option
loads it), a hostile s3prl experiment checkpoint (-e), a Python tag in a -c config and an expression in a checkpoint's
model settings; superb status never reads a pickle.

Each hostile file would create a marker file if any code in it ran."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learn2diss.cli import console

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"Config": {}, "Upstream_Config": {}, "Args": Payload(marker)}, path)
    return path


def _run_downstream(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEARN2DISS_CACHE": str(cwd / "cache"), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "run_downstream.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _one_error(result: subprocess.CompletedProcess, prefix: str = "run_downstream.py") -> str:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{prefix}: error:")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.fixture
def minimal_config(tmp_path) -> Path:
    """Enough of an s3prl config for run_downstream.py to build the upstream."""
    path = tmp_path / "config.yaml"
    path.write_text("runner:\n  total_steps: 1\n")
    return path


@pytest.mark.parametrize("upstream", ["mockingjay_local", "distiller_local"])
def test_an_upstream_checkpoint_that_needs_unpickling_is_refused(tmp_path, minimal_config, upstream):
    marker = tmp_path / "marker"
    evil = _hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    result = _run_downstream(["-m", "train", "-u", upstream, "-k", str(evil), "-d", "example", "-c",
                              str(minimal_config), "-p", str(tmp_path / "exp")], tmp_path)
    line = _one_error(result)
    assert f"refused: {evil} (the -k checkpoint of upstream {upstream}) needs arbitrary unpickling; nothing executed" \
        in line
    assert not marker.exists()


def test_an_expression_in_a_checkpoints_model_settings_is_not_evaluated(tmp_path, minimal_config):
    """s3prl's WavLM builder eval()s cfg.conv_feature_layers of a checkpoint that loads safely."""
    marker = tmp_path / "marker"
    evil = tmp_path / "wavlm.pt"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or [(512, 10, 5)]"
    torch.save({"cfg": {"conv_feature_layers": code}, "model": {}}, evil)
    result = _run_downstream(["-m", "train", "-u", "wavlm_local", "-k", str(evil), "-d", "example", "-c",
                              str(minimal_config), "-p", str(tmp_path / "exp")], tmp_path)
    line = _one_error(result)
    assert f"refused: {evil} (the -k checkpoint of upstream wavlm_local): s3prl's wavlm.WavLM would evaluate" in line
    assert "not a literal; nothing executed" in line and not marker.exists()


@pytest.mark.parametrize("given", ["file", "folder"])
def test_a_hostile_experiment_checkpoint_for_evaluate_is_refused(tmp_path, given):
    marker = tmp_path / "marker"
    (tmp_path / "exp").mkdir()
    evil = _hostile_checkpoint(tmp_path / "exp" / "states-10.ckpt", marker)
    result = _run_downstream(["-m", "evaluate", "-e", str(evil if given == "file" else evil.parent)], tmp_path)
    line = _one_error(result)
    assert f"refused: {evil} (the s3prl experiment checkpoint of -e) needs arbitrary unpickling; nothing executed" \
        in line
    assert not marker.exists()


def test_a_python_tag_in_a_c_config_is_one_line_naming_the_file(tmp_path):
    marker = tmp_path / "marker"
    config = tmp_path / "config.yaml"
    config.write_text(f"runner:\n  total_steps: !!python/object/apply:os.system ['touch {marker}']\n")
    result = _run_downstream(["-m", "train", "-u", "learn2diss_local", "-d", "example", "-c", str(config), "-p",
                              str(tmp_path / "exp")], tmp_path)
    line = _one_error(result)
    assert f"{config}: not valid YAML (Python tags are never loaded)" in line and not marker.exists()


def test_superb_run_refuses_the_upstream_checkpoint_with_one_line(tmp_path, monkeypatch, capsys):
    from superb_fixtures import make_speech_commands

    monkeypatch.setenv("LEARN2DISS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    marker = tmp_path / "marker"
    evil = _hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    data = make_speech_commands(tmp_path / "data")
    code = console(["superb", "run", "--upstream", "mockingjay_local", "-k", str(evil), "--tasks", "ks", "--lrs",
                    "1e-3", "--data-root", str(data), "--out", str(tmp_path / "runs"), "--results",
                    str(tmp_path / "results"), "--device", "cpu", "--smoke", "--fail-fast"])
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = re.findall(r"learn2diss superb run: error: .*", stderr)
    assert code == 2 and len(lines) == 1, stderr
    assert f"refused: {evil} (the -k checkpoint of upstream mockingjay_local) needs arbitrary unpickling" in lines[0]
    assert not marker.exists()


def test_superb_status_never_reads_a_result_pickle(tmp_path, capsys):
    """A jobs folder holding a hostile submitit result file (anyone who can write a shared grid folder could
    plant one): status reports the job from its JSON state file and the process table; nothing runs."""
    marker = tmp_path / "marker"
    jobs = tmp_path / "runs" / "submitit"
    jobs.mkdir(parents=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = finished.stdout.strip()  # a process id that no longer runs
    (jobs / "jobs.json").write_text(json.dumps({"launcher": "local", "folder": str(jobs), "runs": [
        {"run": "ks/lr0.001", "task": "ks", "lr": 0.001, "fold": None, "need_dev": False, "job_id": dead},
        {"run": "asv/lr0.001", "task": "asv", "lr": 0.001, "fold": None, "need_dev": False, "job_id": "1"}]}))
    for job in (dead, "1"):
        with (jobs / f"{job}_0_result.pkl").open("wb") as handle:
            pickle.dump(("success", Payload(marker)), handle)
    (jobs / "1_state.json").write_text(json.dumps({"status": "failed", "error": "InputError: no data"}))
    assert console(["superb", "status", "--out", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert not marker.exists()
    assert re.search(rf"ks/lr0.001 +{dead} +LOST", out) and re.search(r"asv/lr0.001 +1 +FAILED \(InputError: no data\)", out)
