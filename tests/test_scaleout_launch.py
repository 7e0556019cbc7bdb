"""Beyond one process: two torchrun nodes (c10d rendezvous, gloo) against one node, and submitit's local executor
running pretraining and a SUPERB grid, preempted (SIGUSR2, as Slurm does), requeued and resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pretrain_helpers import CONFIG, kill_after_checkpoint, make_corpus, pretrain

from learn2diss.cli import main
from learn2diss.launch import LaunchError, _slurm_options, parse_time


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    """Stages a-c done (frame targets, SimCLR of h, utterance clusters) on the tiny config."""
    out = tmp_path_factory.mktemp("run") / "run"
    for stage in ("frame-targets", "utt-simclr", "utt-targets"):
        assert pretrain(corpus, out, stage, "--random-parent") == 0
    return out


def _metrics(run: Path) -> dict[int, dict]:
    """step -> the last line logged for it (a resumed run logs again the steps after its checkpoint)."""
    lines = [json.loads(line) for line in (run / "joint" / "metrics.jsonl").read_text().splitlines()]
    out = {}
    for m in lines:
        m.pop("throughput/audio_seconds_per_second")
        out[m["step"]] = m
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slurm_time_and_options_are_parsed():
    assert parse_time("48:00:00") == 2880 and parse_time("2-01:00:30") == 2941 and parse_time("90") == 90
    assert _slurm_options(["account=abc", "qos=high"]) == {"account": "abc", "qos": "high"}
    with pytest.raises(LaunchError, match="--time"):
        parse_time("two days")
    with pytest.raises(LaunchError, match="KEY=VALUE"):
        _slurm_options(["account"])


def test_slurm_job_script_asks_for_the_nodes_gpus_and_preemption_signal(tmp_path, monkeypatch):
    """The #SBATCH lines submitit writes for `pretrain --launcher slurm --nodes 2` (a stub srun on PATH)."""
    import argparse

    from learn2diss.launch import add_launcher_arguments, make_executor

    parser = argparse.ArgumentParser()
    add_launcher_arguments(parser, multi_node=True)
    args = parser.parse_args(["--launcher", "slurm", "--nodes", "2", "--partition", "P", "--time", "48:00:00",
                              "--slurm-option", "account=abc"])
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match="no srun on PATH"):
        make_executor(args, tmp_path / "jobs", "l2d", nodes=2, tasks_per_node=8)
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "srun").chmod(0o755)
    executor = make_executor(args, tmp_path / "jobs", "l2d", nodes=2, tasks_per_node=8)
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit JOBS", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=P", "--time=2880",
                 "--signal=USR2@120", "--account=abc"):
        assert f"#SBATCH {line}" in script
    assert "\nsrun " in script


def test_two_nodes_give_the_losses_of_one_node_with_two_processes(prepared, corpus, tmp_path):
    """2 torchrun agents x 1 process (--nnodes 2, c10d rendezvous, gloo) == 1 agent x 2 processes, same global batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    joint_args = ["-m", "learn2diss.cli", "pretrain", "joint", "--config", str(CONFIG), "--data", str(corpus),
                "--device", "cpu", "--set", "joint.steps=3", "--set", "joint.grad_accum=1"]
    one, two = tmp_path / "one_node", tmp_path / "two_nodes"
    shutil.copytree(prepared, one)
    shutil.copytree(prepared, two)
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    single = subprocess.run([*torchrun, "--standalone", "--nproc_per_node=2", *joint_args, "--out", str(one)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    port = _free_port()
    agents = [subprocess.Popen([*torchrun, "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                                f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=l2d-test", *joint_args, "--out", str(two)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [agent.communicate(timeout=600) for agent in agents]
    for agent, (_, err) in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, err[-3000:]
    assert sorted(_metrics(two)) == [1, 2, 3]
    assert _metrics(two) == _metrics(one)  # every loss term, gradient norm and learning rate, bit for bit


def _preempt(job, ready: Path, timeout: float = 600) -> None:
    """SIGUSR2 to the job's task once ``ready`` exists: what Slurm sends before preempting or timing out.

    A local job's id is the pid of submitit's controller; the task is its child process.
    """
    deadline = time.time() + timeout
    while not ready.exists():
        assert time.time() < deadline and not job.paths.result_pickle.exists(), f"{ready} never appeared"
        time.sleep(0.2)
    pid = int(job.job_id)
    (task,) = (int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    os.kill(task, signal.SIGUSR2)


def _result(job, timeout: float = 600):
    deadline = time.time() + timeout
    while not job.paths.result_pickle.exists():
        assert time.time() < deadline, f"job {job.job_id} did not finish"
        time.sleep(0.5)
    return job.result()


def test_submitit_local_pretraining_job_from_shards_waited_for(prepared, corpus, tmp_path, capsys):
    """Fast: `--launcher local --wait` runs the joint stage as a submitit job, reading shards (data.shards)."""
    run, shards = tmp_path / "run", tmp_path / "shards"
    shutil.copytree(prepared, run)
    assert main(["data", "shard", "--data", str(corpus), "--out", str(shards), "--shard-utterances", "3"]) == 0
    assert pretrain(corpus, run, "joint", "--set", "joint.steps=2", "--set", "joint.grad_accum=1", "--set",
                     f"data.shards={shards}", "--launcher", "local", "--gpus-per-node", "0", "--time", "20",
                     "--wait") == 0
    assert "finished" in capsys.readouterr().out
    assert sorted(_metrics(run)) == [1, 2] and (run / "joint" / "done.json").is_file()
    (log,) = (run / "submitit").glob("*_0_log.out")
    assert f"shards: 4 in {shards}" in log.read_text()  # the stage ran inside the job, from the shards


@pytest.mark.slow
def test_submitit_local_pretraining_is_requeued_after_preemption_and_resumes(prepared, corpus, tmp_path):
    """A joint stage through `--launcher local` gets SIGUSR2 after its step-2 checkpoint: requeued by submitit,
    it resumes from the checkpoint and its losses equal an uninterrupted run's."""
    import submitit

    steps = ["--set", "joint.steps=6", "--set", "joint.grad_accum=1", "--set", "train.checkpoint_every=2"]
    jobs = {}
    for name in ("straight", "preempted"):  # both in submitit tasks: the same threads, the same float sums
        shutil.copytree(prepared, tmp_path / name)
        folder = tmp_path / f"jobs_{name}"
        assert pretrain(corpus, tmp_path / name, "joint", *steps, "--launcher", "local", "--gpus-per-node", "0",
                         "--cpus-per-task", "1", "--time", "30", "--jobs-dir", str(folder), "--no-wait") == 0
        (job_file,) = folder.glob("*_submitted.pkl")
        jobs[name] = submitit.local.local.LocalJob(folder=folder, job_id=job_file.name.split("_")[0])
    _preempt(jobs["preempted"], tmp_path / "preempted" / "joint" / "checkpoints" / "step_0000002.pt")
    assert _result(jobs["straight"]) == str(tmp_path / "straight")
    assert _result(jobs["preempted"]) == str(tmp_path / "preempted")
    paths = jobs["preempted"].paths
    log = Path(paths.stdout).read_text() + Path(paths.stderr).read_text()
    assert "this job is preempted" in log and "Requeued job" in log and "resuming from" in log
    assert _metrics(tmp_path / "preempted") == _metrics(tmp_path / "straight")  # bit for bit


@pytest.mark.slow
def test_joint_stage_from_shards_with_the_runs_targets_resumes_exactly(prepared, corpus, tmp_path, monkeypatch):
    """`data shard --run` stores the run's targets; the joint stage reads them from the shards
    (data.shards), and a run killed after its step-2 checkpoint resumes with the losses of an uninterrupted one."""
    shards = tmp_path / "shards"
    assert main(["data", "shard", "--data", str(corpus), "--out", str(shards), "--run", str(prepared),
                 "--shard-utterances", "3"]) == 0
    index = json.loads((shards / "index.json").read_text())
    assert index["frame_targets"] and index["utt_targets"] and len(index["shards"]) == 4
    steps = ["--set", "joint.steps=4", "--set", "joint.grad_accum=1", "--set", f"data.shards={shards}",
             "--set", "data.shuffle_buffer=4"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    shutil.copytree(prepared, straight)
    shutil.copytree(prepared, killed)
    assert pretrain(corpus, straight, "joint", *steps) == 0
    kill_after_checkpoint(monkeypatch, 2, lambda: pretrain(corpus, killed, "joint", *steps))
    assert pretrain(corpus, killed, "joint", "--resume", *steps) == 0
    assert sorted(_metrics(killed)) == [1, 2, 3, 4]
    assert _metrics(killed) == _metrics(straight)
