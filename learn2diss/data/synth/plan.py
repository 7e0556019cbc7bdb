"""The corpus plan: who reads what, in which split, with which jitter and channel.

Every random choice is drawn here, up front, from the seed, so the synthesis workers are pure
functions of their job and the corpus is identical for a seed whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.data.synth.backends import Job
from learn2diss.data.synth.speakers import Speaker
from learn2diss.data.synth.text import transcript
from learn2diss.errors import InputError

SPLITS = ("train", "dev", "val", "test")  # val: unseen validation speakers (--val-speakers)
SHARED_CHAPTER = 1  # sentences read by every speaker; utterance n is the same sentence for all
OWN_CHAPTER = 2  # sentences read by this speaker only
TEMPO_JITTER = 0.05  # log-normal sigma of the per-utterance duration factor
F0_JITTER = 0.06  # log-normal sigma of the per-utterance F0 factor
AUDIO_ROOT = "LibriSpeech-style"


@dataclass(frozen=True)
class Utterance:
    """One planned utterance; ``job`` carries the synthesis parameters."""

    utt_id: str
    speaker: Speaker
    chapter: int
    split: str
    sentence: str
    path: str  # audio file, relative to the corpus folder
    job: Job

    @property
    def transcript(self) -> str:
        return transcript(self.sentence)


def used_splits(utterances: Sequence[Utterance] | Sequence[tuple[Utterance, object]]) -> tuple[str, ...]:
    """The splits a corpus has: train, dev and test always, val only with validation speakers."""
    names = {(u[0] if isinstance(u, tuple) else u).split for u in utterances}
    return tuple(s for s in SPLITS if s != "val" or s in names)


def default_test_speakers(num_speakers: int) -> int:
    """A quarter of the speakers, at least one, leaving at least one for training."""
    return max(1, min(num_speakers - 1, round(num_speakers / 4)))


def choose_test_speakers(speakers: list[Speaker], count: int, rng: np.random.Generator) -> set[int]:
    """``count`` random speakers (ids), with both sexes when ``count`` ≥ 2 and both exist."""
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    test = order[:count]
    sexes = {s.sex for s in speakers}
    if count >= 2 and len(sexes) == 2 and len({s.sex for s in test}) == 1:
        other = next(s for s in order[count:] if s.sex != test[0].sex)
        test[-1] = other
    return {s.speaker_id for s in test}


def choose_val_speakers(speakers: list[Speaker], test_ids: set[int], count: int, seed: int) -> set[int]:
    """``count`` validation speakers among the non-test ones, drawn from their own random stream (so adding
    them leaves every other choice of the plan alone), with both sexes when possible."""
    if count == 0:
        return set()
    others = [s for s in speakers if s.speaker_id not in test_ids]
    if not 1 <= count < len(others):
        raise InputError(f"--val-speakers {count}: need at least one training speaker among the {len(others)} "
                         "non-test speakers")
    return choose_test_speakers(others, count, np.random.default_rng([seed, 3]))


def draw_channel(rng: np.random.Generator) -> tuple[tuple[str, ...], float | None]:
    """One random channel: sox effects and/or a pink-noise SNR in dB."""
    kind = rng.choice(["telephone", "reverb", "equalizer", "muffled", "noise"])
    if kind == "telephone":
        return ("highpass", "300", "lowpass", "3400"), None
    if kind == "reverb":
        return ("reverb", f"{rng.uniform(20, 70):.0f}", "50", f"{rng.uniform(30, 100):.0f}"), None
    if kind == "equalizer":
        effects: list[str] = []
        for _ in range(2):
            centre = float(np.exp(rng.uniform(np.log(200), np.log(4000))))
            effects += ["equalizer", f"{centre:.0f}", "1q", f"{rng.uniform(-8, 8):+.1f}"]
        return tuple(effects), None
    if kind == "muffled":
        return ("lowpass", f"{rng.uniform(2500, 5000):.0f}"), None
    return (), float(rng.uniform(10, 30))


def make_plan(
    speakers: list[Speaker],
    sentences: list[str],
    out_dir: Path,
    *,
    utts: int,
    shared: int,
    seed: int,
    test_speakers: int,
    dev_fraction: float,
    channel_augment: float,
    audio_format: str,
    val_speakers: int = 0,
) -> list[Utterance]:
    """Plan the corpus: ``shared`` sentences read by all, ``utts - shared`` own ones per speaker.

    Own sentences are drawn without replacement across the whole corpus. Test and validation speakers are
    disjoint and both unseen in train; dev holds out a ``dev_fraction`` of each train speaker's own sentences.
    """
    own = utts - shared
    needed = shared + own * len(speakers)
    if needed > len(sentences):
        raise InputError(
            f"the plan needs {needed} sentences but only {len(sentences)} are available"
        )
    rng = np.random.default_rng(seed)
    pool = [sentences[i] for i in rng.permutation(len(sentences))[:needed]]
    test_ids = choose_test_speakers(speakers, test_speakers, rng)
    val_ids = choose_val_speakers(speakers, test_ids, val_speakers, seed)
    channel_rng = np.random.default_rng([seed, 1])  # own stream: augmenting leaves the rest alone
    n_dev = max(1, round(dev_fraction * own)) if own >= 2 and dev_fraction > 0 else 0
    plan: list[Utterance] = []
    for k, speaker in enumerate(speakers):
        own_sentences = pool[shared + k * own : shared + (k + 1) * own]
        readings = [(SHARED_CHAPTER, i, s) for i, s in enumerate(pool[:shared])]
        readings += [(OWN_CHAPTER, i, s) for i, s in enumerate(own_sentences)]
        for chapter, index, sentence in readings:
            if speaker.speaker_id in test_ids:
                split = "test"
            elif speaker.speaker_id in val_ids:
                split = "val"
            elif chapter == OWN_CHAPTER and index >= own - n_dev:
                split = "dev"
            else:
                split = "train"
            utt_id = f"{speaker.speaker_id}-{chapter}-{index:04d}"
            path = f"{AUDIO_ROOT}/{split}/{speaker.speaker_id}/{chapter}/{utt_id}.{audio_format}"
            tempo = speaker.tempo * float(rng.lognormal(0.0, TEMPO_JITTER))
            f0 = speaker.pitch * float(rng.lognormal(0.0, F0_JITTER))
            job_seed = int(rng.integers(2**31))
            augmented = channel_rng.random() < channel_augment
            channel, snr = draw_channel(channel_rng) if augmented else ((), None)
            job = Job(utt_id, sentence, str(out_dir / path), tempo, f0, job_seed, channel, snr)
            plan.append(Utterance(utt_id, speaker, chapter, split, sentence, path, job))
    return plan
