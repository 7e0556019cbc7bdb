"""Run SUPERB tasks (paper Table 2) with s3prl and collect the test metrics into results/superb.csv.

Each task and learning rate is one s3prl run in OUT/<task>/lr<LR> (ER: one per fold); finished runs
are skipped, interrupted ones resumed. The SUPERB protocol: frozen upstream, weighted sum of the
layers of the task's key (frame layers for PR/ASR/KS/IC/SF, utterance layers for SID/ASV/ER), only
the learning rate swept; the best dev learning rate is reported (ASV: best test EER, as SUPERB).
A task that fails does not stop the others: its rows say `failed` (with the reason) in the results
CSV, a summary lists every task's status and wall time, and the exit code is 1 (--fail-fast stops
at the first failure instead). --smoke runs the tiny settings of downstream_runs/smoke.py.

Examples (not run: need the SUPERB datasets under --data-root, docs/superb.md; the first is the smoke grid)::

    learn2diss superb run --upstream learn2diss_local --checkpoint runs/demo/checkpoints/lambda-default-seed0 \\
        --smoke --data-root /data --out runs/smoke
    learn2diss superb run --upstream learn2diss_w12 --checkpoint ckpt/l2d_w12 --tasks asv,sid --data-root /data \\
        --out runs/superb
    learn2diss superb run --upstream learn2diss_w12 --checkpoint ckpt/l2d_w12 --tasks all --lrs 1e-4,1e-3,1e-2 \\
        --data-root /data --out runs/superb --model-name L2D-W12 --set runner.total_steps=100000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from learn2diss.errors import UsageError
from learn2diss.options import (
    add_deprecated,
    add_results_argument,
    add_set_argument,
    input_folder,
    output_file,
    output_folder,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", required=True, help="s3prl upstream name, e.g. learn2diss_w12, learn2diss_local")
    parser.add_argument("-k", "--checkpoint", metavar="DIR", help="Learn2Diss checkpoint folder (s3prl's -k)")
    parser.add_argument("--tasks", default="all", help="comma-separated: pr,asr,ks,ic,sf,sid,asv,er or all")
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding the datasets under their published names (docs/superb.md)")
    parser.add_argument("--out", type=Path, default=Path("runs/superb"), help="run folders (default runs/superb)")
    parser.add_argument("--lrs", help="learning rates to sweep, comma-separated (default: each task config's)")
    parser.add_argument("--feature-key", help="s3prl -s for every task (default: each task's key)")
    overrides = add_set_argument(parser, "runner.total_steps=1000")
    overrides.help = (overrides.help or "") + ("; a key of the task config, or args.NAME for s3prl's arguments (passed to s3prl as "
                       "-o config.KEY=VALUE)")
    add_deprecated(parser, "--override", overrides, convert=lambda text: [o.strip() for o in text.split(",,")],
                   note="one --set per s3prl -o option")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    add_results_argument(parser).help = ("results folder: the selected numbers are merged into DIR/superb.csv "
                                         "(default results/)")
    parser.add_argument("--model-name", help="model name in the results and tables (default from --upstream, "
                        "learn2diss_w12 -> L2D-W12)")
    parser.add_argument("--variant", default="", help="ablation variant for Tables 5/6 (no-mi, final-layers)")
    from learn2diss.downstream_runs.cluster import add_cluster_arguments

    add_cluster_arguments(parser)  # --launcher slurm|local, --wait/--no-wait, resources (downstream_runs/cluster.py)
    parser.add_argument("--smoke", action="store_true", help="tiny settings that check the plumbing in minutes "
                        "(downstream_runs/smoke.py; numbers not comparable with Table 2)")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first task that fails "
                        "(default: record it as failed and go on)")


def s3prl_overrides(items: list[str]) -> str:
    """s3prl's ``-o`` string of ``--set`` items: ``runner.total_steps=1000`` -> ``config.runner.total_steps=1000``
    (``config.*`` and ``args.*`` keys as they are), joined with s3prl's ``,,``."""
    options = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        key = key.strip()
        options.append(f"{key if key.split('.')[0] in ('config', 'args') else 'config.' + key}={value.strip()}")
    return ",,".join(options)


def results_csv(results: Path) -> Path:
    """``DIR/superb.csv`` of ``--results DIR``; a ``.csv`` file name is still taken as the file for one release."""
    if results.suffix == ".csv" and not results.is_dir():
        print(f"--results {results}: a CSV file name is deprecated, --results names the results folder "
              f"(DIR/superb.csv)", file=sys.stderr)
        return output_file(results, "--results")
    return output_folder(results, "--results") / "superb.csv"


def model_name(upstream: str, checkpoint: str | None) -> str:
    if upstream.startswith("learn2diss_") and upstream != "learn2diss_local":
        return "L2D-" + upstream.removeprefix("learn2diss_").upper()
    return Path(checkpoint).name if checkpoint else upstream


def run(args: argparse.Namespace) -> int:
    from learn2diss.runlock import hold

    with hold(args.out):  # one grid per --out; each run's folder is held by the process that trains it
        return _grid(args)


def _grid(args: argparse.Namespace) -> int:
    from learn2diss.downstream_runs.runner import RunSpec
    from learn2diss.downstream_runs.runner import run as run_superb
    from learn2diss.downstream_runs.tasks import parse_tasks
    from learn2diss.schema import check_device

    tasks = parse_tasks(args.tasks)
    if args.feature_key and args.upstream.startswith("learn2diss_"):
        from learn2diss.upstream.expert import check_feature_key

        check_feature_key(args.feature_key)
    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else None
    results = results_csv(args.results)
    input_folder(args.data_root, "--data-root")
    output_folder(args.out, "--out")
    spec = RunSpec(upstream=args.upstream, checkpoint=args.checkpoint, data_root=args.data_root, out=args.out,
                   override=s3prl_overrides(args.set), device=check_device(args.device), feature_key=args.feature_key,
                   smoke=args.smoke)
    if args.launcher:  # one submitit job per (task, LR, fold); collected below once all are finished
        from learn2diss.downstream_runs.cluster import run_on_cluster

        if (code := run_on_cluster(args, tasks, spec, lrs)) is not None:
            return code
    cells = run_superb(tasks, spec, lrs, results, args.model_name or model_name(args.upstream, args.checkpoint),
                       args.variant, fail_fast=args.fail_fast)
    print(summary(cells))
    print(f"wrote {results}")
    return 1 if any(cell.status == "failed" for cell in cells) else 0


def summary(cells: list) -> str:
    """The end-of-grid table: task, status, metrics (%), wall time, reason; then the counts."""
    lines = ["", "| task | status | metrics | wall s | reason |", "|---|---|---|---:|---|"]
    for cell in cells:
        metrics = ", ".join(f"{row.metric} {row.value:.2f}" for row in cell.rows if row.status != "failed") or "-"
        lines.append(f"| {cell.task.name} | {cell.status} | {metrics} | {cell.seconds:.0f} | {cell.reason or '-'} |")
    counts = {status: sum(cell.status == status for cell in cells) for status in ("ok", "last-checkpoint", "failed")}
    lines.append(f"{len(cells)} tasks: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)
