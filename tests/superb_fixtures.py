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


def make_librispeech(root: Path, seed: int = 0) -> Path:
    """LibriSpeech layout (2 utterances per split) and a word -> phones lexicon at root/librispeech-lexicon.txt."""
    rng = np.random.default_rng(seed)
    lexicon = {"HELLO": "HH AH0 L OW1", "WORLD": "W ER1 L D", "SPEECH": "S P IY1 CH", "TEST": "T EH1 S T"}
    texts = ["HELLO WORLD", "SPEECH TEST"]
    for split in ("train-clean-100", "dev-clean", "test-clean"):
        chapter = root / split / "19" / "198"
        lines = []
        for n, text in enumerate(texts):
            uid = f"19-198-{n:04d}"
            chapter.mkdir(parents=True, exist_ok=True)
            sf.write(chapter / f"{uid}.flac", tone(0.6, 120.0 + 30 * n, rng), SR)
            lines.append(f"{uid} {text}")
        (chapter / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "librispeech-lexicon.txt").write_text("".join(f"{w}\t{p}\n" for w, p in lexicon.items()))
    return root


def make_voxceleb1(root: Path, speakers: int = 3, seed: int = 0) -> Path:
    """VoxCeleb1 layout: dev/wav and test/wav per speaker, iden_split.txt (SID) and veri_test2.txt (ASV)."""
    rng = np.random.default_rng(seed)
    split_lines, trials = [], []
    for s in range(speakers):
        speaker = f"id1000{s + 1}"
        pitch = 110.0 + 60.0 * s
        for n in range(3):  # SID: 1 train + 1 dev + 1 test utterance, all in dev/wav; ASV trains on all of them
            write_wav(root / "dev" / "wav" / speaker / "vid0" / f"0000{n + 1}.wav", tone(2.2, pitch, rng))
            split_lines.append(f"{n + 1} {speaker}/vid0/0000{n + 1}.wav")
        for n in range(2):
            write_wav(root / "test" / "wav" / speaker / "vidT" / f"0000{n + 1}.wav", tone(1.0, pitch, rng))
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
            write_wav(train / word / f"{speaker}_nohash_0.wav", tone(0.5, 100.0 + 40 * w, rng))
    write_wav(train / "_background_noise_" / "noise.wav", (0.01 * rng.standard_normal(SR * 2)).astype(np.float32))
    for c, name in enumerate([*words[:10], "_unknown_", "_silence_"]):
        write_wav(test / name / f"test{c}_nohash_0.wav", tone(0.5, 100.0 + 40 * c, rng))
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
                write_wav(root / path, tone(0.5, 110.0 + 50 * i, rng))
                lines.append(f"{len(lines)},{path},{speaker},{action} the {obj},{action},{obj},{location}\n")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{split}_data.csv").write_text(header + "".join(lines))
    return root


SNIPS_SENTENCES = [  # (words, slot tags, intent), as in all.iob.snips.txt
    ("PLAY SOME JAZZ", "O O genre", "PlayMusic"),
    ("RAIN IN PARIS", "O O city", "GetWeather"),
]


def make_snips(root: Path, seed: int = 0) -> Path:
    """Audio SNIPS as s3prl's preparation leaves it: {train,valid,test}/<Speaker>-snips-<split>-<n>.wav,
    all.iob.snips.txt (``uid BOS words EOS<TAB>O tags intent``) and slots.txt (first line skipped by s3prl)."""
    rng = np.random.default_rng(seed)
    speakers = {"train": ["Ivy", "Joanna"], "valid": ["Aditi"], "test": ["Brian"]}
    labels = []
    for split, names in speakers.items():
        for speaker in names:
            for n, (words, tags, intent) in enumerate(SNIPS_SENTENCES):
                uid = f"{speaker}-snips-{split}-{n}"
                write_wav(root / split / f"{uid}.wav", tone(0.8, 120.0 + 60 * n, rng))
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
            write_wav(session / "sentences" / "wav" / f"Ses0{n}F_impro01" / f"{uid}.wav", tone(0.6, 100.0 + 40 * i, rng))
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
