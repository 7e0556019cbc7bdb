"""Check a ZeroSpeech 2021 phonetic (abxLS) submission package against its dataset, listing every problem.

The rules of the zerospeech-benchmarks abxLS validator: per subset, one feature file per wav of
ROOT/phonetic/<subset> (extra and missing files), each a numpy array of float64 with 2 dimensions, at
least 2 frames and the same number of columns as the subset's other files; meta.yaml with every required
field and no template value; params.yaml with valid ABX parameters. Exit status 0 when valid, 2 otherwise.

Example (not run: needs the ZeroSpeech 2021 dataset)::

    learn2diss zerospeech validate submission/l2d_w12 --zr2021 /data/zerospeech2021
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="the submission folder (meta.yaml, params.yaml, four subsets)")
    parser.add_argument("--zr2021", type=Path, required=True, metavar="ROOT",
                        help="the ZeroSpeech 2021 dataset folder the package was made from")


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.commands.zerospeech_submit import print_problems
    from learn2diss.eval.zerospeech import InvalidPackage, read_dataset, validate_package

    problems = validate_package(args.package, read_dataset(args.zr2021))
    if problems:
        print_problems(problems)
        raise InvalidPackage(args.package, problems)
    print(f"{args.package}: valid abxLS package")
    return 0
