"""Synthesis backends: espeak-ng + MBROLA, flite and festival, with their phone timings.

Each backend turns a sentence into a waveform plus the synthesiser's own phone sequence with end
times. :func:`render` then applies the common chain of :mod:`.finishing` and maps the timings to
ARPAbet segments (:mod:`.alignment`); :func:`synthesise_chunk` does it for a list of jobs.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.data.synth.alignment import SynthesisError, TimedPhones, align, refine_silence_edges
from learn2diss.data.synth.finishing import (
    apply_channel,
    gate_silences,
    quantise,
    run_tool,
    to_16k,
    write_audio,
)
from learn2diss.data.synth.speakers import MBROLA_DIR, Speaker
from learn2diss.io import write_text

MBROLA_PHONE_JITTER = 0.10  # log-normal sigma of each phone's duration
MBROLA_MIN_PHONE_MS = 12
LEADING_SILENCE_S = (0.10, 0.25)  # espeak-ng's .pho starts without a pause
TRAILING_SILENCE_S = (0.15, 0.30)  # used when it also ends without one
# Spellings retried when MBROLA lacks a diphone (us3 has no O2 at all, l/ and l= only in part).
MBROLA_ALWAYS = {"us3": {"O2": "O"}}
MBROLA_RETRY = {
    "l/": "l",
    "l=": "l",
    "m=": "m",
    "n=": "n",
    "A~": "A",
    "O~": "O",
    "E~": "E",
    "{~": "{",
}


@dataclass(frozen=True)
class Job:
    """Everything needed to synthesise one utterance; drawn in advance from the corpus seed."""

    utt_id: str
    sentence: str
    out_path: str  # final audio file (.flac or .wav)
    tempo: float  # duration factor, speaker tempo times utterance jitter
    f0: float  # F0 factor, speaker pitch times utterance jitter
    seed: int  # per-phone jitter, channel noise and dither
    channel: tuple[str, ...] = ()  # sox effects of the channel; empty for a clean utterance
    noise_snr_db: float | None = None  # additive pink noise, part of the channel


@dataclass(frozen=True)
class Result:
    """Outcome of one job: the sample count and ARPAbet segments, or why it was skipped."""

    utt_id: str
    num_samples: int = 0
    segments: tuple[tuple[int, int, str], ...] = ()  # (first sample, end sample, phone)
    error: str | None = None


def _mbrola_rows(speaker: Speaker, job: Job) -> list[tuple[str, int, list[str]]]:
    """espeak-ng's .pho for the sentence, with tempo, per-phone duration and F0 jitter applied."""
    rng = np.random.default_rng(job.seed)
    pho = run_tool(
        ["espeak-ng", "-v", f"mb-{speaker.voice.engine_voice}", "--pho", "-q", job.sentence]
    )
    rows: list[tuple[str, int, list[str]]] = [
        ("_", round(1000 * rng.uniform(*LEADING_SILENCE_S)), [])
    ]
    for line in pho.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        duration = float(fields[1]) * job.tempo * rng.lognormal(0.0, MBROLA_PHONE_JITTER)
        pitch = fields[2:]  # pairs of (position %, Hz)
        pitch[1::2] = [f"{float(hz) * job.f0:.0f}" for hz in pitch[1::2]]
        rows.append((fields[0], max(MBROLA_MIN_PHONE_MS, round(duration)), pitch))
    if rows[-1][0] != "_":
        rows.append(("_", round(1000 * rng.uniform(*TRAILING_SILENCE_S)), []))
    return rows


def synth_mbrola(speaker: Speaker, job: Job, work: Path) -> tuple[Path, TimedPhones]:
    """espeak-ng front end, MBROLA diphones; the timing is the .pho file we wrote."""
    rows = _mbrola_rows(speaker, job)
    voice = speaker.voice.engine_voice
    database = str(MBROLA_DIR / voice / voice)
    wav = work / f"{job.utt_id}.mbrola.wav"
    frequency = str(round(16000 * speaker.formant))  # voice frequency: formants scale with it
    always = MBROLA_ALWAYS.get(voice, {})
    for attempt, rename in enumerate((always, {**MBROLA_RETRY, **always})):
        pho = "".join(f"{rename.get(p, p)} {d} {' '.join(pt)}\n" for p, d, pt in rows)
        try:
            run_tool(["mbrola", "-l", frequency, database, "-", str(wav)], stdin=pho)
            break
        except SynthesisError:
            if attempt == 1:
                raise
    ends = np.cumsum([d for _, d, _ in rows]) / 1000.0
    return wav, [(p, float(end)) for (p, _, _), end in zip(rows, ends, strict=True)]


def _flite_f0_options(speaker: Speaker, f0: float) -> list[str]:
    if speaker.voice.name == "kal16":  # kal16 ignores f0_shift
        return ["--setf", f"int_f0_target_mean={speaker.voice.base_f0 * f0:.1f}"]
    if speaker.voice.name == "rms":  # rms ignores both; sox shifts it instead
        return []
    return ["--setf", f"f0_shift={f0:.4f}"]


def synth_flite(speaker: Speaker, job: Job, work: Path) -> tuple[Path, TimedPhones]:
    """flite; ``-psdur`` prints ``phone:end`` for every segment."""
    wav = work / f"{job.utt_id}.flite.wav"
    cmd = ["flite", "-voice", speaker.voice.engine_voice, "-psdur"]
    cmd += ["--setf", f"duration_stretch={job.tempo:.4f}", *_flite_f0_options(speaker, job.f0)]
    out = run_tool([*cmd, "-t", job.sentence, "-o", str(wav)])
    phones = [tok.rsplit(":", 1) for tok in out.split() if ":" in tok]
    return wav, [(p, float(end)) for p, end in phones]


_FESTIVAL_PRELUDE = """(define (l2d_dump utt path)
  (let ((fd (fopen path "w")))
    (mapcar (lambda (s) (format fd "%f %s\\n" (item.feat s "end") (item.name s)))
            (utt.relation.items utt 'Segment))
    (fclose fd)))
"""


def _festival_utterance(speaker: Speaker, job: Job, wav: Path) -> str:
    if speaker.voice.name == "slt-hts":  # HTS: speed via the engine; F0 via sox
        settings = (
            f'(set! hts_engine_params (append l2d_base (list (list "-r" {1 / job.tempo:.4f}))))'
        )
    else:
        target = speaker.voice.base_f0 * job.f0
        settings = (
            f"(Parameter.set 'Duration_Stretch {job.tempo:.4f})"
            f"(set! int_lr_params (cons (list 'target_f0_mean {target:.1f}) l2d_base))"
        )
    return (
        f'{settings}\n(set! u (SynthText "{job.sentence}"))\n'
        f'(utt.save.wave u "{wav}" \'riff)\n(l2d_dump u "{wav}.seg")\n'
    )


def _festival_batch(speaker: Speaker, jobs: list[Job], work: Path) -> None:
    saved = "hts_engine_params" if speaker.voice.name == "slt-hts" else "int_lr_params"
    lines = [_FESTIVAL_PRELUDE, f"({speaker.voice.engine_voice})", f"(set! l2d_base {saved})"]
    lines += [_festival_utterance(speaker, j, work / f"{j.utt_id}.festival.wav") for j in jobs]
    script = work / f"{jobs[0].utt_id}.scm"
    write_text(script, "\n".join(lines))
    run_tool(["festival", "--batch", str(script)])


def synth_festival(
    speaker: Speaker, jobs: list[Job], work: Path
) -> dict[str, tuple[Path, TimedPhones] | str]:
    """festival, one process for the chunk; a failed batch is retried one utterance at a time."""
    try:
        _festival_batch(speaker, jobs, work)
    except SynthesisError:
        for job in jobs:
            with contextlib.suppress(SynthesisError):  # reported below as missing audio
                _festival_batch(speaker, [job], work)
    results: dict[str, tuple[Path, TimedPhones] | str] = {}
    for job in jobs:
        wav = work / f"{job.utt_id}.festival.wav"
        seg = Path(f"{wav}.seg")
        if not (wav.is_file() and seg.is_file()):
            results[job.utt_id] = "festival produced no audio"
            continue
        rows = [line.split() for line in seg.read_text().splitlines() if line.strip()]
        results[job.utt_id] = (wav, [(name, float(end)) for end, name in rows])
    return results


def _pitch_cents(speaker: Speaker, job: Job) -> float | None:
    """F0 change left to sox, for the voices whose synthesiser has no F0 control."""
    if speaker.voice.name in ("rms", "slt-hts"):
        return 1200.0 * math.log2(job.f0)
    return None


def render(speaker: Speaker, job: Job, raw: Path, timed: TimedPhones, work: Path) -> Result:
    """The common chain from a synthesiser's output to the final file and its alignment."""
    audio = to_16k(raw, work, _pitch_cents(speaker, job))
    segments = align(timed, speaker.voice.phone_set, len(audio))
    segments = refine_silence_edges(segments, audio)
    audio = gate_silences(audio, segments)
    audio = apply_channel(audio, job.channel, job.noise_snr_db, job.seed, work, job.utt_id)
    write_audio(Path(job.out_path), quantise(audio, job.seed))
    return Result(job.utt_id, len(audio), segments)


def synthesise_chunk(speaker: Speaker, jobs: list[Job]) -> list[Result]:
    """Synthesise jobs of one speaker; failures become skipped results, never exceptions."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="l2d-synth-") as tmp:
        work = Path(tmp)
        made: dict[str, tuple[Path, TimedPhones] | str] = {}
        if speaker.voice.backend == "festival":
            made = synth_festival(speaker, jobs, work)
        else:
            synth = synth_mbrola if speaker.voice.backend == "mbrola" else synth_flite
            for job in jobs:
                try:
                    made[job.utt_id] = synth(speaker, job, work)
                except SynthesisError as error:
                    made[job.utt_id] = str(error)
        for job in jobs:
            output = made[job.utt_id]
            if isinstance(output, str):
                results.append(Result(job.utt_id, error=output))
                continue
            try:
                results.append(render(speaker, job, *output, work))
            except (SynthesisError, ValueError) as error:
                results.append(Result(job.utt_id, error=str(error)))
    return results
