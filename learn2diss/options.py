"""The command-line vocabulary every ``learn2diss`` command shares, and the checks of the paths it names.

One spelling per concept across the commands:

==================== ==========================================================================
``--checkpoint DIR``  a Learn2Diss checkpoint folder (``config.yaml`` + ``model.safetensors``)
``--set KEY=VALUE``   a config override (repeatable); the key is dotted (``finetune.max_updates``)
``--results DIR``     the results folder: ``DIR/<eval>.csv`` (``abx.csv`` ... ``superb.csv``)
``--out``             what the command writes (a folder, except where the help says otherwise)
``--work-dir DIR``    work files: caches, run folders
``--wait/--no-wait``  with ``--launcher``: wait for the submitted jobs (default) or return at once
``--jobs N``          worker processes
==================== ==========================================================================

An old spelling stays for one release as a :class:`DeprecatedOption`: it does what the new one does and
prints one line naming it. ``tests/test_cli_vocabulary.py`` lists every option of every command and fails
on two spellings of one concept without a deprecation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from learn2diss.errors import InputError, MissingInputError

RESULTS_HELP = "results folder: each evaluation merges its rows into DIR/<eval>.csv (default results/)"


class DeprecatedOption(argparse.Action):
    """An option's old spelling, kept for one release: it does what the new option does and prints one line
    naming the new spelling. Hidden from ``--help``."""

    def __init__(self, option_strings: list[str], dest: str, target: argparse.Action,
                 convert: Callable[[Any], list[Any]] | None = None, note: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("nargs", target.nargs)
        kwargs.setdefault("type", target.type)
        kwargs.setdefault("metavar", target.metavar)
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.target, self.convert, self.note = target, convert, note

    @property
    def replacement(self) -> str:
        """The new spelling (the target's longest option string)."""
        return max(self.target.option_strings, key=len)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated, use {self.replacement}"
              + (f" ({self.note})" if self.note else ""), file=sys.stderr)
        for value in self.convert(values) if self.convert else [values]:
            self.target(parser, namespace, value, self.replacement)


def add_deprecated(parser: argparse.ArgumentParser | argparse._ActionsContainer, old: str, target: argparse.Action,
                   convert: Callable[[Any], list[Any]] | None = None, note: str = "") -> argparse.Action:
    """Accept ``old`` as a deprecated spelling of ``target`` (an action returned by ``add_argument``).

    ``convert`` turns an old value into the values the new option takes (``target`` is called with each), for an
    old spelling whose value was written differently; ``note`` is added to the deprecation line.
    """
    return parser.add_argument(old, dest=target.dest, action=DeprecatedOption, target=target, convert=convert,
                               note=note)


def add_checkpoint_argument(parser: argparse.ArgumentParser | argparse._ActionsContainer, help: str,
                            required: bool = False, old: str | None = None) -> argparse.Action:
    """``--checkpoint DIR`` (a Learn2Diss checkpoint folder), with ``old`` as its deprecated spelling."""
    action = parser.add_argument("--checkpoint", type=Path, required=required, metavar="DIR", help=help)
    if old:
        add_deprecated(parser, old, action)
    return action


def add_set_argument(parser: argparse.ArgumentParser, example: str, dest: str = "set") -> argparse.Action:
    """``--set KEY=VALUE`` (repeatable config override); ``example`` is a key=value shown in the help."""
    return parser.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE",
                               help=f"override a config value, e.g. --set {example} (repeatable)")


def add_results_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--results DIR``: the results folder (default ``results/``)."""
    return parser.add_argument("--results", type=Path, default=Path("results"), metavar="DIR", help=RESULTS_HELP)


def add_wait_argument(parser: argparse.ArgumentParser | argparse._ActionsContainer, what: str) -> argparse.Action:
    """``--wait/--no-wait``: with ``--launcher``, wait for the jobs (default) or return once they are submitted."""
    return parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                               help=f"with --launcher: wait for the jobs to finish (default), or return once they "
                                    f"are submitted ({what})")


def input_file(path: Path, option: str) -> Path:
    """``path`` if it is a file; else one error line naming the option and the path."""
    if path.is_dir():
        raise InputError(f"{option} {path}: a folder, expected a file")
    if not path.is_file():
        raise MissingInputError(f"{option} {path}: file not found")
    return path


def input_folder(path: Path, option: str) -> Path:
    """``path`` if it is a folder; else one error line naming the option and the path."""
    if path.is_file():
        raise InputError(f"{option} {path}: a file, expected a folder")
    if not path.is_dir():
        raise MissingInputError(f"{option} {path}: folder not found")
    return path


def output_folder(path: Path, option: str) -> Path:
    """``path`` unless a file is there (a folder that exists or not yet: both fine)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: a file is there, expected a folder")
    return path


def output_file(path: Path, option: str) -> Path:
    """``path`` unless a folder is there."""
    if path.is_dir():
        raise InputError(f"{option} {path}: a folder is there, expected a file name")
    return path
