"""A letter lexicon from a word list, for flashlight-text's LexiconDecoder.

The LibriSpeech ``librispeech-lexicon.txt`` is phonetic; letter CTC needs spellings, so the lexicon is
built from a word list (one word per line; further columns are ignored, so the phonetic lexicon or
``librispeech-vocab.txt`` both work). Words with characters outside a-z and the apostrophe are skipped. A word
keeps its case, so that it names the language model's word as written (LibriSpeech's 4-gram is upper case);
its spelling is in lower-case letters, the CTC vocabulary.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.ctc.vocab import ALLOWED, WORD_BOUNDARY

log = logging.getLogger(__name__)


def read_word_list(path: str | os.PathLike[str]) -> list[str]:
    """Distinct words of a word list (first column, case kept), in file order."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"word list not found: {path}")
    words: dict[str, None] = {}
    skipped = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        word = parts[0]
        if set(word.lower()) <= ALLOWED:
            words[word] = None
        else:
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d words with characters outside a-z and the apostrophe", path, skipped)
    if not words:
        raise InputError(f"{path}: no usable words")
    return list(words)


def spelling(word: str) -> list[str]:
    """``cat`` (or ``CAT``) -> ``['c', 'a', 't', '|']``."""
    return [*word.lower(), WORD_BOUNDARY]


def lexicon_lines(words: list[str]) -> list[str]:
    """``word<TAB>w o r d |`` lines (flashlight / fairseq letter lexicon format)."""
    return [f"{word}\t{' '.join(spelling(word))}" for word in words]
