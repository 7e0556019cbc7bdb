"""The ``learn2diss`` command: one entry point with sub-commands.

Each sub-command lives in a module that exposes ``add_arguments(parser)`` and ``run(args) -> int``;
the module docstring's first paragraph is its description. Command modules import heavy libraries
(torch, faiss, s3prl) inside ``run`` so that ``learn2diss --help`` stays fast.

Examples::

    learn2diss params --config l2d_w12
    learn2diss data synth --out data/demo
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from learn2diss.errors import Learn2DissError

# (words of the sub-command, module, one-line help). Registered explicitly, in the order shown by --help.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("params",), "learn2diss.params", "print the learnable-parameter breakdown of a config"),
    (("demo",), "learn2diss.demo.command", "the whole method end to end on the demo corpus, on a CPU (make demo)"),
    (("study",), "learn2diss.study.command", "joint stage over a grid of settings x seeds, evaluated, mean ± 95 %% CI"),
    (("data", "manifest"), "learn2diss.data.manifest", "validate a LibriSpeech-layout corpus into a training manifest"),
    (("pretrain",), "learn2diss.pretrain.command", "pretrain Learn2Diss: targets, SimCLR, clusters, joint training"),
    (("export",), "learn2diss.pretrain.export", "export a pretraining run as a checkpoint the upstream loads"),
    (("data", "synth"), "learn2diss.data.synth.command", "build the synthetic demo corpus with phone alignments"),
    (("data", "shard"), "learn2diss.data.shards", "write a manifest (and its targets) into WebDataset tar shards"),
    (("eval", "abx"), "learn2diss.eval.commands.abx", "ZeroSpeech 2021 ABX error rate of a checkpoint (Table 3)"),
    (("eval", "purity"), "learn2diss.eval.commands.purity", "phone and speaker purity of a checkpoint (Table 8)"),
    (("eval", "probes"), "learn2diss.eval.commands.probes", "linear speaker-ID and phone probes of both encoders"),
    (("eval", "ctc"), "learn2diss.eval.commands.ctc", "CTC fine-tuning on letters + 4-gram decoding, WER (Tables 4, 7)"),
    (("tables",), "learn2diss.eval.commands.tables", "regenerate the paper's Tables 2-8 beside your results"),
    (("superb", "run"), "learn2diss.downstream_runs.commands.superb_run", "run SUPERB tasks with s3prl, collect Table 2"),
    (("superb", "status"), "learn2diss.downstream_runs.commands.superb_status", "state of a SUPERB grid submitted to a scheduler"),
    (("superb", "submit"), "learn2diss.downstream_runs.commands.superb_submit", "build the SUPERB predict.zip and model package"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="learn2diss",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", metavar="COMMAND")
    }
    for words, module_name, help_text in COMMANDS:
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                group = groups[words[: depth - 1]].add_parser(words[depth - 1], help=f"{words[depth - 1]} commands")
                groups[prefix] = group.add_subparsers(dest=f"command_{depth}", metavar="COMMAND")
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or help_text).strip()
        sub = groups[words[:-1]].add_parser(
            words[-1], help=help_text, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command and return its exit status; errors propagate (for tests and scripts)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help(sys.stderr)
        return 1
    return int(args._run(args) or 0)


def console(argv: Sequence[str] | None = None) -> int:
    """The ``learn2diss`` command: bad input is one ``error:`` line and exit status 2; a bug keeps its traceback.

    Bad input is a :class:`~learn2diss.errors.Learn2DissError` (config, options, files, audio, checkpoints),
    or an ``OSError`` that names a file (permission denied, disk full, read-only file system, missing),
    printed as ``PATH: reason``. Anything else propagates with its traceback. ``LEARN2DISS_DEBUG=1`` shows
    the traceback of bad input too.
    """
    try:
        return main(argv)
    except (Learn2DissError, OSError) as err:
        message = error_line(err)
        if message is None or os.environ.get("LEARN2DISS_DEBUG"):
            raise
        given = list(argv if argv is not None else sys.argv[1:])
        words = max((w for w, _, _ in COMMANDS if list(w) == given[: len(w)]), key=len, default=())
        print(f"learn2diss {' '.join(words)}: error: {message}", file=sys.stderr)
        return 2


def error_line(err: BaseException) -> str | None:
    """The one-line message for bad input, or None when ``err`` is a bug (it keeps its traceback)."""
    if isinstance(err, Learn2DissError):
        return str(err)
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"  # the path first, like every project error
    return None


if __name__ == "__main__":
    sys.exit(console())
