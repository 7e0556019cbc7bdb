"""Check a dataset's layout and fill a task config with its paths and the metadata we generate.

The published layouts (one data root may hold all of them under these names):

* ``LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/*.flac`` + ``*.trans.txt``,
  and for PR a word -> phones lexicon, by default ``LibriSpeech/librispeech-lexicon.txt``;
* ``speech_commands_v0.01/<word>/*.wav`` (+ ``_background_noise_/``) and
  ``speech_commands_test_set_v0.01/<class>/*.wav``;
* ``fluent_speech_commands_dataset/data/{train,valid,test}_data.csv`` + the wavs they list;
* ``SNIPS/{train,valid,test}/*.wav`` + ``all.iob.snips.txt`` + ``slots.txt`` (s3prl's SNIPS preparation);
* ``VoxCeleb1/{dev,test}/wav/idXXXXX/<video>/<n>.wav`` + ``iden_split.txt`` (SID) + ``veri_test2.txt`` (ASV);
* ``IEMOCAP_full_release/Session{1..5}/{dialog/EmoEvaluation/*.txt, sentences/wav/<dialog>/*.wav}``.

A missing file raises :class:`LayoutError` naming the first one. Metadata that s3prl's wheel does
not ship is written by our own code into a metadata folder of the run (vocabularies and the ASR
character dictionary from the data, ASR length tables, ASV training speakers and dev trials, the
IEMOCAP fold lists).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from learn2diss.data.audio import audio_info
from learn2diss.downstream_runs.tasks import Task, dataset_dir
from learn2diss.errors import Learn2DissError
from learn2diss.io import write_lines, write_text

LIBRISPEECH_SPLITS = ("train-clean-100", "dev-clean", "test-clean")
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
IEMOCAP_SESSIONS = tuple(f"Session{i}" for i in range(1, 6))
IEMOCAP_LABELS = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}  # "exc" is merged into "hap"


class LayoutError(Learn2DissError, FileNotFoundError):
    """A dataset folder that lacks a file the task needs; the message names the file."""


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else LayoutError naming it and what it is."""
    if not path.exists():
        raise LayoutError(f"missing {what}: {path}")
    return path


def _first_missing(paths: Iterable[Path], what: str) -> None:
    for path in paths:
        require(path, what)


# ---------------------------------------------------------------- LibriSpeech (PR, ASR)

def librispeech_transcripts(split_dir: Path) -> dict[str, str]:
    """uid -> transcript of one LibriSpeech split; every listed utterance must have its .flac."""
    transcripts: dict[str, str] = {}
    chapters = sorted(p for p in split_dir.glob("*/*") if p.is_dir())
    if not chapters:
        raise LayoutError(f"missing speaker/chapter folders in {split_dir}")
    for chapter in chapters:
        trans = require(chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt", "LibriSpeech transcript")
        for line in trans.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.strip().partition(" ")
            if uid:
                require(chapter / f"{uid}.flac", f"audio listed in {trans.name}")
                transcripts[uid] = text
    return transcripts


def _check_librispeech(root: Path) -> dict[str, dict[str, str]]:
    return {split: librispeech_transcripts(require(root / split, "LibriSpeech split")) for split in LIBRISPEECH_SPLITS}


def write_phone_vocab(lexicons: list[Path], out: Path) -> Path:
    """The phones used by the lexicon files, sorted, one a line (s3prl's ``text.vocab_file``)."""
    phones = set()
    for lexicon in lexicons:
        for line in require(lexicon, "PR lexicon").read_text(encoding="utf-8").splitlines():
            phones.update(line.split()[1:])
    write_text(out, "".join(f"{p}\n" for p in sorted(phones)))
    return out


def write_char_dict(transcripts: Iterable[str], out: Path) -> Path:
    """fairseq-style ``SYMBOL COUNT`` lines for letters, apostrophe and ``|`` (word boundary), by count."""
    counts: Counter[str] = Counter({c: 0 for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ'|"})
    for text in transcripts:
        counts.update(text.upper().replace(" ", "|") + "|")
    write_text(out, "".join(f"{symbol} {count}\n" for symbol, count in counts.most_common()))
    return out


def write_length_tables(root: Path, splits: Iterable[str], out_dir: Path) -> Path:
    """s3prl's ASR bucket tables: ``<split>.csv`` with file_path (relative to root) and length in samples."""
    for split in splits:
        target = out_dir / f"{split}.csv"
        if target.exists():
            continue
        files = sorted((root / split).rglob("*.flac"))
        rows = [(str(f.relative_to(root)), audio_info(f)[0]) for f in tqdm(files, desc=f"lengths {split}")]
        rows.sort(key=lambda row: row[1], reverse=True)
        lines = [",file_path,length,label\n"] + [f"{i},{path},{length},\n" for i, (path, length) in enumerate(rows)]
        write_text(target, "".join(lines))
    return out_dir


# ---------------------------------------------------------------- VoxCeleb1 (SID, ASV)

def _voxceleb_lists(root: Path, list_name: str, column: int) -> list[str]:
    listing = require(root / list_name, "VoxCeleb1 list")
    return [line.split()[column] for line in listing.read_text().splitlines() if line.strip()]


def check_voxceleb1_sid(root: Path) -> Path:
    """Every file of ``iden_split.txt`` must be under dev/wav or test/wav."""
    require(root / "dev" / "wav", "VoxCeleb1 dev audio folder")
    require(root / "test" / "wav", "VoxCeleb1 test audio folder")
    for relative in _voxceleb_lists(root, "iden_split.txt", 1):
        if not ((root / "dev" / "wav" / relative).exists() or (root / "test" / "wav" / relative).exists()):
            raise LayoutError(f"missing VoxCeleb1 audio listed in iden_split.txt: {root}/{{dev,test}}/wav/{relative}")
    return root / "iden_split.txt"


def check_voxceleb1_asv(root: Path) -> Path:
    """Every file of the VoxCeleb1-O trial list must be under test/wav; dev/wav holds the training speakers."""
    dev = require(root / "dev" / "wav", "VoxCeleb1 dev audio folder")
    if not any(dev.glob("id*/*/*.wav")):
        raise LayoutError(f"missing VoxCeleb1 training audio: no {dev}/idXXXXX/<video>/*.wav")
    trials = root / "veri_test2.txt"
    names = _voxceleb_lists(root, "veri_test2.txt", 1) + _voxceleb_lists(root, "veri_test2.txt", 2)
    _first_missing((root / "test" / "wav" / name for name in dict.fromkeys(names)), "VoxCeleb1 test audio listed in veri_test2.txt")
    return trials


def write_asv_lists(root: Path, out_dir: Path) -> tuple[Path, Path]:
    """Training speakers (one id a line) and dev trials (``label a b``: each utterance vs the next one
    of its speaker and of the next speaker). s3prl needs both files; the protocol scores only the test trials."""
    dev = root / "dev" / "wav"
    by_speaker = {s.name: sorted(str(f.relative_to(dev)) for f in s.glob("*/*.wav")) for s in sorted(dev.iterdir()) if s.is_dir()}
    by_speaker = {s: files for s, files in by_speaker.items() if files}
    speakers = write_lines(out_dir / "dev_speaker_ids.txt", by_speaker)
    names = list(by_speaker)
    trials = []
    for i, speaker in enumerate(names):
        files, other = by_speaker[speaker], by_speaker[names[(i + 1) % len(names)]]
        for j, file in enumerate(files):
            if len(files) > 1:
                trials.append(f"1 {file} {files[(j + 1) % len(files)]}")
            if speaker != names[(i + 1) % len(names)]:
                trials.append(f"0 {file} {other[j % len(other)]}")
    return speakers, write_lines(out_dir / "dev_trials.txt", trials)


# ---------------------------------------------------------------- IEMOCAP (ER)

_EMO_LINE = re.compile(r"^\[[^\]]*\]\s+(\S+)\s+(\S+)")


def iemocap_utterances(root: Path, session: str) -> list[dict[str, str]]:
    """The 4-class utterances of one session: path (relative to root), label, speaker."""
    session_dir = require(root / session, "IEMOCAP session")
    labels_dir = require(session_dir / "dialog" / "EmoEvaluation", "IEMOCAP label folder")
    wav_dir = require(session_dir / "sentences" / "wav", "IEMOCAP audio folder")
    items = []
    for label_file in sorted(labels_dir.glob("*.txt")):
        for line in label_file.read_text(errors="replace").splitlines():
            found = _EMO_LINE.match(line)
            if not found:
                continue
            uid, emotion = found.groups()
            emotion = "hap" if emotion == "exc" else emotion
            if emotion not in IEMOCAP_LABELS:
                continue
            wav = require(wav_dir / uid.rsplit("_", 1)[0] / f"{uid}.wav", f"IEMOCAP audio labelled in {label_file.name}")
            items.append({"path": str(wav.relative_to(root)), "label": emotion, "speaker": uid.split("_")[0]})
    if not items:
        raise LayoutError(f"missing IEMOCAP labels: no neu/hap/exc/ang/sad lines in {labels_dir}/*.txt")
    return items


def write_iemocap_folds(root: Path, out_dir: Path) -> Path:
    """``SessionN/{train,test}_meta_data.json``: leave session N out (fold N), s3prl's JSON schema."""
    per_session = {session: iemocap_utterances(root, session) for session in IEMOCAP_SESSIONS}
    for session in IEMOCAP_SESSIONS:
        train = [item for other in IEMOCAP_SESSIONS if other != session for item in per_session[other]]
        for split, items in (("train", train), ("test", per_session[session])):
            write_text(out_dir / session / f"{split}_meta_data.json",
                         json.dumps({"labels": IEMOCAP_LABELS, "meta_data": items}))
    return out_dir


# ---------------------------------------------------------------- SNIPS (SF), FSC (IC), Speech Commands (KS)

def write_snips_vocab(label_file: Path, out: Path) -> Path:
    """Space, A-Z, apostrophe and any other character of the SNIPS sentences (s3prl's character vocab)."""
    chars = set(" ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    for line in label_file.read_text(encoding="utf-8").splitlines():
        sentence = line.split("\t")[0].split(" ")[2:-1]  # uid BOS w1 ... wn EOS
        chars.update("".join(sentence))
    ordered = [" ", *sorted(chars - {" "})]
    return write_lines(out, ordered)


def check_fluent_commands(root: Path) -> None:
    for split in ("train", "valid", "test"):
        table = require(root / "data" / f"{split}_data.csv", "Fluent Speech Commands split")
        with open(table, newline="") as handle:
            _first_missing((root / row["path"] for row in csv.DictReader(handle)), f"audio listed in {table.name}")


def speech_commands_test_dir(root: Path) -> Path:
    for candidate in (root / "speech_commands_test_set_v0.01", root.parent / "speech_commands_test_set_v0.01"):
        if candidate.is_dir():
            return candidate
    raise LayoutError(f"missing Speech Commands test set: {root.parent / 'speech_commands_test_set_v0.01'}")


def check_speech_commands(root: Path, test_root: Path) -> None:
    _first_missing((root / word for word in KEYWORDS), "Speech Commands keyword folder")
    _first_missing((test_root / c for c in (*KEYWORDS, "_unknown_", "_silence_")), "Speech Commands test class folder")


# ---------------------------------------------------------------- per task

def _fill(config: dict, section: str, values: dict[str, object]) -> None:
    config["downstream_expert"][section].update(values)


def prepare(task: Task, data_root: str | Path, metadata_dir: str | Path, config: dict) -> dict:
    """Check the layout under ``data_root`` and fill ``config``'s data paths, the ones left null (in place; returned).

    Settings the user already changed (e.g. a PR lexicon given with ``-o``) are kept.
    """
    root = dataset_dir(task, data_root)
    meta = Path(metadata_dir)
    expert = config["downstream_expert"]
    if task.name == "pr":
        corpus = expert["corpus"]
        lexicons = [Path(p) for p in corpus["lexicon"] or []] or [root / "librispeech-lexicon.txt"]
        _first_missing(lexicons, "PR lexicon (word -> phones; give others with -o config.downstream_expert.corpus.lexicon=[...])")
        for split in LIBRISPEECH_SPLITS:
            librispeech_transcripts(require(root / split, "LibriSpeech split"))
        _fill(config, "corpus", {"path": str(root), "lexicon": [str(p) for p in lexicons]})
        _fill(config, "text", {"vocab_file": str(write_phone_vocab(lexicons, meta / "phoneme.txt"))})
    elif task.name == "asr":
        transcripts = _check_librispeech(root)
        _fill(config, "datarc", {
            "libri_root": str(root),
            "bucket_file": str(write_length_tables(root, LIBRISPEECH_SPLITS, meta / "len_for_bucket")),
            "dict_path": str(write_char_dict(transcripts["train-clean-100"].values(), meta / "char.dict")),
        })
    elif task.name == "ks":
        test_root = speech_commands_test_dir(root)
        check_speech_commands(root, test_root)
        _fill(config, "datarc", {"speech_commands_root": str(root), "speech_commands_test_root": str(test_root)})
    elif task.name == "ic":
        check_fluent_commands(root)
        _fill(config, "datarc", {"file_path": str(root)})
    elif task.name == "sf":
        for split in ("train", "valid", "test"):
            require(root / split, "SNIPS split folder")
        labels = require(root / "all.iob.snips.txt", "SNIPS slot labels")
        slots = require(root / "slots.txt", "SNIPS slot list")
        _fill(config, "corpus", {"path": str(root)})
        _fill(config, "text", {"vocab_file": str(write_snips_vocab(labels, meta / "character.txt")), "slots_file": str(slots)})
    elif task.name == "sid":
        _fill(config, "datarc", {"file_path": str(root), "meta_data": str(check_voxceleb1_sid(root))})
    elif task.name == "asv":
        trials = check_voxceleb1_asv(root)
        speakers, dev_trials = write_asv_lists(root, meta)
        _fill(config, "datarc", {"file_path": str(root), "train_meta_data": str(speakers),
                                 "dev_meta_data": str(dev_trials), "test_meta_data": str(trials)})
    elif task.name == "er":
        _fill(config, "datarc", {"root": str(root), "meta_data": str(write_iemocap_folds(root, meta / "iemocap"))})
    unfilled = [key for key, value in _walk(config["downstream_expert"]) if value is None]
    if unfilled:
        raise ValueError(f"task {task.name}: config keys left unfilled: {unfilled}")
    return config


def _walk(node: object, prefix: str = "") -> Iterable[tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{prefix}[{i}]")
    else:
        yield prefix, node
