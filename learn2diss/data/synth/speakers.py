"""Speakers of the demo corpus: Debian synthesiser voices and MBROLA pseudo-speakers.

Twelve base voices, each recorded from a real person: MBROLA us1 (F), us2, us3, en1 (M, en1
British), flite slt (F), rms, awb (Scottish), kal16, festival kal, ked, rab (British) and the
HTS voice trained on slt. MBROLA pseudo-speakers change the pitch ratio *and* the voice frequency
(a vocal-tract-length-like formant shift), never tempo alone; some cross sex (e.g. us2 raised to
187 Hz with formants ×1.15). The sex label follows the resulting median F0 (≥ 160 Hz: F).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MBROLA_DIR = Path("/usr/share/mbrola")
FESTIVAL_VOICES_DIR = Path("/usr/share/festival/voices")
FEMALE_MIN_F0 = 160.0  # Hz: the median-F0 threshold of the sex label


@dataclass(frozen=True)
class Voice:
    """One synthesiser voice as shipped by Debian."""

    name: str
    backend: str  # "mbrola" | "flite" | "festival"
    engine_voice: str  # mbrola database, flite -voice name, or festival voice function
    phone_set: str  # key of phones.PHONE_SETS
    base_f0: float  # Hz, median F0 of the unmodified voice (measured)
    package: str  # Debian package that ships it


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("us1", "mbrola", "us1", "us-sampa", 198.0, "mbrola-us1"),
        Voice("us2", "mbrola", "us2", "us-sampa", 101.0, "mbrola-us2"),
        Voice("us3", "mbrola", "us3", "us-sampa", 101.0, "mbrola-us3"),
        Voice("en1", "mbrola", "en1", "uk-sampa", 103.0, "mbrola-en1"),
        Voice("slt", "flite", "slt", "radio", 172.0, "flite"),
        Voice("rms", "flite", "rms", "radio", 104.0, "flite"),
        Voice("awb", "flite", "awb", "radio", 129.0, "flite"),
        Voice("kal16", "flite", "kal16", "radio", 105.0, "flite"),
        Voice("kal", "festival", "voice_kal_diphone", "radio", 107.0, "festvox-kallpc16k"),
        Voice("ked", "festival", "voice_ked_diphone", "radio", 107.0, "festvox-kdlpc16k"),
        Voice("rab", "festival", "voice_rab_diphone", "mrpa", 105.0, "festvox-rablpc16k"),
        Voice("slt-hts", "festival", "voice_cmu_us_slt_arctic_hts", "radio", 170.0,
              "festvox-us-slt-hts"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Speaker:
    """A corpus speaker: a voice with a fixed pitch ratio, formant ratio and tempo."""

    speaker_id: int  # LibriSpeech-style numeric id, fixed per table row
    name: str
    voice: Voice
    pitch: float = 1.0  # F0 ratio
    formant: float = 1.0  # formant ratio (MBROLA voice frequency / 16 kHz); 1.0 elsewhere
    tempo: float = 1.0  # duration factor (> 1 is slower)

    @property
    def median_f0(self) -> float:
        return self.voice.base_f0 * self.pitch

    @property
    def sex(self) -> str:
        return "F" if self.median_f0 >= FEMALE_MIN_F0 else "M"


def _speaker(speaker_id: int, name: str, voice: str, pitch=1.0, formant=1.0, tempo=1.0) -> Speaker:
    return Speaker(speaker_id, name, VOICES[voice], pitch, formant, tempo)


# Ordered so that any prefix mixes backends, voices and sexes: the first 12 are the base voices.
SPEAKERS: tuple[Speaker, ...] = (
    _speaker(101, "us1-a", "us1"),
    _speaker(102, "us2-a", "us2"),
    _speaker(103, "slt-a", "slt"),
    _speaker(104, "ked-a", "ked"),
    _speaker(105, "en1-a", "en1"),
    _speaker(106, "awb-a", "awb"),
    _speaker(107, "us3-a", "us3"),
    _speaker(108, "rab-a", "rab"),
    _speaker(109, "rms-a", "rms"),
    _speaker(110, "slt-hts-a", "slt-hts"),
    _speaker(111, "kal16-a", "kal16"),
    _speaker(112, "kal-a", "kal"),
    _speaker(113, "us2-b", "us2", pitch=1.85, formant=1.15, tempo=0.95),
    _speaker(114, "us1-b", "us1", pitch=0.62, formant=0.89, tempo=1.05),
    _speaker(115, "en1-b", "en1", pitch=1.80, formant=1.17, tempo=0.92),
    _speaker(116, "us3-b", "us3", pitch=1.75, formant=1.14, tempo=1.08),
    _speaker(117, "us1-c", "us1", pitch=0.88, formant=0.94, tempo=1.10),
    _speaker(118, "us2-c", "us2", pitch=0.84, formant=0.92, tempo=1.06),
    _speaker(119, "us3-c", "us3", pitch=1.22, formant=1.06, tempo=0.90),
    _speaker(120, "en1-c", "en1", pitch=0.86, formant=0.91, tempo=1.04),
    _speaker(121, "us1-d", "us1", pitch=1.14, formant=1.08, tempo=0.94),
    _speaker(122, "us2-d", "us2", pitch=1.28, formant=1.05, tempo=1.12),
    _speaker(123, "slt-b", "slt", pitch=1.15, tempo=1.08),
    _speaker(124, "kal16-b", "kal16", pitch=1.25, tempo=0.93),
    _speaker(125, "us3-d", "us3", pitch=0.86, formant=0.93, tempo=0.97),
    _speaker(126, "en1-d", "en1", pitch=1.20, formant=1.07, tempo=1.09),
    _speaker(127, "us1-e", "us1", pitch=1.00, formant=1.10, tempo=1.02),
    _speaker(128, "us2-e", "us2", pitch=2.10, formant=1.20, tempo=1.00),
    _speaker(129, "us3-e", "us3", pitch=1.00, formant=0.90, tempo=1.10),
    _speaker(130, "en1-e", "en1", pitch=1.00, formant=0.90, tempo=0.95),
    _speaker(131, "awb-b", "awb", pitch=0.85, tempo=1.06),
    _speaker(132, "ked-b", "ked", pitch=1.30, tempo=0.95),
)


def _flite_voices() -> set[str]:
    result = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False)
    return set(result.stdout.replace("Voices available:", "").split())


def voice_available(voice: Voice, flite_voices: set[str]) -> bool:
    """True when the programs and data files the voice needs are installed."""
    if voice.backend == "mbrola":
        database = MBROLA_DIR / voice.engine_voice / voice.engine_voice
        return bool(shutil.which("mbrola") and shutil.which("espeak-ng") and database.is_file())
    if voice.backend == "flite":
        return voice.engine_voice in flite_voices
    folder = voice.engine_voice.removeprefix("voice_")
    return bool(shutil.which("festival")) and any(FESTIVAL_VOICES_DIR.glob(f"*/{folder}"))


def available_voices() -> dict[str, bool]:
    """Whether each base voice is installed."""
    flite_voices = _flite_voices() if shutil.which("flite") else set()
    return {name: voice_available(voice, flite_voices) for name, voice in VOICES.items()}


def select_speakers(count: int, available: dict[str, bool]) -> tuple[list[Speaker], list[str]]:
    """The first ``count`` speakers of the table whose voice is installed, and warnings.

    A missing voice removes its speakers (with a warning naming the Debian package); when fewer
    speakers than requested remain, all remaining ones are used.
    """
    warnings = [
        f"voice {name} is not installed (Debian package {VOICES[name].package}); its speakers "
        "are left out"
        for name, ok in available.items()
        if not ok
    ]
    usable = [s for s in SPEAKERS if available.get(s.voice.name, False)]
    if len(usable) < count:
        warnings.append(
            f"{count} speakers requested but only {len(usable)} can be made with the installed "
            "voices; using all of them"
        )
    return usable[:count], warnings
