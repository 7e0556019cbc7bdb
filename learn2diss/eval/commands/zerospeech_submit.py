"""Build a ZeroSpeech 2021 phonetic (abxLS) submission package from a checkpoint, validate and score it.

Extracts the chosen frame features (float64, one .npy per wav) for dev-clean, dev-other, test-clean and
test-other of a ZeroSpeech 2021 dataset folder (ROOT/phonetic/<subset>/*.wav), writes meta.yaml (from
--meta FILE and the flags; authors, institution, description, train set and open_source are required)
and params.yaml (cosine distance, the checkpoint's frame shift, no pooling), and checks the package with
the rules of the zerospeech-benchmarks abxLS validator, listing every problem. The package is built in
.OUT.partial beside OUT and resumed from there; OUT appears only complete and valid. Then our own ABX
(zerospeech-libriabx2) of the subsets whose item file is published goes to OUT.abx.md beside the
package and into RESULTS/abx.csv.

Example (not run: needs the ZeroSpeech 2021 dataset; bench/zerospeech_demo.py lays the demo corpus out as one)::

    learn2diss zerospeech submit --checkpoint ckpt/l2d_w12 --zr2021 /data/zerospeech2021 \\
        --out submission/l2d_w12 --meta meta.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from learn2diss.errors import UsageError


def add_meta_arguments(parser: argparse.ArgumentParser) -> None:
    meta = parser.add_argument_group("meta.yaml (flags override --meta)")
    meta.add_argument("--meta", type=Path, help="YAML file with the keys below (authors, institution, description, "
                                                "train_set, open_source, year, paper_title, paper_url, gpu_budget, "
                                                "code_url, team, author_label, bib_reference, doi)")
    meta.add_argument("--authors", help="full names, separated by commas")
    meta.add_argument("--institution")
    meta.add_argument("--description", help="a description of the system")
    meta.add_argument("--train-set", dest="train_set", help="the data the system was trained on")
    meta.add_argument("--open-source", dest="open_source", action=argparse.BooleanOptionalAction, default=None,
                      help="whether the system's code is open (required)")
    meta.add_argument("--year", type=int, help="publication year (default: this year)")
    meta.add_argument("--paper-title", dest="paper_title")
    meta.add_argument("--paper-url", dest="paper_url")
    meta.add_argument("--gpu-budget", dest="gpu_budget", help="GPU training time, e.g. '60 h on 1 H200'")
    meta.add_argument("--code-url", dest="code_url")
    meta.add_argument("--team")


META_FLAGS = ("authors", "institution", "description", "train_set", "open_source", "year", "paper_title",
              "paper_url", "gpu_budget", "code_url", "team")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from learn2diss.options import add_checkpoint_argument, add_results_argument

    add_checkpoint_argument(parser, "Learn2Diss checkpoint folder (config.yaml + model.safetensors)", required=True)
    parser.add_argument("--zr2021", type=Path, required=True, metavar="ROOT",
                        help="ZeroSpeech 2021 dataset folder (ROOT/phonetic/{dev,test}-{clean,other}/*.wav)")
    parser.add_argument("--out", type=Path, required=True, help="the package folder to write")
    parser.add_argument("--features", default="frame:last",
                        help="frame:last (default), frame:N (hidden state N: 0 = input of layer 1) or frame:mean "
                             "(the mean of g's layers)")
    add_meta_arguments(parser)
    parser.add_argument("--model-name", help="name in the results (default: the checkpoint folder's name)")
    add_results_argument(parser)
    parser.add_argument("--no-score", action="store_true", help="build and validate only, no ABX")
    parser.add_argument("--device", help="torch device for extraction (default: cuda if available)")


def meta_from_args(args: argparse.Namespace):
    from learn2diss.eval.zerospeech import Meta
    from learn2diss.io import read_yaml

    values = read_yaml(args.meta, "meta file") if args.meta else None
    if values is not None and not isinstance(values, dict):
        raise UsageError(f"--meta {args.meta}: expected a mapping of meta.yaml keys")
    return Meta.from_sources(values, {name: getattr(args, name) for name in META_FLAGS})


def print_problems(problems) -> None:
    for problem in problems:
        print(problem)


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.commands.common import open_source
    from learn2diss.eval.features import FeatureSpec, frame_shift
    from learn2diss.eval.results import ResultRow, append_rows
    from learn2diss.eval.zerospeech import (
        InvalidPackage,
        build_package,
        read_dataset,
        score_package,
        score_table,
    )
    from learn2diss.io import write_text

    spec = FeatureSpec.parse(args.features)
    if spec.stream != "frame":
        raise UsageError(f"--features {spec}: a ZeroSpeech package holds frame features (frame:last, frame:N, "
                         "frame:mean)")
    meta = meta_from_args(args)
    meta.to_yaml()  # every missing field named before the checkpoint is loaded
    dataset = read_dataset(args.zr2021)
    source = open_source(argparse.Namespace(checkpoint=args.checkpoint, features_dir=None, model_name=args.model_name,
                                            config_name=None, device=args.device, results=args.results,
                                            work_dir=args.results))
    try:
        out = build_package(source.model, spec, dataset, args.out, meta, device=source.device,
                            log=lambda m: print(m, file=sys.stderr))
    except InvalidPackage as err:
        print_problems(err.problems)
        raise
    counts = ", ".join(f"{s} {len(dataset.wavs[s])}" for s in dataset.wavs)
    print(f"{out}: valid abxLS package, {spec} of {args.checkpoint} ({counts} files)")
    if args.no_score:
        return 0
    shift = frame_shift(source.model)
    scores = score_package(out, dataset, shift)
    provenance = [f"- package: `{out}` ({spec}, frame shift {shift:g} s)",
                  f"- checkpoint: `{args.checkpoint}` (hash `{source.checkpoint_hash}`)",
                  f"- dataset: `{dataset.root}`",
                  "- engine: zerospeech-libriabx2, cosine (angular) distance + DTW, triphone items within context, "
                  "max 10 items per group, 5 X speakers, seed 3459"]
    table = score_table(scores, dataset, provenance)
    beside = out.with_name(f"{out.name}.abx.md")
    write_text(beside, table)
    details = f"zrc_abx2 distance=cosine frame_shift={shift:g} max_size_group=10 max_x_across=5 seed=3459 package={out}"
    append_rows(args.results / "abx.csv", [
        ResultRow("abx", source.name, subset, s.speaker_mode, "abx_error", s.error, features=str(spec),
                  checkpoint=source.checkpoint, checkpoint_hash=source.checkpoint_hash, config=source.config,
                  details=details)
        for subset, found in scores.items() for s in found])
    print(table)
    print(f"ABX table: {beside}; rows merged into {args.results / 'abx.csv'}", file=sys.stderr)
    return 0
