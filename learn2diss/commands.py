"""The ``learn2diss`` sub-commands: the table the console is built from, and running one in this process.

Each sub-command lives in a module that exposes ``add_arguments(parser)`` and ``run(args) -> int``; the
module docstring's first paragraph is its description. Command modules import heavy libraries (torch,
faiss, s3prl) inside ``run`` so that ``learn2diss --help`` stays fast.

Commands that run other commands (the demo, the study, scheduler jobs) call :func:`run_command`, which
imports only the module it runs; nothing below :mod:`learn2diss.cli` imports the console back.

Example::

    from learn2diss.commands import run_command
    run_command("data", "manifest", "--root", "runs/demo/corpus/LibriSpeech-style", "--subsets", "train", "--out", "m")
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import NoReturn

from learn2diss.errors import UsageError

# (words of the sub-command, module, one-line help). Registered explicitly, in the order shown by --help.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("params",), "learn2diss.params", "print the learnable-parameter breakdown of a config"),
    (("demo",), "learn2diss.demo.command", "the whole method end to end on the demo corpus, on a CPU (make demo)"),
    (("study",), "learn2diss.study.command", "joint stage over a grid of settings x seeds, evaluated, mean ± 95 %% CI"),
    (("data", "manifest"), "learn2diss.data.manifest", "validate a LibriSpeech-layout corpus into a training manifest"),
    (("pretrain",), "learn2diss.pretrain.command", "pretrain Learn2Diss: targets, SimCLR, clusters, joint training"),
    (("export",), "learn2diss.pretrain.export", "export a pretraining run as a checkpoint the upstream loads"),
    (("extract",), "learn2diss.extract", "dump a checkpoint's features of your audio: one .npy per file"),
    (("data", "synth"), "learn2diss.data.synth.command", "build the synthetic demo corpus with phone alignments"),
    (("data", "shard"), "learn2diss.data.shards", "write a manifest (and its targets) into WebDataset tar shards"),
    (("data", "lm"), "learn2diss.data.lm", "build a word n-gram (ARPA) and word list for CTC decoding from text"),
    (("eval", "abx"), "learn2diss.eval.commands.abx", "ZeroSpeech 2021 ABX error rate of a checkpoint (Table 3)"),
    (("eval", "purity"), "learn2diss.eval.commands.purity", "phone and speaker purity of a checkpoint (Table 8)"),
    (("eval", "probes"), "learn2diss.eval.commands.probes", "linear speaker-ID and phone probes of both encoders"),
    (("eval", "ctc"), "learn2diss.eval.commands.ctc", "CTC fine-tuning on letters + 4-gram decoding, WER (Tables 4, 7)"),
    (("zerospeech", "submit"), "learn2diss.eval.commands.zerospeech_submit",
     "build, validate and score a ZeroSpeech 2021 abxLS submission package"),
    (("zerospeech", "validate"), "learn2diss.eval.commands.zerospeech_validate",
     "check a ZeroSpeech 2021 abxLS submission package, listing every problem"),
    (("tables",), "learn2diss.eval.commands.tables", "regenerate the paper's Tables 2-8 beside your results"),
    (("superb", "run"), "learn2diss.downstream_runs.commands.superb_run", "run SUPERB tasks with s3prl, collect Table 2"),
    (("superb", "status"), "learn2diss.downstream_runs.commands.superb_status", "state of a SUPERB grid submitted to a scheduler"),
    (("superb", "submit"), "learn2diss.downstream_runs.commands.superb_submit", "build the SUPERB predict.zip and model package"),
]


def find_command(argv: Sequence[str]) -> tuple[tuple[str, ...], str] | None:
    """The longest sub-command (words, module name) that ``argv`` starts with, or None."""
    found = [(words, module) for words, module, _ in COMMANDS if list(words) == list(argv[: len(words)])]
    return max(found, key=lambda wm: len(wm[0]), default=None)


class _CallerParser(argparse.ArgumentParser):
    """Arguments built by code: a parse error is a bug of the caller, raised rather than an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def run_command(*argv: object, check: type[Exception] | None = None) -> int:
    """Run ``learn2diss ARGV`` in this process (``run_command("export", run, "--out", ckpt)``); its exit status.

    Errors propagate as they are (bad input as :class:`~learn2diss.errors.Learn2DissError`). With ``check``, a
    non-zero exit status is raised as that error class, naming the command (the demo's and the study's steps).
    """
    args = [str(a) for a in argv]
    found = find_command(args)
    if found is None:
        raise UsageError(f"no learn2diss command at the start of {args[:2]}")
    words, name = found
    module = importlib.import_module(name)
    parser = _CallerParser(prog=f"learn2diss {' '.join(words)}")
    module.add_arguments(parser)
    code = int(module.run(parser.parse_args(args[len(words):])) or 0)
    if code and check is not None:
        raise check(f"`learn2diss {' '.join(args)}` exited with {code}")
    return code
