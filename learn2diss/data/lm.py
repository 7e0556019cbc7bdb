"""Build the word n-gram language model and the word list that `learn2diss eval ctc` decodes with.

Reads sentences from LibriSpeech-layout transcripts (--transcripts FOLDER: every *.trans.txt under it, the
utterance ids dropped) and/or plain text (--text FILE: one sentence per line, as LibriSpeech's normalised LM
corpus librispeech-lm-norm.txt), keeps the sentences whose words spell with the CTC letters (a-z and the
apostrophe; the others are counted and left out) and writes into --out:

* ``<order>-gram.arpa``: an interpolated Witten-Bell n-gram in ARPA format (learn2diss.eval.ctc.ngram), which
  KenLM and flashlight-text read (`eval ctc --lm`);
* ``words.txt``: the vocabulary, one word per line, most frequent first (`eval ctc --words`);
* ``lexicon.txt``: the letter lexicon the decoder spells from it (``WORD<TAB>w o r d |``), to read.

Words keep the case of the text (LibriSpeech's: upper case), as the official LibriSpeech 4-gram does: the
decoder matches the word list against the LM as written. The counting runs in memory, which suits a few million
words; for the LibriSpeech results use its official 4-gram instead (docs/evaluation.md).

Examples::

    learn2diss data lm --transcripts runs/demo/corpus/LibriSpeech-style/train --out runs/demo/lm
    learn2diss data lm --text runs/demo/lm/sentences.txt --order 3 --out runs/demo/lm-3gram
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from learn2diss.errors import InputError, UsageError
from learn2diss.options import input_file, input_folder, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transcripts", type=Path, nargs="+", default=[], metavar="DIR",
                        help="LibriSpeech-layout folders: the sentences of every *.trans.txt under them")
    parser.add_argument("--text", type=Path, nargs="+", default=[], metavar="FILE",
                        help="plain-text files, one sentence per line")
    parser.add_argument("--order", type=int, default=4, help="n-gram order (default 4)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder: <order>-gram.arpa, words.txt, lexicon.txt, sentences.txt")


def transcript_sentences(folder: Path) -> Iterator[str]:
    """The text of every line of the ``*.trans.txt`` files under ``folder`` (the utterance id dropped)."""
    from learn2diss.io import read_text

    files = sorted(input_folder(folder, "--transcripts").rglob("*.trans.txt"))
    if not files:
        raise InputError(f"--transcripts {folder}: no LibriSpeech *.trans.txt transcripts in it")
    for path in files:
        for line in read_text(path, "transcript").splitlines():
            yield line.partition(" ")[2]


def text_sentences(path: Path) -> Iterator[str]:
    """The lines of a plain-text file, read as a stream (an LM corpus may be large)."""
    with open(input_file(path, "--text"), encoding="utf-8") as handle:
        yield from (line.rstrip("\n") for line in handle)


def spellable(sentences: Iterable[str]) -> tuple[list[str], int]:
    """The sentences whose words spell with the CTC letters (whitespace collapsed), and how many were left out."""
    from learn2diss.eval.ctc.vocab import ALLOWED

    kept, dropped = [], 0
    for sentence in sentences:
        words = sentence.split()
        if not words:
            continue
        if all(set(word.lower()) <= ALLOWED for word in words):
            kept.append(" ".join(words))
        else:
            dropped += 1
    return kept, dropped


def run(args: argparse.Namespace) -> int:
    from learn2diss.eval.ctc.lexicon import lexicon_lines
    from learn2diss.eval.ctc.ngram import write_arpa
    from learn2diss.io import write_text

    if not args.transcripts and not args.text:
        raise UsageError("give --transcripts DIR... and/or --text FILE... (the sentences of the language model)")
    if args.order < 1:
        raise UsageError(f"--order {args.order}: must be >= 1")
    out = output_folder(args.out, "--out")
    sources = [*(transcript_sentences(f) for f in args.transcripts), *(text_sentences(f) for f in args.text)]
    sentences, dropped = spellable(s for source in sources for s in source)
    if not sentences:
        raise InputError("no sentence whose words spell with a-z and the apostrophe")
    counts = Counter(word for sentence in sentences for word in sentence.split())
    words = [word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    arpa = write_arpa(out / f"{args.order}-gram.arpa", sentences, order=args.order)
    write_text(out / "words.txt", "".join(f"{word}\n" for word in words))
    write_text(out / "lexicon.txt", "".join(f"{line}\n" for line in lexicon_lines(words)))
    write_text(out / "sentences.txt", "".join(f"{sentence}\n" for sentence in sentences))
    print(f"{arpa}: {args.order}-gram of {len(sentences)} sentences, {sum(counts.values())} words, "
          f"{len(words)} distinct" + (f"; left out {dropped} sentences with other characters" if dropped else ""),
          file=sys.stderr)
    print(f"decode with: learn2diss eval ctc ... --lm {arpa} --words {out / 'words.txt'}", file=sys.stderr)
    return 0
