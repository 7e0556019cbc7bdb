"""State of a SUPERB grid submitted with `learn2diss superb run --launcher slurm|local`.

Reads OUT/submitit/jobs.json: a run with its result file is `finished`; the others show the
scheduler's state of their job (PENDING, RUNNING, FAILED, ...; submitit asks sacct on Slurm).
When every run is finished, the same `superb run ... --launcher ...` command submits nothing and
collects results/superb.csv. Exit status 0 when all are finished, 1 otherwise.

Example (not run: needs a grid submitted with --launcher)::

    learn2diss superb status --out runs/superb
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/superb"), help="run folders (default runs/superb)")
    parser.add_argument("--jobs-dir", type=Path, help="submitit folder given to superb run (default OUT/submitit)")


def run(args: argparse.Namespace) -> int:
    from learn2diss.downstream_runs.cluster import status

    rows, record = status(args.out, args.jobs_dir)
    width = max(len(r[0]) for r in rows)
    print(f"{'run':{width}s}  {'job':>12s}  state")
    for name, job_id, state in rows:
        print(f"{name:{width}s}  {job_id:>12s}  {state}")
    finished = sum(state == "finished" for _, _, state in rows)
    print(f"{finished} of {len(rows)} runs finished ({record['launcher']}; job logs in {record['folder']})")
    return 0 if finished == len(rows) else 1
