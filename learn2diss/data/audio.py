"""Read one audio file as 16 kHz mono float32, or fail with an error that names the file.

Behaviour (the same for pretraining, evaluation and the s3prl runner):

- Any format libsndfile reads (WAV, FLAC, OGG, ...), read with ``soundfile`` as float32 in [-1, 1].
- Several channels are **averaged** into one (a stereo recording of one talker keeps its level;
  no channel is preferred).
- Another sample rate is **resampled** to ``target_sr`` with a polyphase filter
  (``scipy.signal.resample_poly``, Kaiser window); the rate ratio is reduced exactly, so
  44.1 kHz -> 16 kHz uses up/down factors 160/441.
- Unreadable, empty (zero samples), truncated or non-finite (NaN/inf) audio raises :class:`AudioError`,
  a ``ValueError`` whose message starts with the path. Truncated: fewer samples decode than the header
  declares (a WAV whose ``data`` chunk is cut short, which libsndfile would silently read as shorter).

Example::

    >>> from learn2diss.data.audio import read_audio
    >>> wav = read_audio("LibriSpeech/dev-clean/84/121123/84-121123-0000.flac")  # doctest: +SKIP
    >>> wav.dtype, wav.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
"""

from __future__ import annotations

import struct
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from learn2diss.errors import Learn2DissError
from learn2diss.upstream.config import SAMPLE_RATE

__all__ = ["AudioError", "read_audio", "audio_info", "resample", "declared_wav_frames"]


class AudioError(Learn2DissError, ValueError):
    """Audio that cannot be used: unreadable, empty or with NaN/inf samples. The message names the file."""


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float32 signal ``(samples,)`` from ``orig_sr`` to ``target_sr`` (polyphase)."""
    if orig_sr == target_sr:
        return wav
    from scipy.signal import resample_poly

    g = gcd(orig_sr, target_sr)
    return resample_poly(wav, target_sr // g, orig_sr // g).astype(np.float32, copy=False)


def declared_wav_frames(path: str | Path) -> int | None:
    """Frames that a RIFF/WAVE header declares (``data`` chunk size / block align); None for other files
    and for streaming headers that leave the size open (0 or 0xFFFFFFFF)."""
    try:
        with open(path, "rb") as handle:
            riff = handle.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                return None
            block_align = 0
            while len(header := handle.read(8)) == 8:
                chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk == b"fmt ":
                    fmt = handle.read(size + (size & 1))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
                elif chunk == b"data":
                    return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
                else:
                    handle.seek(size + (size & 1), 1)
    except OSError:
        return None
    return None


def _check_complete(path: str | Path, frames: int) -> None:
    declared = declared_wav_frames(path)
    if declared is not None and frames < declared:
        raise AudioError(f"{path}: truncated audio: the header declares {declared} samples, the file holds {frames}")


def read_audio(path: str | Path, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` as a mono float32 waveform ``(samples,)`` at ``target_sr`` Hz.

    Raises:
        AudioError: the file is missing or unreadable, truncated, has no samples, or contains NaN/inf.
    """
    try:
        with sf.SoundFile(str(path)) as handle:
            sr, header_frames = handle.samplerate, handle.frames
            data = handle.read(dtype="float32", always_2d=True)  # (samples, channels)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: unreadable audio ({err})") from None
    if data.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if len(data) < header_frames:
        raise AudioError(f"{path}: truncated audio: the header declares {header_frames} samples, "
                         f"{len(data)} decode")
    _check_complete(path, len(data))
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: audio contains NaN or inf samples")
    return np.ascontiguousarray(resample(wav, sr, target_sr), dtype=np.float32)


def audio_info(path: str | Path, target_sr: int = SAMPLE_RATE) -> tuple[int, int, int]:
    """Header only: ``(samples at target_sr, original rate, channels)``; no NaN check.

    Raises:
        AudioError: the file is missing or its header unreadable, or it has no samples.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"{path}: unreadable audio ({err})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    _check_complete(path, info.frames)
    samples = info.frames if info.samplerate == target_sr else -(-info.frames * target_sr // info.samplerate)
    return int(samples), int(info.samplerate), int(info.channels)
