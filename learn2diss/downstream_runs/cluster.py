"""The SUPERB grid on a scheduler: one submitit job per (task, learning rate, fold).

``learn2diss superb run --launcher slurm|local`` submits every run of the grid that has no result
yet as a job (a Slurm job array with ``slurm``) and records them in ``OUT/submitit/jobs.json``. A
job trains (or resumes, or skips) and evaluates its run with the same functions as the local grid
(:mod:`learn2diss.downstream_runs.runner`), so a run's folder, its ``learn2diss_result.json`` and
the skip/resume rules are the same. Preempted jobs are requeued by submitit and resume from
s3prl's last ``states-*.ckpt``.

By default the command waits for the jobs, then collects the results into ``results/superb.csv``
exactly as the local grid does (every run is finished by then, so nothing is trained again).
With ``--no-wait`` it returns after submitting; ``learn2diss superb status --out OUT`` prints the
state of every run, and the same ``superb run`` command, once they are finished, submits nothing
and collects the CSV.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learn2diss.errors import Learn2DissError
from learn2diss.io import FileReadError, read_json, write_json
from learn2diss.launch import (
    StateRecording,
    add_launcher_arguments,
    make_executor,
    read_state,
    wait_for,
)

__all__ = ["add_cluster_arguments", "run_on_cluster", "grid_runs", "status", "SuperbRunJob", "JOBS_FILE"]

JOBS_FILE = "jobs.json"


class ClusterError(Learn2DissError, RuntimeError):
    """Jobs of the grid that failed, or a jobs file that is missing; the message names the logs."""


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    add_launcher_arguments(parser, multi_node=False)  # with --wait/--no-wait (`learn2diss superb status` follows them)


@dataclass(frozen=True)
class GridRun:
    task: str
    lr: float
    fold: str | None

    @property
    def name(self) -> str:
        return f"{self.task}/lr{self.lr:g}" + (f"/{self.fold}" if self.fold else "")


class SuperbRunJob(StateRecording):
    """Train (or resume, or skip) and evaluate one run of the grid; requeued as is on preemption. Its state file
    holds the test metrics (or the error)."""

    def __init__(self, run: GridRun, spec: Any, need_dev: bool) -> None:
        self.grid_run, self.spec, self.need_dev = run, spec, need_dev

    def run(self) -> dict:
        from learn2diss.downstream_runs.runner import train_and_evaluate
        from learn2diss.downstream_runs.tasks import TASKS

        run = self.grid_run
        return train_and_evaluate(TASKS[run.task], self.spec, run.lr, run.fold, self.need_dev)

    def summary(self, result: object) -> dict:
        return {"run": self.grid_run.name, "test": result.get("test") if isinstance(result, dict) else None}


def grid_runs(tasks: list, spec: Any, lrs: list[float] | None) -> list[tuple[GridRun, bool]]:
    """Every (run, needs a dev score) of the grid, in the local grid's order."""
    from learn2diss.downstream_runs.runner import default_lrs, task_folds

    out = []
    for task in tasks:
        task_lrs = lrs or default_lrs(task, spec)
        out += [(GridRun(task.name, lr, fold), len(task_lrs) > 1) for lr in task_lrs for fold in task_folds(task, spec)]
    return out


def _finished(run: GridRun, spec: Any, need_dev: bool) -> bool:
    from learn2diss.downstream_runs.runner import RESULT_FILE, lr_dir
    from learn2diss.downstream_runs.tasks import TASKS

    path = lr_dir(spec.out, TASKS[run.task], run.lr, run.fold) / RESULT_FILE
    return path.is_file() and (not need_dev or read_json(path, "run result").get("dev") is not None)


def _jobs_path(out: Path, args: argparse.Namespace | None = None) -> Path:
    folder = (args.jobs_dir if args is not None and args.jobs_dir else None) or Path(out) / "submitit"
    return Path(folder) / JOBS_FILE


def run_on_cluster(args: argparse.Namespace, tasks: list, spec: Any, lrs: list[float] | None) -> int | None:
    """Submit the unfinished runs; ``None`` when every run is finished (the caller collects), else an exit code."""
    runs = [(run, need_dev) for run, need_dev in grid_runs(tasks, spec, lrs) if not _finished(run, spec, need_dev)]
    jobs_path = _jobs_path(spec.out, args)
    if not runs:
        print("every run of the grid is finished; collecting the results")
        return None
    active = _active_runs(jobs_path)
    if active:
        print(f"{len(active)} run(s) of an earlier submission are still active, not submitted again: "
              + ", ".join(f"{name} (job {job_id})" for name, job_id in active.items()))
        runs = [(run, need_dev) for run, need_dev in runs if run.name not in active]
        if not runs:
            print(f"wait for them: `learn2diss superb status --out {spec.out}`, then run this command again")
            return 1
    spec = _absolute(spec)
    executor = make_executor(args, jobs_path.parent, "l2d-superb")
    with executor.batch():  # one Slurm job array
        jobs = [executor.submit(SuperbRunJob(run, spec, need_dev)) for run, need_dev in runs]
    kept = [e for e in read_json(jobs_path, "jobs file")["runs"] if e["run"] in active] if active else []
    record = {"launcher": args.launcher, "folder": str(jobs_path.parent.resolve()),
              "runs": kept + [{"run": run.name, "task": run.task, "lr": run.lr, "fold": run.fold, "need_dev": need_dev,
                               "job_id": job.job_id} for (run, need_dev), job in zip(runs, jobs, strict=True)]}
    write_json(jobs_path, record)
    print(f"submitted {len(jobs)} SUPERB run(s) ({args.launcher}), recorded in {jobs_path}")
    if not args.wait:
        print(f"check them with `learn2diss superb status --out {spec.out}`")
        return 0
    failed = []
    for (run, _), job in zip(runs, jobs, strict=True):
        state = wait_for(job)  # the job's state file and the scheduler's state: no pickle is read
        if state["status"] != "completed":
            failed.append(f"{run.name}: job {job.job_id}, log {job.paths.stderr}: {state['error']}")
    if failed:
        raise ClusterError(f"{len(failed)} of {len(jobs)} runs failed (rerun the same command to resubmit them):\n  "
                           + "\n  ".join(failed))
    if active:
        print(f"the runs of the earlier submission may still be running: `learn2diss superb status --out {spec.out}`, "
              "then run this command again to collect")
        return 1
    return None


def _active_runs(jobs_path: Path) -> dict[str, str]:
    """run name -> job id of the runs in ``jobs_path`` whose job is still pending or running."""
    if not jobs_path.is_file():
        return {}
    record = read_json(jobs_path, "jobs file")
    states = {entry["run"]: (entry["job_id"], _job_state(record["launcher"], record["folder"], entry["job_id"]))
              for entry in record["runs"]}
    return {name: job_id for name, (job_id, state) in states.items() if state.split(" ")[0] in ACTIVE}


def _absolute(spec: Any) -> Any:
    from dataclasses import replace

    checkpoint = os.path.abspath(spec.checkpoint) if spec.checkpoint and os.path.exists(spec.checkpoint) else spec.checkpoint
    return replace(spec, out=Path(spec.out).resolve(), data_root=Path(spec.data_root).resolve(), checkpoint=checkpoint)


ACTIVE = ("RUNNING", "PENDING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def _job_state(launcher: str, folder: str, job_id: str) -> str:
    """The state file the job wrote (JSON: completed, or failed with its error), else the scheduler's state: a
    local job's controller (pid = job id) alive or not, Slurm's from sacct. No result pickle is read."""
    try:
        state = read_state(folder, job_id) or {}
    except FileReadError as err:
        return f"UNKNOWN ({err})"
    if state.get("status") == "completed":
        return "COMPLETED"
    if state.get("status") == "failed":
        return f"FAILED ({(state.get('error') or 'no reason recorded').splitlines()[0]})"
    if launcher == "local":
        cmdline = Path(f"/proc/{job_id}/cmdline")
        alive = cmdline.is_file() and b"submitit" in cmdline.read_bytes()
        return "RUNNING" if alive else "LOST (no process, no result)"
    import submitit

    try:
        return str(submitit.SlurmJob(folder=folder, job_id=job_id).state)
    except Exception as err:  # noqa: BLE001 - sacct may have forgotten old jobs
        return f"UNKNOWN ({type(err).__name__})"


def status(out: Path, jobs_dir: Path | None = None) -> tuple[list[tuple[str, str, str]], dict]:
    """``[(run, job id, state)]`` and the jobs record; a run with a result file is ``finished``."""
    from learn2diss.downstream_runs.runner import RESULT_FILE, lr_dir
    from learn2diss.downstream_runs.tasks import TASKS

    path = (Path(jobs_dir) if jobs_dir else Path(out) / "submitit") / JOBS_FILE
    if not path.is_file():
        raise ClusterError(f"{path}: no jobs recorded; submit the grid with `learn2diss superb run --launcher ...`")
    record = read_json(path, "jobs file")
    rows = []
    for entry in record["runs"]:
        result = lr_dir(Path(out), TASKS[entry["task"]], entry["lr"], entry["fold"]) / RESULT_FILE
        done = result.is_file() and (not entry["need_dev"] or read_json(result, "run result").get("dev") is not None)
        state = "finished" if done else _job_state(record["launcher"], record["folder"], entry["job_id"])
        rows.append((entry["run"], entry["job_id"], state))
    return rows, record
