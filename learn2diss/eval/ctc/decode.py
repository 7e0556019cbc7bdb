"""Lexicon-constrained beam search with a KenLM n-gram (flashlight-text), and WER.

The decoder follows flashlight's recipe: a trie of the lexicon's letter spellings, each word scored by
its LM unigram and smeared (max) along the trie, ``LexiconDecoder`` with CTC criterion. The LM is an
ARPA or KenLM binary file given by the user (the paper used LibriSpeech's official 4-gram). Settings
(beam, beam threshold, LM weight, word score) come from the CTC config.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.ctc.lexicon import spelling
from learn2diss.eval.ctc.vocab import BLANK, INDEX, TOKENS, WORD_BOUNDARY, greedy_decode

UNK = "<unk>"


@dataclass(frozen=True)
class DecodeConfig:
    """Beam-search settings (defaults: torchaudio's HuBERT example, LibriSpeech 4-gram)."""

    beam: int = 1500
    beam_size_token: int = len(TOKENS)
    beam_threshold: float = 100.0
    lm_weight: float = 2.46
    word_score: float = -0.59
    unk_score: float = -math.inf
    sil_score: float = 0.0

    def __post_init__(self) -> None:
        if self.beam < 1 or self.beam_size_token < 1:
            raise InputError(f"beam and beam_size_token must be >= 1, got {self.beam}, {self.beam_size_token}")


class LexiconLMDecoder:
    """Decode (T, 29) CTC log-probabilities into words of ``words`` under the KenLM model ``lm_path``."""

    def __init__(self, words: Sequence[str], lm_path: str | os.PathLike[str], config: DecodeConfig) -> None:
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            SmearingMode,
            Trie,
        )
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary, create_word_dict

        lm_path = Path(lm_path)
        if not lm_path.is_file():
            raise MissingInputError(f"language model not found: {lm_path}")
        lexicon = {word: [spelling(word)] for word in words}
        lexicon[UNK] = []  # create_word_dict needs <unk> (flashlight looks it up by name)
        self.word_dict = create_word_dict(lexicon)
        self.tokens = Dictionary(list(TOKENS))
        try:
            self.lm = KenLM(str(lm_path), self.word_dict)
        except Exception as err:  # KenLM raises its own C++ exception types
            raise InputError(f"{lm_path}: not a readable ARPA or KenLM binary language model ({err})") from None
        start = self.lm.start(False)
        self.trie = Trie(len(TOKENS), INDEX[WORD_BOUNDARY])
        for word, spellings in lexicon.items():
            if word == UNK:
                continue
            word_index = self.word_dict.get_index(word)
            _, score = self.lm.score(start, word_index)
            for letters in spellings:
                self.trie.insert([self.tokens.get_index(t) for t in letters], word_index, score)
        self.trie.smear(SmearingMode.MAX)
        options = LexiconDecoderOptions(
            beam_size=config.beam, beam_size_token=config.beam_size_token, beam_threshold=config.beam_threshold,
            lm_weight=config.lm_weight, word_score=config.word_score, unk_score=config.unk_score,
            sil_score=config.sil_score, log_add=False, criterion_type=CriterionType.CTC,
        )
        self.decoder = LexiconDecoder(options, self.trie, self.lm, INDEX[WORD_BOUNDARY], INDEX[BLANK],
                                      self.word_dict.get_index(UNK), [], False)

    def __call__(self, log_probs: np.ndarray) -> str:
        """Best word sequence for (T, 29) log-probabilities."""
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        if emissions.ndim != 2 or emissions.shape[1] != len(TOKENS):
            raise ValueError(f"emissions must be (frames, {len(TOKENS)}), got {emissions.shape}")
        results = self.decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
        return " ".join(self.word_dict.get_entry(i) for i in results[0].words if i >= 0)


def viterbi_decode(log_probs: np.ndarray) -> str:
    """Best-path decoding without a lexicon or LM."""
    return greedy_decode(np.asarray(log_probs).argmax(axis=-1).tolist())


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (%) with jiwer (errors over all reference words)."""
    import jiwer

    if not references:
        raise InputError("no utterances to score")
    return 100.0 * float(jiwer.wer(list(references), list(hypotheses)))
