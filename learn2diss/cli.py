"""The ``learn2diss`` command: one entry point with sub-commands.

The sub-commands are listed in :mod:`learn2diss.commands` (one module each, with ``add_arguments`` and
``run``). This module is the console layer: it parses, runs and turns bad input into one ``error:`` line.

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

from learn2diss.commands import COMMANDS, find_command
from learn2diss.errors import Learn2DissError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="learn2diss",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the package version (and the git commit of a "
                        "checkout) and exit")
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


class _Version(argparse.Action):
    """``--version``: the package version, and the git commit when run from a checkout (read only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from learn2diss.version import version_line

        print(version_line())
        parser.exit()


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
    printed as ``PATH: reason``. Ctrl-C is one line too (exit status 130): a training stage says the step it
    reached and how to resume. Anything else propagates with its traceback. ``LEARN2DISS_DEBUG=1`` shows the
    traceback of bad input and of Ctrl-C too.
    """
    given = list(argv if argv is not None else sys.argv[1:])
    prefix = f"learn2diss {' '.join((find_command(given) or ((), ''))[0])}"
    try:
        return main(argv)
    except (Learn2DissError, OSError) as err:
        message = error_line(err)
        if message is None or os.environ.get("LEARN2DISS_DEBUG"):
            raise
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C: where it stopped and how to go on (errors.Interrupted), no traceback
        if os.environ.get("LEARN2DISS_DEBUG"):
            raise
        print(f"{prefix}: {err or 'interrupted'}", file=sys.stderr)
        return 130


def error_line(err: BaseException) -> str | None:
    """The one-line message for bad input, or None when ``err`` is a bug (it keeps its traceback)."""
    if isinstance(err, Learn2DissError):
        return _worker_message(err)
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"  # the path first, like every project error
    return None


def _worker_message(err: BaseException) -> str:
    """A DataLoader worker's error is raised again in the main process with the worker's traceback as its message
    ("Caught ShardError in DataLoader worker process 0. Original Traceback ..."): keep the error's own text."""
    text = str(err)
    if "\nOriginal Traceback" not in text:
        return text
    name = f"{type(err).__module__}.{type(err).__qualname__}: "
    return text[text.rindex(name) + len(name):].strip() if name in text else text.strip().splitlines()[-1]


if __name__ == "__main__":
    sys.exit(console())
