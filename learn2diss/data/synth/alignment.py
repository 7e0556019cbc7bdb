"""From a synthesiser's phone timings to the corpus alignment: ARPAbet segments in samples.

The timings are exact for what the synthesiser did, but diphone databases place some silence/phone
boundaries loosely (kal's pause-to-w diphone starts the w early, rab's z-to-pause ends it late), and
PSOLA leaves up to a pitch period of sound after the last phone. So every silence edge next to a
phone is moved to where the sound actually starts or stops (:func:`refine_silence_edges`).
"""

from __future__ import annotations

import numpy as np

from learn2diss.data.synth.phones import SILENCE, to_arpabet
from learn2diss.errors import Learn2DissError
from learn2diss.upstream.config import SAMPLE_RATE

TimedPhones = list[tuple[str, float]]  # (native symbol, end time in seconds); the first starts at 0
Segments = tuple[tuple[int, int, str], ...]  # (first sample, end sample, ARPAbet phone)
SILENCE_FLOOR_DB = -35.0  # silence: 10 ms power this far below the utterance's mean speech power
MAX_EDGE_SHIFT_S = 0.08  # the most a silence edge moves
MIN_SILENCE_S = 0.02  # a silence keeps at least this much
POWER_WINDOW_S = 0.01


class SynthesisError(Learn2DissError, RuntimeError):
    """A synthesiser failed on one utterance; the utterance is skipped and counted."""


def align(timed: TimedPhones, phone_set: str, num_samples: int) -> Segments:
    """ARPAbet segments in samples: contiguous from 0, pauses merged, last end at the audio end.

    Label ends past the audio are cut (flite kal16 drops its final pause); a shortfall (festival
    diphone voices run 20-31 ms long) extends the final silence, or adds one.
    """
    segments: list[list] = []
    start = 0
    for symbol, end_s in timed:
        phone = to_arpabet(symbol, phone_set)
        end = min(num_samples, round(end_s * SAMPLE_RATE))
        if end <= start:
            continue
        if segments and phone == SILENCE and segments[-1][2] == SILENCE:
            segments[-1][1] = end
        else:
            segments.append([start, end, phone])
        start = end
    if not any(phone != SILENCE for _, _, phone in segments):
        raise SynthesisError("no phones in the alignment")
    if start < num_samples:
        if segments[-1][2] == SILENCE:
            segments[-1][1] = num_samples
        else:
            segments.append([start, num_samples, SILENCE])
    return tuple((int(a), int(b), str(p)) for a, b, p in segments)


def _smoothed_power(audio: np.ndarray, window: int) -> np.ndarray:
    """Power averaged over ``window`` samples centred on each sample."""
    padded = np.pad(audio.astype(np.float64) ** 2, (window // 2, window - window // 2))
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])
    return (cumulative[window:] - cumulative[:-window])[: len(audio)] / window


def refine_silence_edges(segments: Segments, audio: np.ndarray) -> Segments:
    """Move each silence edge that borders a phone to where the sound starts or stops.

    A silence shrinks (never grows) by at most ``MAX_EDGE_SHIFT_S`` at each edge, until its
    10 ms power is ``SILENCE_FLOOR_DB`` below the mean power of the utterance's phones; it keeps at
    least ``MIN_SILENCE_S``. The neighbouring phone takes the freed samples.
    """
    speech = [audio[a:b] for a, b, p in segments if p != SILENCE]
    reference = float(np.mean(np.concatenate(speech).astype(np.float64) ** 2))
    loud = _smoothed_power(audio, round(POWER_WINDOW_S * SAMPLE_RATE)) > reference * 10 ** (
        SILENCE_FLOOR_DB / 10
    )
    max_shift, min_len = round(MAX_EDGE_SHIFT_S * SAMPLE_RATE), round(MIN_SILENCE_S * SAMPLE_RATE)
    bounds = [[a, b] for a, b, _ in segments]
    for i, (a, b, phone) in enumerate(segments):
        if phone != SILENCE or b - a <= min_len:
            continue
        new_a, new_b = a, b
        if i > 0:  # sound of the previous phone running into the silence
            quiet = np.flatnonzero(~loud[a : min(a + max_shift, b)])
            new_a = a + int(quiet[0]) if quiet.size else min(a + max_shift, b)
        if i < len(segments) - 1:  # sound of the next phone starting inside the silence
            quiet = np.flatnonzero(~loud[max(b - max_shift, a) : b][::-1])
            new_b = b - int(quiet[0]) if quiet.size else max(b - max_shift, a)
        if new_b - new_a < min_len:
            continue  # sound throughout: leave the synthesiser's boundaries
        if i > 0:
            bounds[i - 1][1] = bounds[i][0] = new_a
        if i < len(segments) - 1:
            bounds[i][1] = bounds[i + 1][0] = new_b
    return tuple((a, b, p) for (a, b), (_, _, p) in zip(bounds, segments, strict=True))
