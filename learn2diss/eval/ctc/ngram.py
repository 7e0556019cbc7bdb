"""A word n-gram language model in ARPA format, from transcripts, without KenLM's ``lmplz``.

Interpolated Witten-Bell smoothing (Witten & Bell 1991; the form of Chen & Goodman 1998, §2.5), written
in the back-off form that ARPA readers (KenLM, flashlight-text) evaluate:

* ``P(w | h) = (c(h w) + T(h) P(w | h')) / (c(h) + T(h))``, where ``c(h)`` counts ``h`` followed by any
  word, ``T(h)`` the distinct words seen after ``h``, and ``h'`` is ``h`` without its first word;
* for the unigrams the lower order is uniform over the vocabulary (the words seen, ``</s>`` and ``<unk>``);
* every seen n-gram is stored with its interpolated probability and every seen context with the
  back-off weight ``T(h) / (c(h) + T(h))``: exactly the mass interpolation gives an unseen word, so the
  back-off form is the interpolated model itself and each conditional distribution sums to one.

Sentences get ``<s>`` and ``</s>``; ``<s>`` is a context only (log10 probability -99, as ``lmplz`` writes).
The demo builds its 4-gram from the training transcripts with it (``learn2diss demo``); for LibriSpeech
use the official 4-gram instead.

Example::

    from learn2diss.eval.ctc.ngram import write_arpa
    write_arpa("lm.arpa", ["THE CAT SAT", "THE DOG SAT"], order=4)
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from learn2diss.errors import InputError
from learn2diss.io import write_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NO_PROB = -99.0  # log10 "probability" of <s>, which is never predicted

__all__ = ["NGramCounts", "count_ngrams", "witten_bell", "arpa_text", "write_arpa"]

Gram = tuple[str, ...]


class NGramCounts:
    """Counts of every n-gram (n = 1..order) of the padded sentences and, per context, its totals."""

    def __init__(self, order: int) -> None:
        if order < 1:
            raise InputError(f"n-gram order must be >= 1, got {order}")
        self.order = order
        self.grams: list[Counter[Gram]] = [Counter() for _ in range(order)]
        self.context_total: Counter[Gram] = Counter()  # c(h): h followed by any word
        self.context_types: Counter[Gram] = Counter()  # T(h): distinct words after h

    def vocabulary(self) -> list[str]:
        """Words that can be predicted: those seen, ``</s>`` and ``<unk>``, sorted."""
        return sorted({g[0] for g in self.grams[0] if g[0] != BOS} | {EOS, UNK})


def count_ngrams(sentences: Iterable[str], order: int = 4) -> NGramCounts:
    """Count the n-grams of whitespace-tokenised ``sentences`` padded with ``<s>`` / ``</s>``.

    Raises:
        ValueError: no non-empty sentence, or a sentence uses a reserved token.
    """
    counts = NGramCounts(order)
    for sentence in sentences:
        words = sentence.split()
        if not words:
            continue
        reserved = {BOS, EOS, UNK} & set(words)
        if reserved:
            raise InputError(f"sentence {sentence!r} contains the reserved token(s) {sorted(reserved)}")
        padded = [BOS, *words, EOS]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                counts.grams[n - 1][tuple(padded[i : i + n])] += 1
    if not counts.grams[0]:
        raise InputError("no words to build a language model from")
    for n in range(1, order + 1):
        for gram, c in counts.grams[n - 1].items():
            if gram[-1] == BOS:  # <s> is never predicted: it is no event of its context
                continue
            counts.context_total[gram[:-1]] += c
            counts.context_types[gram[:-1]] += 1
    return counts


def witten_bell(counts: NGramCounts) -> tuple[list[dict[Gram, float]], dict[Gram, float]]:
    """Interpolated Witten-Bell probabilities of every seen n-gram and back-off weights of every context.

    Returns:
        ``probs[n - 1][gram]`` = P(last word | the others) for the seen n-grams (``<unk>`` included among
        the unigrams, ``<s>`` excluded); ``backoff[context]`` = T(h) / (c(h) + T(h)) for the seen contexts
        of length 1..order-1.
    """
    uniform = 1.0 / len(counts.vocabulary())
    probs: list[dict[Gram, float]] = [{} for _ in range(counts.order)]

    def weight(context: Gram) -> tuple[float, float]:
        total, types = counts.context_total[context], counts.context_types[context]
        return total + types, types

    denom, types = weight(())
    unigrams = counts.grams[0]
    for word in counts.vocabulary():
        probs[0][(word,)] = (unigrams[(word,)] + types * uniform) / denom
    for n in range(2, counts.order + 1):
        for gram, c in counts.grams[n - 1].items():
            if gram[-1] == BOS:
                continue
            denom, types = weight(gram[:-1])
            probs[n - 1][gram] = (c + types * probs[n - 2][gram[1:]]) / denom
    backoff = {}
    for context, types in counts.context_types.items():
        if 0 < len(context) < counts.order:
            backoff[context] = types / (counts.context_total[context] + types)
    return probs, backoff


def arpa_text(sentences: Iterable[str], order: int = 4) -> str:
    """The ARPA file of an interpolated Witten-Bell ``order``-gram model of ``sentences``."""
    counts = count_ngrams(sentences, order)
    probs, backoff = witten_bell(counts)
    sections: list[list[str]] = []
    for n in range(1, order + 1):
        entries: list[tuple[tuple[str, ...], float | None]] = sorted(probs[n - 1].items())
        if n == 1:
            entries = sorted([*entries, ((BOS,), None)])
        lines = []
        for gram, p in entries:
            logp = NO_PROB if p is None else math.log10(p)
            line = f"{logp:.6f}\t{' '.join(gram)}"
            if n < order and gram in backoff:
                line += f"\t{math.log10(backoff[gram]):.6f}"
            lines.append(line)
        sections.append(lines)
    header = ["", "\\data\\", *(f"ngram {n}={len(lines)}" for n, lines in enumerate(sections, start=1))]
    body = [line for n, lines in enumerate(sections, start=1) for line in ["", f"\\{n}-grams:", *lines]]
    return "\n".join([*header, *body, "", "\\end\\", ""])


def write_arpa(path: str | os.PathLike[str], sentences: Iterable[str], order: int = 4) -> Path:
    """Write :func:`arpa_text` to ``path`` atomically (temporary file + rename); returns the path."""
    path = Path(path)
    write_text(path, arpa_text(sentences, order))  # atomic, 0644 under the usual umask
    return path

