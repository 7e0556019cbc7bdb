"""Regenerate the paper's Tables 2-8 from a results folder, with the paper's numbers beside yours.

Reads every results CSV in --results (written by the eval commands and the SUPERB runner) and writes
table<ID>.md / .tex / .csv and tables.md into --out. Each model gets a paper row, a row with your
numbers and their provenance (checkpoint hash, config, date, datasets), and a difference row; name your
models like the paper's (--model-name L2D-H12) to line them up. Positional names pick tables or groups:
2-8, probes, superb (= 2, 5, 6), all (default).

Examples (the results folder the eval commands write to by default; an empty one gives the paper's rows)::

    learn2diss tables --results results/ --out tables/
    learn2diss tables 3 8 --results results/ --out tables/
    learn2diss tables superb --results results/ --out tables/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from learn2diss.options import add_results_argument, input_folder, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", default=[], metavar="TABLE",
                        help="table ids (2 .. 8, probes) or groups (all, superb); default all")
    add_results_argument(parser)
    parser.add_argument("--out", type=Path, default=Path("tables"), help="output folder (default tables/)")


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.tables import render_tables

    paths = render_tables(input_folder(args.results, "--results"), output_folder(args.out, "--out"), args.names)
    print(paths[-1].read_text())
    print(f"wrote {len(paths)} files to {args.out}")
    return 0
