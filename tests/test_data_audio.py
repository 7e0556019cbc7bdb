"""read_audio: mono float32 at 16 kHz, channels averaged, rates resampled, bad files named."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from learn2diss.data.audio import AudioError, audio_info, read_audio


def _tone(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_reads_mono_16k_unchanged(tmp_path):
    wav = _tone(16000, 0.5)
    sf.write(tmp_path / "a.flac", wav, 16000)
    out = read_audio(tmp_path / "a.flac")
    assert out.dtype == np.float32 and out.shape == wav.shape
    np.testing.assert_allclose(out, wav, atol=1e-4)  # FLAC is 16-bit
    assert audio_info(tmp_path / "a.flac") == (8000, 16000, 1)


def test_channels_are_averaged(tmp_path):
    left, right = _tone(16000, 0.25, 300), _tone(16000, 0.25, 500)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav"), (left + right) / 2, atol=1e-6)


def test_other_rates_are_resampled(tmp_path):
    sf.write(tmp_path / "r.wav", _tone(44100, 1.0, 440), 44100, subtype="FLOAT")
    out = read_audio(tmp_path / "r.wav")
    assert out.shape == (16000,)
    assert audio_info(tmp_path / "r.wav")[0] == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1 Hz bins: the tone stays at 440 Hz


@pytest.mark.parametrize("kind", ["missing", "garbage", "empty", "nan"])
def test_bad_audio_names_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "garbage":
        path.write_bytes(b"not audio at all")
    elif kind == "empty":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif kind == "nan":
        wav = _tone(16000, 0.1)
        wav[10] = np.nan
        sf.write(path, wav, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=str(path)):
        read_audio(path)


def test_the_sample_rate_is_defined_once():
    """16 kHz is written in one place (upstream/config.py, which upstream/ and the rest both import)."""
    import re
    from pathlib import Path

    import learn2diss
    from learn2diss.upstream.config import SAMPLE_RATE

    package = Path(learn2diss.__file__).parent
    defined = [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py"))
               if re.search(r"^SAMPLE_RATE\s*=", p.read_text(encoding="utf-8"), re.M)]
    assert defined == ["upstream/config.py"] and SAMPLE_RATE == 16000
