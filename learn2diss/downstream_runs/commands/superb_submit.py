"""Package SUPERB runs for the leaderboard: the public-set predict.zip and a hidden-set model package.

predict.zip holds predict/<task>_public/predict.* from the run folders of `learn2diss superb run`
(ER: all five folds or none), each file checked, and the zip is checked against the public-set
format; tasks without predictions are left out and listed; with --checkpoint, OUT/model_package gets the
expert, hubconf, checkpoint and requirements for a hidden-set upload. Every input is checked before anything
is written; a prediction or checkpoint file that is a symbolic link is refused.

Examples (not run: need the run folders of a SUPERB grid, `learn2diss superb run`)::

    learn2diss superb submit --runs runs/superb --out submission --results results/
    learn2diss superb submit --runs runs/superb --out submission --checkpoint ckpt/l2d_w12
"""

from __future__ import annotations

import argparse
from pathlib import Path

from learn2diss.options import add_checkpoint_argument, input_file, input_folder, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=Path, required=True, help="the --out folder of learn2diss superb run")
    parser.add_argument("--out", type=Path, required=True, help="where predict.zip (and model_package/) go")
    parser.add_argument("--tasks", default="all", help="comma-separated tasks to include (default: all that ran)")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="results folder whose superb.csv records each task's chosen learning rate (default "
                             "results/, where a missing superb.csv means: the best dev score of each task's runs)")
    add_checkpoint_argument(parser, "Learn2Diss checkpoint folder: also build the hidden-set model package")


def run(args: argparse.Namespace) -> int:
    from learn2diss.downstream_runs.commands.superb_run import results_csv
    from learn2diss.downstream_runs.submit import check_submission, write_submission
    from learn2diss.downstream_runs.tasks import parse_tasks

    input_folder(args.runs, "--runs")
    output_folder(args.out, "--out")
    if args.checkpoint is not None:
        input_folder(args.checkpoint, "--checkpoint")
    if args.results is None:  # the default folder: its superb.csv is used when it is there
        results = Path("results/superb.csv")
    else:  # named: it must hold the results
        results = input_file(results_csv(args.results), "--results")
    # everything is read and checked before anything is written: a refused checkpoint leaves no predict.zip
    submission = check_submission(args.runs, args.out, parse_tasks(args.tasks), results, args.checkpoint)
    package = write_submission(submission, args.out)
    written = submission.predict
    for name in written.members:
        print(name)
    for task, reason in written.missing.items():
        print(f"missing {task}: {reason}")
    print(f"wrote {written.path} ({len(written.members)} members, checked against the public-set format"
          f"{'; missing: ' + ', '.join(written.missing) if written.missing else ''})")
    if package is not None:
        print(f"wrote {package}")
    return 0
