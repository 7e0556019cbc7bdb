"""The letter vocabulary of the paper's CTC fine-tuning: blank, word boundary, apostrophe, a-z (29 outputs).

Transcripts are LibriSpeech style (upper case words and apostrophes); a target spells every word
followed by the word boundary ``|``, the fairseq letter convention that a lexicon's spellings
(``cat c a t |``) also follow.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from learn2diss.errors import InputError

BLANK = "-"
WORD_BOUNDARY = "|"
TOKENS: tuple[str, ...] = (BLANK, WORD_BOUNDARY, "'", *string.ascii_lowercase)
INDEX = {token: i for i, token in enumerate(TOKENS)}
ALLOWED = set(string.ascii_lowercase) | {"'"}


def normalize_text(text: str) -> str:
    """Lower-case and collapse spaces; characters outside a-z, apostrophe and space are an error."""
    words = text.lower().split()
    bad = sorted({ch for word in words for ch in word if ch not in ALLOWED})
    if bad:
        raise InputError(f"characters outside the CTC vocabulary (a-z, apostrophe): {''.join(bad)!r} in {text!r}")
    return " ".join(words)


def encode(text: str) -> list[int]:
    """Token ids of a normalised transcript: letters of each word, then ``|``."""
    return [INDEX[ch] for word in normalize_text(text).split() for ch in (*word, WORD_BOUNDARY)]


def greedy_decode(best_path: Sequence[int]) -> str:
    """Best-path (Viterbi) CTC decoding: merge repeats, drop blanks, split words at ``|``."""
    letters, previous = [], None
    for token in best_path:
        if token != previous and token != INDEX[BLANK]:
            letters.append(TOKENS[token])
        previous = token
    return " ".join("".join(letters).replace(WORD_BOUNDARY, " ").split())
