"""Run SUPERB tasks (paper Table 2) with s3prl and collect the test metrics into results/superb.csv.

Each task and learning rate is one s3prl run in OUT/<task>/lr<LR> (ER: one per fold); finished runs
are skipped, interrupted ones resumed. The SUPERB protocol: frozen upstream, weighted sum of the
layers of the task's key (frame layers for PR/ASR/KS/IC/SF, utterance layers for SID/ASV/ER), only
the learning rate swept; the best dev learning rate is reported (ASV: best test EER, as SUPERB).
A task that fails does not stop the others: its rows say `failed` (with the reason) in the results
CSV, a summary lists every task's status and wall time, and the exit code is 1 (--fail-fast stops
at the first failure instead). --smoke runs the tiny settings of downstream_runs/smoke.py.

Examples::

    learn2diss superb run --upstream learn2diss_w12 -k ckpt/l2d_w12 --tasks asv,sid --data-root /data --out runs/superb
    learn2diss superb run --upstream learn2diss_w12 -k ckpt/l2d_w12 --tasks all --lrs 1e-4,1e-3,1e-2 \\
        --data-root /data --out runs/superb --model-name L2D-W12
    learn2diss superb run --upstream learn2diss_local -k ckpt/demo --smoke --data-root demo_superb --out runs/smoke
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", required=True, help="s3prl upstream name, e.g. learn2diss_w12, learn2diss_local")
    parser.add_argument("-k", "--checkpoint", help="checkpoint directory (s3prl -k)")
    parser.add_argument("--tasks", default="all", help="comma-separated: pr,asr,ks,ic,sf,sid,asv,er or all")
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding the datasets under their published names (docs/superb.md)")
    parser.add_argument("--out", type=Path, default=Path("runs/superb"), help="run folders (default runs/superb)")
    parser.add_argument("--lrs", help="learning rates to sweep, comma-separated (default: each task config's)")
    parser.add_argument("--feature-key", help="s3prl -s for every task (default: each task's key)")
    parser.add_argument("--override", default="", help="extra s3prl -o options for training, e.g. "
                        "\"config.runner.total_steps=1000\"")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--results", type=Path, default=Path("results/superb.csv"), help="results CSV")
    parser.add_argument("--model-name", help="model name in the results and tables (default from --upstream, "
                        "learn2diss_w12 -> L2D-W12)")
    parser.add_argument("--variant", default="", help="ablation variant for Tables 5/6 (no-mi, final-layers)")
    from learn2diss.downstream_runs.cluster import add_cluster_arguments

    add_cluster_arguments(parser)  # --launcher slurm|local, --no-wait, resources (downstream_runs/cluster.py)
    parser.add_argument("--smoke", action="store_true", help="tiny settings that check the plumbing in minutes "
                        "(downstream_runs/smoke.py; numbers not comparable with Table 2)")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first task that fails "
                        "(default: record it as failed and go on)")


def model_name(upstream: str, checkpoint: str | None) -> str:
    if upstream.startswith("learn2diss_") and upstream != "learn2diss_local":
        return "L2D-" + upstream.removeprefix("learn2diss_").upper()
    return Path(checkpoint).name if checkpoint else upstream


def run(args: argparse.Namespace) -> int:
    from learn2diss.downstream_runs.runner import RunSpec
    from learn2diss.downstream_runs.runner import run as run_superb
    from learn2diss.downstream_runs.tasks import parse_tasks

    tasks = parse_tasks(args.tasks)
    if args.feature_key and args.upstream.startswith("learn2diss_"):
        from learn2diss.upstream.expert import check_feature_key

        check_feature_key(args.feature_key)
    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else None
    spec = RunSpec(upstream=args.upstream, checkpoint=args.checkpoint, data_root=args.data_root, out=args.out,
                   override=args.override, device=args.device, feature_key=args.feature_key, smoke=args.smoke)
    if args.launcher:  # one submitit job per (task, LR, fold); collected below once all are finished
        from learn2diss.downstream_runs.cluster import run_on_cluster

        if (code := run_on_cluster(args, tasks, spec, lrs)) is not None:
            return code
    cells = run_superb(tasks, spec, lrs, args.results, args.model_name or model_name(args.upstream, args.checkpoint),
                       args.variant, fail_fast=args.fail_fast)
    print(summary(cells))
    print(f"wrote {args.results}")
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
