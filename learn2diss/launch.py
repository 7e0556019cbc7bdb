"""Run pretraining and SUPERB jobs on a Slurm cluster (or locally) through ``submitit``.

``--launcher slurm`` submits with submitit's Slurm executor (``sbatch`` + ``srun``, one task per
GPU); ``--launcher local`` runs the same jobs through submitit's local executor, on this machine
(how the tests run them). Jobs are :class:`submitit.helpers.Checkpointable`: on preemption or
time-out Slurm sends ``SIGUSR2`` (``--signal-delay`` seconds before the end), submitit calls the
job's ``checkpoint()`` and requeues it, and the requeued job resumes from the last checkpoint on
disk (pretraining: ``--resume``; SUPERB: s3prl's ``states-*.ckpt``). Logs and submitit's pickles
go to ``--jobs-dir`` (default ``OUT/submitit``).

Each job writes its state (running, completed or failed, with the error's text) to
``JOBS_DIR/<job id>_state.json`` (:func:`record_state`); waiting for a job and ``superb status`` read that
file and the scheduler's state, never a result pickle (:func:`wait_for`). The one pickle left is submitit's
own: the job process unpickles ``<job id>_submitted.pkl`` to know what to run, so keep the jobs folder
writable by you alone.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable as _Checkpointable

from learn2diss.errors import Learn2DissError

__all__ = ["LaunchError", "add_launcher_arguments", "make_executor", "parse_time", "PretrainJob", "submit_pretrain",
           "record_state", "read_state", "wait_for", "StateRecording"]


class LaunchError(Learn2DissError, ValueError):
    """Bad launcher options (time, Slurm options) or a job that failed; the message names the log."""


def add_launcher_arguments(parser: argparse.ArgumentParser, multi_node: bool) -> None:
    group = parser.add_argument_group("cluster (submitit)")
    group.add_argument("--launcher", choices=("slurm", "local"),
                       help="submit through submitit instead of running here: slurm, or local (this machine)")
    if multi_node:
        group.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    group.add_argument("--gpus-per-node", type=int, default=1 if not multi_node else 8,
                       help="GPUs per node, one process each (default %(default)s; 0: CPU processes)")
    if multi_node:
        group.add_argument("--tasks-per-node", type=int,
                           help="processes per node (default: --gpus-per-node, or 1 without GPUs)")
    group.add_argument("--cpus-per-task", type=int, default=10, help="CPU cores per process (data workers + 1)")
    group.add_argument("--mem-gb", type=float, help="memory per node in GB (default: the partition's)")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--time", default="48:00:00", help="time limit per job: [D-]HH:MM:SS or minutes "
                       "(default 48:00:00); preempted or timed-out jobs are requeued and resume")
    group.add_argument("--signal-delay", type=int, default=120,
                       help="seconds before the time limit that Slurm sends SIGUSR2 (default 120)")
    group.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="extra #SBATCH option, e.g. account=abc, qos=high, constraint=h100 (repeatable)")
    group.add_argument("--jobs-dir", type=Path, help="submitit logs and job files (default OUT/submitit)")
    from learn2diss.options import add_wait_argument

    add_wait_argument(group, "follow them with the command the submission prints")


def parse_time(text: str) -> int:
    """Minutes of a Slurm time limit ``[D-]HH:MM:SS`` or a plain number of minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)|(\d+)", text.strip())
    if not match:
        raise LaunchError(f"--time {text!r}: expected [D-]HH:MM:SS or minutes")
    days, hours, minutes, seconds, plain = (int(x) if x else 0 for x in match.groups())
    if match.group(5):
        return plain
    return days * 24 * 60 + hours * 60 + minutes + (1 if seconds else 0)


def _slurm_options(options: list[str]) -> dict[str, str]:
    out = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise LaunchError(f"--slurm-option {option!r}: expected KEY=VALUE")
        out[key.strip().replace("_", "-")] = value.strip()
    return out


def make_executor(args: argparse.Namespace, folder: Path, name: str, nodes: int = 1,
                  tasks_per_node: int | None = None) -> Any:
    """A submitit executor for ``--launcher`` with the resources of ``args``."""
    import submitit

    gpus = max(args.gpus_per_node, 0)
    tasks = tasks_per_node or max(gpus, 1)
    if args.launcher == "slurm" and shutil.which("srun") is None:
        raise LaunchError("--launcher slurm: no srun on PATH; submit from a Slurm login node (or use --launcher local)")
    executor = submitit.AutoExecutor(folder=str(folder), cluster=args.launcher)
    params: dict[str, Any] = {"name": name, "timeout_min": parse_time(args.time), "nodes": nodes,
                              "tasks_per_node": tasks, "cpus_per_task": args.cpus_per_task}
    if gpus:
        params["gpus_per_node"] = gpus
    if args.launcher == "slurm":
        params |= {"slurm_signal_delay_s": args.signal_delay, "slurm_additional_parameters": _slurm_options(
            args.slurm_option)}
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.mem_gb:
            params["mem_gb"] = args.mem_gb
    elif nodes != 1:
        raise LaunchError("--launcher local runs on one node: use --nodes 1")
    executor.update_parameters(**params)
    return executor


def _export_distributed_environment() -> None:
    """Inside a submitit job of several tasks: MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK for ``env://``."""
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        # every task sees all the node's GPUs; learn2diss.training.ddp picks cuda:LOCAL_RANK
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


STATE_FILE = "{job_id}_state.json"


def state_path(folder: str | os.PathLike[str], job_id: str) -> Path:
    """Where the job ``job_id`` of the jobs folder ``folder`` records its state."""
    return Path(folder) / STATE_FILE.format(job_id=job_id)


def record_state(status: str, **info: object) -> None:
    """Inside a submitit job (its first task): write ``{"status": status, ...info}`` to the job's state file."""
    import socket
    import time

    import submitit

    from learn2diss.io import write_json

    env = submitit.JobEnvironment()
    if env.global_rank == 0:
        write_json(state_path(env.paths.folder, env.job_id), {
            "status": status, "job_id": env.job_id, "host": socket.gethostname(), "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info})


def read_state(folder: str | os.PathLike[str], job_id: str) -> dict | None:
    """The state a job recorded (JSON; None before it started); an unreadable file is a ``FileReadError``."""
    from learn2diss.io import read_json

    path = state_path(folder, job_id)
    return read_json(path, "job state file") if path.is_file() else None


class StateRecording(_Checkpointable):
    """A submitit job that records its state: ``running``, then ``completed`` (with :meth:`summary` of the result)
    or ``failed`` (with the error's text). A preemption (submitit's ``SystemExit``) leaves ``running``: the
    requeued job records again."""

    def __call__(self) -> object:
        record_state("running")
        try:
            result = self.run()
        except Exception as err:
            import traceback

            record_state("failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-4000:])
            raise
        record_state("completed", **self.summary(result))
        return result

    def run(self) -> object:
        raise NotImplementedError

    def summary(self, result: object) -> dict:
        return {}


def wait_for(job: Any, poll: float = 1.0) -> dict:
    """Wait until ``job`` is over (the scheduler's state: no pickle is read) and return the state it recorded;
    a job that ended without recording one (killed, out of memory) is ``{"status": "failed", "error": ...}``."""
    import time

    while not job.done():
        time.sleep(poll)
    state = read_state(job.paths.folder, job.job_id)
    if state is None or state.get("status") not in ("completed", "failed"):
        return {"status": "failed", "error": f"the job ended without recording a result (state {state and state.get('status')}): "
                                             "killed, out of memory or time?"}
    return state


class PretrainJob(StateRecording):
    """``learn2diss pretrain ARGV --resume`` in every task of a submitit job; requeued as is on preemption."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def run(self) -> str:
        _export_distributed_environment()
        from learn2diss.commands import run_command

        run_command("pretrain", *self.argv)
        return self.argv[self.argv.index("--out") + 1]


def pretrain_argv(args: argparse.Namespace) -> list[str]:
    """The ``learn2diss pretrain`` arguments a job runs: absolute paths, ``--resume`` always (a fresh run has no
    checkpoint to resume from)."""
    from learn2diss.pretrain.config import config_path

    argv = [args.stage, "--config", str(config_path(args.config).resolve()), "--data", os.path.abspath(args.data),
            "--out", os.path.abspath(args.out), "--resume"]
    if args.parent:
        argv += ["--parent", os.path.abspath(args.parent)]
    if args.random_parent:
        argv.append("--random-parent")
    if args.device:
        argv += ["--device", args.device]
    for item in args.set:
        argv += ["--set", item]
    return argv


def submit_pretrain(args: argparse.Namespace, wait: bool) -> int:
    """Submit the pretraining stages as one job of ``nodes x tasks`` processes; wait for it with ``wait``."""
    folder = args.jobs_dir or Path(args.out) / "submitit"
    tasks = args.tasks_per_node or max(args.gpus_per_node, 1)
    executor = make_executor(args, folder, f"l2d-pretrain-{Path(args.out).name}", args.nodes, tasks)
    job = executor.submit(PretrainJob(pretrain_argv(args)))
    print(f"submitted pretraining job {job.job_id} ({args.launcher}: {args.nodes} node(s) x {tasks} process(es)); "
          f"logs in {folder}")
    if not wait:
        print(f"follow it with `tail -f {folder}/{job.job_id}_0_log.out`; a requeued job resumes by itself")
        return 0
    state = wait_for(job)
    if state["status"] != "completed":
        raise LaunchError(f"pretraining job {job.job_id} failed; logs {folder}/{job.job_id}_0_log.err:\n"
                          f"{state.get('traceback') or state['error']}")
    print(f"job {job.job_id} finished")
    return 0
