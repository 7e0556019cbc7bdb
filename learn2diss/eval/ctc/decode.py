"""Lexicon-constrained beam search with a KenLM n-gram (flashlight-text), and WER.

The decoder follows flashlight's recipe: a trie of the lexicon's letter spellings, each word scored by
its LM unigram and smeared (max) along the trie, ``LexiconDecoder`` with CTC criterion. The LM is an
ARPA or KenLM binary file given by the user (the paper used LibriSpeech's official 4-gram). Settings
(beam, beam threshold, LM weight, word score) come from the CTC config.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.ctc.lexicon import spelling
from learn2diss.eval.ctc.vocab import BLANK, INDEX, TOKENS, WORD_BOUNDARY, greedy_decode
from learn2diss.schema import check_ranges

UNK = "<unk>"


@dataclass(frozen=True)
class DecodeConfig:
    """Beam-search settings, the ``decode`` section of a CTC config (the packaged paper configs use
    torchaudio's HuBERT example: beam 1500, threshold 100, LM weight 2.46, word score -0.59)."""

    beam: int
    beam_size_token: int  # tokens considered per frame (29: all)
    beam_threshold: float
    lm_weight: float
    word_score: float
    unk_score: float  # -.inf: no out-of-lexicon words
    sil_score: float

    def __post_init__(self) -> None:
        check_ranges(*((name, getattr(self, name), getattr(self, name) >= 1, ">= 1")
                       for name in ("beam", "beam_size_token")))


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
        """Best word sequence for (T, 29) log-probabilities, lower case (as the normalised references)."""
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        if emissions.ndim != 2 or emissions.shape[1] != len(TOKENS):
            raise ValueError(f"emissions must be (frames, {len(TOKENS)}), got {emissions.shape}")
        results = self.decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
        return " ".join(self.word_dict.get_entry(i) for i in results[0].words if i >= 0).lower()


def viterbi_decode(log_probs: np.ndarray) -> str:
    """Best-path decoding without a lexicon or LM."""
    return greedy_decode(np.asarray(log_probs).argmax(axis=-1).tolist())


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (%) with jiwer (errors over all reference words)."""
    import jiwer

    if not references:
        raise InputError("no utterances to score")
    return 100.0 * float(jiwer.wer(list(references), list(hypotheses)))
