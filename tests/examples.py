"""The command examples of README.md, docs/*.md and every sub-command's ``--help``, as the user sees them.

An example is one shell command (backslash continuations joined). Markdown examples are the lines of ```bash
blocks; ``--help`` examples are the indented lines of the literal blocks (``Examples::``) of each command module's
docstring, which is its ``--help`` description. An example that cannot run against the output of
``learn2diss demo --quick --work-dir runs/demo --out results/demo`` says why, in one of two ways:

* a whole block: ``<!-- not run: REASON -->`` on the line before a Markdown fence, or ``(not run: REASON)`` in the
  line that introduces a ``--help`` literal block;
* one command: a trailing comment ``# not run: REASON``.

``python tests/examples.py`` prints every example with its source and whether it runs.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"not run: ([^)\n]+?)\s*(?:\)|-->|$)")


@dataclass(frozen=True)
class Example:
    source: str  # README.md:12, docs/x.md:40, learn2diss eval abx --help
    command: str  # the command as written, continuations joined, without a trailing comment
    skip: str  # why it does not run against the demo's output; empty when it runs


def _commands(lines: list[tuple[int, str]], block_skip: str) -> list[tuple[int, str, str]]:
    """(line number, command, skip reason) of shell lines: comments dropped, continuations joined."""
    out, pending, start = [], "", 0
    for number, raw in lines:
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        text = pending + line
        pending = ""
        skip = block_skip
        if "#" in text:
            command, _, comment = text.partition(" #")
            found = NOT_RUN.search(comment)
            skip = skip or (found.group(1) if found else "")
            text = command.strip()
        out.append((start, text, skip))
    return out


def markdown_examples(path: Path) -> list[Example]:
    """The commands of the ```bash blocks of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples, block, skip, previous = [], None, "", ""
    for number, line in enumerate(lines, start=1):
        if block is None and re.match(r"```(bash|sh|shell|console)\s*$", line.strip()):
            found = NOT_RUN.search(previous) if previous.strip().startswith("<!--") else None
            block, skip = [], found.group(1) if found else ""
        elif block is not None and line.strip() == "```":
            name = path.relative_to(ROOT)
            examples += [Example(f"{name}:{n}", c, s) for n, c, s in _commands(block, skip)]
            block = None
        elif block is not None:
            block.append((number, line))
        if line.strip():
            previous = line
    return examples


def help_examples(words: tuple[str, ...], module_name: str) -> list[Example]:
    """The commands of the literal blocks (``...::`` then indented lines) of a command module's docstring."""
    doc = importlib.import_module(module_name).__doc__ or ""
    lines = doc.splitlines()
    examples = []
    source = f"learn2diss {' '.join(words)} --help"
    for index, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        start = index
        while start > 0 and lines[start - 1].strip():
            start -= 1
        found = NOT_RUN.search(" ".join(part.strip() for part in lines[start:index + 1]))  # the introducing paragraph
        block = []
        for following in lines[index + 1:]:
            if following.strip() and not following.startswith((" ", "\t")):
                break
            block.append((0, following))
        examples += [Example(source, c, s) for _, c, s in _commands(block, found.group(1) if found else "")]
    return examples


def all_examples() -> list[Example]:
    from learn2diss.commands import COMMANDS

    found = markdown_examples(ROOT / "README.md")
    for path in sorted((ROOT / "docs").glob("*.md")):
        found += markdown_examples(path)
    for words, module_name, _ in COMMANDS:
        found += help_examples(words, module_name)
    return found


if __name__ == "__main__":
    for example in all_examples():
        print(f"{'SKIP' if example.skip else 'RUN '} {example.source}: {example.command}"
              + (f"   [{example.skip}]" if example.skip else ""))
