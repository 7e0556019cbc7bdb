"""The common audio chain every utterance goes through, whatever its synthesiser.

1. sox: resample to 16 kHz (``rate -h``), an F0 shift for voices without F0 control, 7 kHz
   low-pass (``sinc -7000``): no synthesiser keeps its own band edge (MBROLA with a low voice
   frequency leaves 7.2-8 kHz empty).
2. silence gating: inside every silence segment the signal fades out over 10 ms and stays at zero,
   so pauses are alike for all synthesisers (MBROLA writes digital zeros, kal's pause diphones
   buzz, festival's hum).
3. optional channel: sox effects (telephone band, reverb, equaliser, muffling) or pink noise,
   cut back to the clean length so the alignment still holds.
4. peak level -3 dBFS, then TPDF dither (seeded per utterance) to 16-bit: no digital-zero pauses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from learn2diss.data.synth.alignment import Segments, SynthesisError
from learn2diss.data.synth.phones import SILENCE
from learn2diss.io import atomic_path
from learn2diss.upstream.config import SAMPLE_RATE

LOWPASS_HZ = 7000
FADE_S = 0.01
PEAK_DBFS = -3.0
_SOX = ("sox", "-R", "-q", "-V1")


def run_tool(cmd: list[str], stdin: str | None = None) -> str:
    """Run a synthesiser or sox; SynthesisError with its last message line when it fails."""
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise SynthesisError(f"{cmd[0]} failed: {message[-1] if message else result.returncode}")
    return result.stdout


def to_16k(raw: Path, work: Path, pitch_cents: float | None = None) -> np.ndarray:
    """Resample, optionally shift F0, low-pass; float64 samples at 16 kHz."""
    out = work / f"{raw.stem}.16k.wav"
    shift = ["pitch", f"{pitch_cents:.1f}"] if pitch_cents is not None else []
    effects = ["rate", "-h", str(SAMPLE_RATE), *shift, "sinc", f"-{LOWPASS_HZ}"]
    run_tool([*_SOX, str(raw), "-c", "1", "-e", "floating-point", "-b", "32", str(out), *effects])
    audio, _ = sf.read(out, dtype="float64")
    if audio.size == 0:
        raise SynthesisError("the synthesiser wrote no samples")
    return audio


def gate_silences(audio: np.ndarray, segments: Segments) -> np.ndarray:
    """Zero the inside of every silence segment, with 10 ms raised-cosine fades at its edges."""
    fade_len = round(FADE_S * SAMPLE_RATE)
    fade = 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade_len)))  # 1 -> 0
    gain = np.ones(len(audio))
    for i, (a, b, phone) in enumerate(segments):
        if phone != SILENCE:
            continue
        gain[a:b] = 0.0
        if i > 0:  # fade out the previous phone's sound
            n = min(fade_len, b - a)
            gain[a : a + n] = fade[:n]
        if i < len(segments) - 1:  # fade in towards the next phone
            n = min(fade_len, b - a)
            gain[b - n : b] = np.maximum(gain[b - n : b], fade[:n][::-1])
    return audio * gain


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=num_samples)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def apply_channel(
    audio: np.ndarray,
    effects: tuple[str, ...],
    noise_snr_db: float | None,
    seed: int,
    work: Path,
    name: str,
) -> np.ndarray:
    """sox ``effects`` and/or pink noise at ``noise_snr_db``; the length is kept."""
    if noise_snr_db is not None:
        level = np.sqrt(np.mean(audio**2)) / 10 ** (noise_snr_db / 20)
        audio = audio + level * pink_noise(len(audio), np.random.default_rng([seed, 1]))
    if effects:
        src, dst = work / f"{name}.channel-in.wav", work / f"{name}.channel-out.wav"
        sf.write(src, audio, SAMPLE_RATE, subtype="FLOAT")
        run_tool([*_SOX, str(src), "-e", "floating-point", "-b", "32", str(dst), *effects])
        changed, _ = sf.read(dst, dtype="float64")
        audio = np.pad(changed[: len(audio)], (0, max(0, len(audio) - len(changed))))
    return audio


def quantise(audio: np.ndarray, seed: int) -> np.ndarray:
    """Peak to -3 dBFS, TPDF dither of one LSB, 16-bit integers."""
    peak = np.max(np.abs(audio))
    if not np.isfinite(peak) or peak == 0:
        raise SynthesisError("silent or non-finite audio")
    scaled = audio * (10 ** (PEAK_DBFS / 20) * 32767 / peak)
    rng = np.random.default_rng([seed, 2])
    dither = rng.random(len(audio)) - rng.random(len(audio))
    return np.clip(np.round(scaled + dither), -32768, 32767).astype(np.int16)


def write_audio(path: Path, samples: np.ndarray) -> None:
    """16-bit mono FLAC or WAV (by suffix), written atomically (:func:`learn2diss.io.atomic_path`)."""
    with atomic_path(path) as tmp:
        sf.write(tmp, samples, SAMPLE_RATE, subtype="PCM_16", format=path.suffix[1:].upper())
