"""Regenerate the paper's Tables 2-8 from a results folder, with the paper's numbers beside yours.

Reads every results CSV in --results (written by the eval commands and the SUPERB runner) and writes
table<ID>.md / .tex / .csv and tables.md into --out. Each model gets a paper row, a row with your
numbers and their provenance (checkpoint hash, config, date, datasets), and a difference row; name your
models like the paper's (--model-name L2D-H12) to line them up. Positional names pick tables or groups:
2-8, probes, superb (= 2, 5, 6), all (default).

Examples::

    learn2diss tables --results results/ --out tables/
    learn2diss tables 3 8 --results results/ --out tables/
    learn2diss tables superb --results results/ --out tables/
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", default=[], metavar="TABLE",
                        help="table ids (2 .. 8, probes) or groups (all, superb); default all")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default results/)")
    parser.add_argument("--out", type=Path, default=Path("tables"), help="output folder (default tables/)")


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.tables import render_tables

    paths = render_tables(args.results, args.out, args.names)
    print(paths[-1].read_text())
    print(f"wrote {len(paths)} files to {args.out}")
    return 0
