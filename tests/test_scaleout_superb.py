"""A 2-task SUPERB grid (KS, ASV) through submitit's local executor: one job preempted mid-run (SIGUSR2, as
Slurm does), requeued, resumed from its s3prl checkpoint; `superb status` follows it; the CSV is complete."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from superb_fixtures import make_checkpoint, make_speech_commands, make_voxceleb1

from learn2diss.cli import main as cli
from learn2diss.eval.results import read_rows


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARN2DISS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("LEARN2DISS_S3PRL_JOBS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _job_tasks(job_id: str) -> list[int]:
    """A local job's id is the pid of submitit's controller; its tasks are the controller's children."""
    path = Path(f"/proc/{job_id}/task/{job_id}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _kill_jobs(runs: Path) -> None:
    """After a failed test: stop the jobs' controllers, tasks and s3prl subprocesses (leaves first)."""
    path = runs / "submitit" / "jobs.json"
    if not path.exists():
        return

    def tree(pid: int) -> list[int]:
        return [child for task in _job_tasks(str(pid)) for child in tree(task)] + [pid]

    for entry in json.loads(path.read_text())["runs"]:
        for pid in tree(int(entry["job_id"])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_failing_job_is_reported_with_its_log(tmp_path, cache, capsys):
    """Fast: a KS run without its dataset fails in its submitit job; the grid names the run and its log,
    and `superb status` shows the job FAILED."""
    from learn2diss.downstream_runs.cluster import ClusterError

    checkpoint = make_checkpoint(tmp_path / "tiny")
    runs = tmp_path / "runs"
    (tmp_path / "data").mkdir()
    try:
        with pytest.raises(ClusterError, match=r"(?s)1 of 1 runs failed.*ks/lr0.001: job \d+, log .*_0_log.err"):
            cli(["superb", "run", "--upstream", "learn2diss_local", "-k", str(checkpoint), "--tasks", "ks",
                 "--lrs", "1e-3", "--data-root", str(tmp_path / "data"), "--out", str(runs), "--results",
                 str(tmp_path), "--launcher", "local", "--gpus-per-node", "0", "--time", "20"])
    finally:
        _kill_jobs(runs)
    capsys.readouterr()
    assert cli(["superb", "status", "--out", str(runs)]) == 1
    out = capsys.readouterr().out
    assert "ks/lr0.001" in out and "FAILED" in out and "0 of 1 runs finished" in out
    assert not (tmp_path / "superb.csv").exists()


@pytest.mark.slow
def test_superb_grid_on_the_local_executor_survives_a_preemption(tmp_path, cache, capsys):
    checkpoint = make_checkpoint(tmp_path / "tiny")
    data = make_speech_commands(tmp_path / "data")
    make_voxceleb1(data / "VoxCeleb1")
    runs, results = tmp_path / "runs", tmp_path / "superb.csv"
    grid = ["superb", "run", "--upstream", "learn2diss_local", "-k", str(checkpoint), "--tasks", "ks,asv",
            "--lrs", "1e-3", "--data-root", str(data), "--out", str(runs), "--results", str(results.parent), "--smoke",
            "--set", "runner.total_steps=20", "--set", "runner.save_step=10", "--set", "runner.max_keep=2",
            "--model-name", "tiny",
            "--device", "cpu"]
    cluster = ["--launcher", "local", "--gpus-per-node", "0", "--cpus-per-task", "1", "--time", "60"]
    try:
        _grid_survives_a_preemption(grid, cluster, runs, results, capsys)
    finally:
        _kill_jobs(runs)


def _grid_survives_a_preemption(grid: list[str], cluster: list[str], runs: Path, results: Path, capsys) -> None:
    assert cli([*grid, *cluster, "--no-wait"]) == 0
    assert "submitted 2 SUPERB run(s) (local)" in capsys.readouterr().out
    assert cli(["superb", "status", "--out", str(runs)]) == 1  # submitted, not finished
    assert "RUNNING" in capsys.readouterr().out
    assert cli([*grid, *cluster, "--no-wait"]) == 1  # the same grid again: its runs are active, nothing resubmitted
    assert "2 run(s) of an earlier submission are still active" in capsys.readouterr().out

    # preempt the KS job at step 10 of 20: freeze its s3prl process as soon as states-10.ckpt is there (the
    # launcher writes checkpoints atomically: one that exists is complete), then send SIGUSR2 as Slurm does
    ks = runs / "ks" / "lr0.001"
    deadline = time.time() + 3600  # only against a hang: every wait below is on an event, not on a speed
    while not (ks / "states-10.ckpt").exists():
        assert time.time() < deadline, "KS never saved states-10.ckpt"
        time.sleep(0.02)
    record = json.loads((runs / "submitit" / "jobs.json").read_text())
    ks_job = next(r["job_id"] for r in record["runs"] if r["task"] == "ks")
    (task,) = _job_tasks(ks_job)
    trainers = _job_tasks(str(task))  # the s3prl run; none when it has already exited
    for pid in trainers:
        os.kill(pid, signal.SIGSTOP)
    # with its trainer frozen, what is on disk can no longer change: the case this run checks is decided here
    finished_first = (ks / "states-20.ckpt").exists()
    os.kill(task, signal.SIGUSR2)  # submitit checkpoints and requeues; the frozen s3prl process is killed with its job

    while cli(["superb", "status", "--out", str(runs)]) != 0:
        states = capsys.readouterr().out
        assert time.time() < deadline and "FAILED" not in states and "LOST" not in states, states
        time.sleep(2)
    assert "2 of 2 runs finished" in capsys.readouterr().out
    log = "".join(p.read_text() for p in (runs / "submitit").glob(f"{ks_job}_0_log.*"))
    assert "this job is preempted" in log and "Requeued job" in log
    assert (ks / "states-20.ckpt").exists()
    train_log = ks / "learn2diss_train.log"
    if finished_first:  # KS had saved its last step before it could be frozen: the requeued job skips training
        case = "KS had finished training before the preemption; the requeued job only evaluated it"
        assert not train_log.exists() or f"-m train -e {ks}" not in train_log.read_text()
    else:
        case = "KS preempted at states-10.ckpt; the requeued job resumed s3prl from it"
        assert f"-m train -e {ks}" in train_log.read_text()
        assert f"Resume from {ks / 'states-10.ckpt'}" in train_log.read_text()
    with capsys.disabled():
        print(f"\n[preemption case] {case}")

    # every run finished: the same command submits nothing and collects the CSV
    assert cli([*grid, *cluster]) == 0
    assert "every run of the grid is finished" in capsys.readouterr().out
    rows = read_rows(results)
    assert sorted((r.condition, r.metric) for r in rows) == [("frame/KS", "acc"), ("utt/ASV", "eer")]
    assert all(r.status in ("", "ok", "last-checkpoint") and 0 <= r.value <= 100 for r in rows)
