"""One CLI vocabulary: every option spelling of every ``learn2diss`` command, and one spelling per concept.

``python tests/test_cli_vocabulary.py`` prints the listing (spelling, the commands that take it, deprecated
spellings with their replacement). The tests fail when two spellings name one concept and neither is a
:class:`~learn2diss.options.DeprecatedOption`, and check that an old spelling still works, with one line.
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict
from pathlib import Path

import pytest

from learn2diss.cli import build_parser, main
from learn2diss.options import DeprecatedOption

# Spellings that name the same concept (checked in every command together). Add the synonyms a newcomer might
# reach for; a concept must have one spelling that is not deprecated.
CONCEPTS: dict[str, set[str]] = {
    "checkpoint folder": {"--checkpoint", "--ckpt", "--ckpt-dir", "--checkpoint-dir", "--model-dir", "--model"},
    "config override": {"--set", "--override", "--overrides", "--opts", "--cfg-options"},
    "results folder": {"--results", "--results-dir", "--result-dir", "--results-csv"},
    "wait for submitted jobs": {"--wait", "--no-wait", "--sync", "--async", "--detach", "--block"},
    "worker processes": {"--jobs", "--workers", "--num-workers", "--processes", "--nproc"},
    "utterance-encoder features": {"--utterance-features", "--utt-features"},
    "output": {"--out", "--output", "--out-dir", "--output-dir"},
    "work folder": {"--work-dir", "--workdir", "--cache-dir", "--tmp-dir"},
    "run config": {"--config", "--cfg", "--config-file"},
    "random seed": {"--seed", "--random-seed", "--rng-seed"},
    "torch device": {"--device", "--gpu", "--cuda"},
}
# Pairs the abbreviation check would take for synonyms but that name different things.
DISTINCT = {
    frozenset({"--seed", "--seeds"}): "one seed / the seeds of a study grid",
    frozenset({"--config", "--configs"}): "one config / the folder of the demo's configs",
    frozenset({"--eval", "--eval-sets"}): "evaluation folders / named LibriSpeech sets",
    frozenset({"--features", "--features-dir"}): "which representation / a folder of precomputed features",
    frozenset({"--data", "--dataset"}): "training data (a manifest) / the evaluation set's name in the results",
    frozenset({"--run", "--runs"}): "a pretraining run folder / the run folders of a SUPERB grid",
    frozenset({"--set", "--sets"}): "a config override / ZeroSpeech sets",
}


def option_table() -> dict[str, list[tuple[str, argparse.Action]]]:
    """``{spelling: [(command, action), ...]}`` over every sub-command of the console."""
    table: dict[str, list[tuple[str, argparse.Action]]] = defaultdict(list)

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*words, name))
            for spelling in action.option_strings:
                if spelling not in ("-h", "--help"):
                    table[spelling].append((" ".join(words), action))

    walk(build_parser(), ())
    return dict(table)


def listing() -> str:
    lines = []
    for spelling, uses in sorted(option_table().items(), key=lambda kv: kv[0].lstrip("-").lower()):
        commands = sorted({command for command, _ in uses})
        deprecated = [a for _, a in uses if isinstance(a, DeprecatedOption)]
        note = f"  (deprecated: use {deprecated[0].replacement})" if deprecated else ""
        lines.append(f"{spelling:28s} {', '.join(commands)}{note}")
    return "\n".join(lines)


def _current(table: dict[str, list[tuple[str, argparse.Action]]]) -> set[str]:
    """The spelling of every option that is not a deprecated alias: its first long option string (one option
    may have a short form, ``-k/--checkpoint``, or a negative form, ``--wait/--no-wait``)."""
    return {next(s for s in a.option_strings if s.startswith("--")) for uses in table.values() for _, a in uses
            if not isinstance(a, DeprecatedOption)}


def _abbreviates(short: str, long: str) -> bool:
    """``utt`` abbreviates ``utterance`` (a prefix), ``ckpt`` abbreviates ``checkpoint`` (its first letter, then
    consonants of it in order)."""
    if not short or short == long or short[0] != long[0]:
        return False
    letters = iter(long)
    return long.startswith(short) or (not set(short[1:]) & set("aeiou") and all(ch in letters for ch in short))


def test_the_listing_covers_every_command() -> None:
    text = listing()
    print("\n" + text)
    for spelling in ("--checkpoint", "--set", "--results", "--wait", "--jobs"):
        assert spelling in text


def test_one_spelling_per_known_concept() -> None:
    current = _current(option_table())
    for concept, spellings in CONCEPTS.items():
        used = sorted(current & spellings)
        assert len(used) <= 1, f"{concept}: spelled {used}; keep one and make the others DeprecatedOption aliases"


def test_no_abbreviated_twin_spellings() -> None:
    """Two current spellings whose words abbreviate each other (--utt-features / --utterance-features)."""
    current = _current(option_table())
    for a, b in itertools.permutations(sorted(current), 2):
        wa, wb = a.strip("-").split("-"), b.strip("-").split("-")
        if len(wa) != len(wb) or frozenset({a, b}) in DISTINCT:
            continue
        if all(x == y or _abbreviates(x, y) for x, y in zip(wa, wb, strict=True)) and wa != wb:
            pytest.fail(f"{a} and {b} look like one concept spelled twice: deprecate one, or list the pair in "
                        "DISTINCT with what tells them apart")


def test_every_deprecated_spelling_names_a_current_one() -> None:
    table = option_table()
    current = _current(table)
    deprecated = [(s, c, a) for s, uses in table.items() for c, a in uses if isinstance(a, DeprecatedOption)]
    assert deprecated, "the aliases of the previous release are listed here"
    for spelling, command, action in deprecated:
        assert action.replacement in current, f"{command} {spelling} -> {action.replacement}, which no command takes"
        assert action.help == argparse.SUPPRESS  # not offered in --help
        assert spelling not in current, f"{spelling} is both deprecated and current"


@pytest.mark.parametrize(("old", "new"), [
    (["--ckpt", "CK"], ["--checkpoint", "CK"]),
    (["--utt-features", "utt:3", "--checkpoint", "CK"], ["--utterance-features", "utt:3", "--checkpoint", "CK"]),
])
def test_old_spelling_parses_like_the_new_one_with_one_line(capsys, old: list[str], new: list[str]) -> None:
    base = ["eval", "purity", "--alignments", "a.tsv"]
    parser = build_parser()
    expected = parser.parse_args([*base, *new])
    got = parser.parse_args([*base, *old])
    err = capsys.readouterr().err
    assert vars(got) == vars(expected)
    assert err == f"learn2diss eval purity: {old[0]} is deprecated, use {new[0]}\n"


def test_superb_override_becomes_set_items(capsys) -> None:
    """The old ``--override "a=1,,b=2"`` (one s3prl -o string) is read as one --set per option."""
    from learn2diss.downstream_runs.commands.superb_run import s3prl_overrides

    base = ["superb", "run", "--upstream", "learn2diss_local", "--data-root", "d"]
    args = build_parser().parse_args([*base, "--override", "config.runner.total_steps=10,,args.seed=3"])
    assert args.set == ["config.runner.total_steps=10", "args.seed=3"]
    assert capsys.readouterr().err.count("\n") == 1
    assert s3prl_overrides(["runner.total_steps=10", "args.seed=3", "config.optimizer.lr=0.1"]) == (
        "config.runner.total_steps=10,,args.seed=3,,config.optimizer.lr=0.1")


def test_wait_is_one_convention() -> None:
    """--wait/--no-wait with the same default (wait) wherever jobs are submitted."""
    parser = build_parser()
    for argv in (["pretrain", "--config", "c", "--data", "d", "--out", "o"],
                 ["superb", "run", "--upstream", "u", "--data-root", "d"]):
        assert parser.parse_args(argv).wait is True
        assert parser.parse_args([*argv, "--no-wait"]).wait is False


@pytest.mark.parametrize("argv", [
    ["tables", "--results", "{file}"],
    ["tables", "--results", "{missing}"],
    ["superb", "submit", "--runs", "{dir}", "--out", "{dir}/sub", "--results", "{missing}"],
    ["superb", "submit", "--runs", "{file}", "--out", "{dir}/sub"],
    ["tables", "--results", "{dir}", "--out", "{file}"],
])
def test_file_for_folder_and_missing_inputs_are_one_line(tmp_path: Path, capsys, argv: list[str]) -> None:
    from learn2diss.cli import console

    (tmp_path / "a.txt").write_text("x")
    names = {"file": tmp_path / "a.txt", "missing": tmp_path / "nothing-here", "dir": tmp_path}
    assert console([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --" in err, err


def test_main_runs_with_new_spellings(tmp_path: Path) -> None:
    """`tables` reads a results folder (an empty one renders the paper's rows only)."""
    (tmp_path / "results").mkdir()
    assert main(["tables", "3", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "tables")]) == 0


if __name__ == "__main__":
    print(listing())
