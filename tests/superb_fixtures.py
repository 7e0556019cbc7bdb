"""Tiny generated datasets in the published SUPERB layouts, and a tiny learn2diss checkpoint, for the superb tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
from conftest import tiny_config

from learn2diss.upstream.checkpoints import save_model
from learn2diss.upstream.model import Learn2Diss

REPO = Path(__file__).resolve().parents[1]
SR = 16_000


def tone(seconds: float, pitch: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic 'voice' at ``pitch`` Hz with a little noise; no silence (sox's VAD keeps all of it)."""
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6)) / k for k in range(1, 5))
    wav = 0.2 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(t.shape)
    return wav.astype(np.float32)


def sine(seconds: float, hz: float, rng: np.random.Generator, phase: float | None = None) -> np.ndarray:
    """A sine at ``hz`` with a little noise; ``phase`` None: a random phase."""
    t = np.arange(int(seconds * SR)) / SR
    phase = rng.uniform(0, 6) if phase is None else phase
    return (0.2 * np.sin(2 * np.pi * hz * t + phase) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def class_hz(k: int, classes: int) -> float:
    """The frequency of class ``k`` of ``classes``: log-spaced over 300-7000 Hz. The random tiny checkpoint's
    first convolution (10 taps) tells such sines apart; harmonic tones below ~2 kHz it barely does."""
    return float(300.0 * (7000.0 / 300.0) ** (k / max(1, classes - 1)))


def write_wav(path: Path, wav: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, SR)


STRIDE = 80


def make_checkpoint(directory: Path) -> Path:
    """A random tiny Learn2Diss (3 layers, 32-d, 16-d z^L, stride 80 samples) in our checkpoint format."""
    import torch

    config = tiny_config()
    config = replace(config, parent=replace(config.parent, conv_layers=((32, 10, 5), (32, 4, 4), (32, 4, 4))))
    torch.manual_seed(0)
    return save_model(Learn2Diss(config), directory)


# LibriSpeech: every letter has its own sound (a sine far from the others' frequencies: a random 10-tap first
# convolution cannot tell harmonic tones below ~2 kHz apart), words are separated by a short pause, and the
# splits share a 4-word vocabulary (every sentence says the 4 words in a random order, so every utterance has
# the same letters), so a smoke run's ASR head can spell words of dev-clean right (WER < 100 %)
LETTER_HZ = {"G": 400.0, "O": 1500.0, "N": 3500.0, "S": 6500.0}
LEXICON = {"GO": "G OW1", "NO": "N OW1", "ON": "AA1 N", "SO": "S OW1"}
LIBRI_UTTERANCES = {"train-clean-100": 32, "dev-clean": 8, "test-clean": 8}


def spoken(text: str, rng: np.random.Generator) -> np.ndarray:
    """``text`` as audio: 0.1 s per letter (its sine), 0.06 s of faint noise between words and at both ends."""
    pause = (0.005 * rng.standard_normal(int(0.06 * SR))).astype(np.float32)
    parts = [pause]
    for word in text.split():
        parts += [sine(0.1, LETTER_HZ[letter], rng) for letter in word] + [pause]
    return np.concatenate(parts)


def make_librispeech(root: Path, seed: int = 0) -> Path:
    """LibriSpeech layout (2 speakers per split, sentences of the words of ``LEXICON``) and a word -> phones
    lexicon at root/librispeech-lexicon.txt."""
    rng = np.random.default_rng(seed)
    words = sorted(LEXICON)
    for s, (split, count) in enumerate(LIBRI_UTTERANCES.items()):
        for speaker in (10 * s + 19, 10 * s + 20):
            chapter = root / split / str(speaker) / "198"
            chapter.mkdir(parents=True, exist_ok=True)
            lines = []
            for n in range(count // 2):
                uid = f"{speaker}-198-{n:04d}"
                text = " ".join(rng.permutation(words))
                sf.write(chapter / f"{uid}.flac", spoken(text, rng), SR)
                lines.append(f"{uid} {text}")
            (chapter / f"{speaker}-198.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "librispeech-lexicon.txt").write_text("".join(f"{w}\t{p}\n" for w, p in LEXICON.items()))
    return root


def make_voxceleb1(root: Path, speakers: int = 3, seed: int = 0) -> Path:
    """VoxCeleb1 layout: dev/wav and test/wav per speaker, iden_split.txt (SID) and veri_test2.txt (ASV)."""
    rng = np.random.default_rng(seed)
    split_lines, trials = [], []
    for s in range(speakers):
        speaker = f"id1000{s + 1}"
        hz = class_hz(s, speakers)
        for n, part in enumerate((1, 1, 1, 1, 2, 3)):  # SID: 4 train, 1 dev, 1 test utterance, all in dev/wav
            write_wav(root / "dev" / "wav" / speaker / "vid0" / f"0000{n + 1}.wav", sine(2.2, hz, rng))
            split_lines.append(f"{part} {speaker}/vid0/0000{n + 1}.wav")  # ASV trains on all of them
        for n in range(2):
            write_wav(root / "test" / "wav" / speaker / "vidT" / f"0000{n + 1}.wav", sine(1.0, hz, rng))
    for s in range(speakers):
        a, b, other = f"id1000{s + 1}", f"id1000{s + 1}", f"id1000{(s + 1) % speakers + 1}"
        trials.append(f"1 {a}/vidT/00001.wav {b}/vidT/00002.wav")
        trials.append(f"0 {a}/vidT/00001.wav {other}/vidT/00002.wav")
    (root / "iden_split.txt").write_text("\n".join(split_lines) + "\n")
    (root / "veri_test2.txt").write_text("\n".join(trials) + "\n")
    return root


def make_speech_commands(data_root: Path, seed: int = 0) -> Path:
    """speech_commands_v0.01 (10 keywords, one extra word, _background_noise_) and the test set folders."""
    rng = np.random.default_rng(seed)
    train = data_root / "speech_commands_v0.01"
    test = data_root / "speech_commands_test_set_v0.01"
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed"]
    # file names "<speaker>_nohash_0.wav"; these speakers hash into the dev split (< 10 %) or train
    dev_speakers, train_speakers = _hashed_speakers()
    for w, word in enumerate(words):
        for speaker in [*train_speakers, *dev_speakers]:
            write_wav(train / word / f"{speaker}_nohash_0.wav", sine(0.5, class_hz(w, 12), rng))
    write_wav(train / "_background_noise_" / "noise.wav", (0.01 * rng.standard_normal(SR * 2)).astype(np.float32))
    for c, name in enumerate([*words[:10], "_unknown_", "_silence_"]):
        write_wav(test / name / f"test{c}_nohash_0.wav", sine(0.5, class_hz(c, 12), rng))
    return data_root


def _hashed_speakers() -> tuple[list[str], list[str]]:
    """Two speaker ids that Speech Commands' hash puts in dev and two in train (same rule as s3prl's split)."""
    import hashlib

    dev, train = [], []
    for i in range(1000):
        speaker = f"{i:08x}"
        percent = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (2**27)) * (100.0 / (2**27 - 1))
        if percent < 10 and len(dev) < 2:
            dev.append(speaker)
        elif percent >= 20 and len(train) < 2:
            train.append(speaker)
        if len(dev) == 2 and len(train) == 2:
            return dev, train
    raise AssertionError("no speaker hashes found")


def run_downstream(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python run_downstream.py ARGS`` in a subprocess (s3prl changes global state), output captured."""
    env = {**os.environ, "LEARN2DISS_CACHE": str(cwd / "cache"), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2",
           "LEARN2DISS_S3PRL_JOBS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "run_downstream.py"), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"run_downstream.py {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def make_fluent_commands(root: Path, seed: int = 0) -> Path:
    """Fluent Speech Commands layout: data/{train,valid,test}_data.csv and the wavs they list under wavs/speakers/."""
    rng = np.random.default_rng(seed)
    intents = [("activate", "lights", "kitchen"), ("deactivate", "music", "none"), ("increase", "heat", "bedroom")]
    header = ",path,speakerId,transcription,action,object,location\n"
    for split, speakers in (("train", ["spkA", "spkB"]), ("valid", ["spkC"]), ("test", ["spkD"])):
        lines = []
        for speaker in speakers:
            for i, (action, obj, location) in enumerate(intents):
                path = f"wavs/speakers/{speaker}/{split}-{i}.wav"
                write_wav(root / path, sine(0.5, class_hz(i, len(intents)), rng))
                lines.append(f"{len(lines)},{path},{speaker},{action} the {obj},{action},{obj},{location}\n")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{split}_data.csv").write_text(header + "".join(lines))
    return root


SNIPS_SENTENCES = [  # (words, slot tags, intent), as in all.iob.snips.txt
    ("PLAY JAZZ", "O genre", "PlayMusic"),
    ("RAIN IN PARIS", "O O city", "GetWeather"),
]


def make_snips(root: Path, seed: int = 0) -> Path:
    """Audio SNIPS as s3prl's preparation leaves it: {train,valid,test}/<Speaker>-snips-<split>-<n>.wav,
    all.iob.snips.txt (``uid BOS words EOS<TAB>O tags intent``) and slots.txt (first line skipped by s3prl)."""
    rng = np.random.default_rng(seed)
    vocabulary = sorted({word for words, _, _ in SNIPS_SENTENCES for word in words.split()})
    speakers = {"train": ["Ivy", "Joanna", "Kendra", "Salli"], "valid": ["Aditi"], "test": ["Brian"]}
    labels = []
    for split, names in speakers.items():
        for speaker in names:
            for n, (words, tags, intent) in enumerate(SNIPS_SENTENCES):
                uid = f"{speaker}-snips-{split}-{n}"
                # every word its own sine, always from phase 0 (a speaker who says it the same way each time):
                # from 8 training utterances a smoke run's head learns to tag the slot, but not phase invariance
                pause = (0.005 * rng.standard_normal(int(0.06 * SR))).astype(np.float32)
                audio = [pause]
                for word in words.split():
                    audio += [sine(0.3, class_hz(vocabulary.index(word), len(vocabulary)), rng, phase=0.0), pause]
                write_wav(root / split / f"{uid}.wav", np.concatenate(audio))
                labels.append(f"{uid} BOS {words} EOS\tO {tags} {intent}")
    (root / "all.iob.snips.txt").write_text("\n".join(labels) + "\n")
    (root / "slots.txt").write_text("O\ncity\ngenre")
    return root


def make_iemocap(root: Path, seed: int = 0) -> Path:
    """IEMOCAP_full_release: Session1..5 with dialog/EmoEvaluation/<dialog>.txt and sentences/wav/<dialog>/<uid>.wav."""
    rng = np.random.default_rng(seed)
    for n in range(1, 6):
        session = root / f"Session{n}"
        lines = []
        for i, emotion in enumerate(("neu", "exc", "ang", "sad", "hap", "fru")):
            uid = f"Ses0{n}F_impro01_F00{i}"
            write_wav(session / "sentences" / "wav" / f"Ses0{n}F_impro01" / f"{uid}.wav", sine(0.6, class_hz(i, 6), rng))
            lines.append(f"[{i}.0 - {i + 1}.0]\t{uid}\t{emotion}\t[2.5, 2.5, 2.5]")
        (session / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (session / "dialog" / "EmoEvaluation" / f"Ses0{n}F_impro01.txt").write_text(
            "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(lines) + "\n")
    return root


def make_superb_data(data_root: Path) -> Path:
    """All eight tasks' datasets under one data root, in their published folder names."""
    make_librispeech(data_root / "LibriSpeech")
    make_speech_commands(data_root)
    make_fluent_commands(data_root / "fluent_speech_commands_dataset")
    make_snips(data_root / "SNIPS")
    make_voxceleb1(data_root / "VoxCeleb1")
    make_iemocap(data_root / "IEMOCAP_full_release")
    return data_root
