"""Sentences for the demo corpus: WordNet example sentences (Debian ``wordnet-base``).

WordNet glosses carry quoted usage examples (``"his loss of credibility led to his resignation"``).
They are extracted, cleaned to plain words the synthesisers read unambiguously, and turned into
LibriSpeech-style transcripts (upper case, no punctuation but the apostrophe).
"""

from __future__ import annotations

import re
from pathlib import Path

from learn2diss.errors import MissingInputError

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

_QUOTED = re.compile(r'"([^"]+)"')
_ALLOWED = re.compile(r"^[A-Za-z' ,;:?!.-]+$")
_WORD = re.compile(r"^[A-Za-z]+(?:'[A-Za-z]+)*$")
_PUNCT = re.compile(r"[,;:?!.]")


def clean_sentence(raw: str, min_words: int = 5, max_words: int = 20) -> str | None:
    """Return the sentence as the synthesisers will read it, or None when it is unsuitable.

    Kept: letters, apostrophes inside words, hyphens (read as a space) and , ; : ? ! with an
    optional final full stop. Rejected: digits, symbols, abbreviations (an inner full stop),
    all-capital words (spelt out by some synthesisers), and sentences outside the word range.
    """
    text = " ".join(raw.replace("-", " ").split())
    if not text or not _ALLOWED.match(text) or "." in text.rstrip(".!?"):
        return None
    words = _PUNCT.sub(" ", text).split()
    if not min_words <= len(words) <= max_words:
        return None
    for word in words:
        if not _WORD.match(word) or (len(word) > 1 and word.isupper()):
            return None
    if text[-1] not in ".?!":
        text += "."
    return text


def transcript(sentence: str) -> str:
    """LibriSpeech-style transcript: upper-case words separated by single spaces."""
    return " ".join(_PUNCT.sub(" ", sentence).upper().split())


def wordnet_sentences(wordnet_dir: Path = WORDNET_DIR) -> list[str]:
    """All clean WordNet example sentences, unique by transcript, in a fixed (sorted) order."""
    missing = [name for name in WORDNET_FILES if not (wordnet_dir / name).is_file()]
    if missing:
        raise MissingInputError(
            f"WordNet data files {missing} not found in {wordnet_dir}; install the Debian package "
            "wordnet-base (bash scripts/install-demo-debs.sh)"
        )
    by_transcript: dict[str, str] = {}
    for name in WORDNET_FILES:
        with open(wordnet_dir / name, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(" ") or "|" not in line:
                    continue  # licence header, or an entry without a gloss
                for raw in _QUOTED.findall(line.split("|", 1)[1]):
                    sentence = clean_sentence(raw)
                    if sentence is not None:
                        by_transcript.setdefault(transcript(sentence), sentence)
    return [by_transcript[key] for key in sorted(by_transcript)]
