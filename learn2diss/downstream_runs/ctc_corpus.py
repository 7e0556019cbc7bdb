"""The corpus readers of s3prl's ``ctc`` downstream (PR on LibriSpeech, SF on Audio SNIPS).

The espnet-s3prl wheel ships ``s3prl/downstream/ctc`` without its ``corpus`` sub-package, so
``-d ctc`` fails on import. These classes implement the interface its ``data.py`` expects:
``Dataset(split_names, tokenizer, bucket_size, path=..., **corpus_config)``; an item is
``(audio_path, token_ids)``, or, when ``bucket_size > 1``, a list of ``bucket_size`` such pairs
that starts at the item (the data loader then uses batch size 1). Utterances are sorted by label
length, longest first, so a bucket holds utterances of similar length.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from learn2diss.errors import InputError, MissingInputError


class _BucketDataset(Dataset):
    def __init__(self, items: list[tuple[Path, list[int]]], bucket_size: int, ascending: bool) -> None:
        items.sort(key=lambda item: len(item[1]), reverse=not ascending)
        self.items = items
        self.bucket_size = bucket_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Path, list[int]] | list[tuple[Path, list[int]]]:
        if self.bucket_size > 1:
            start = max(0, min(len(self.items) - self.bucket_size, index))
            return self.items[start : start + self.bucket_size]
        return self.items[index]


def read_lexicon(files: Sequence[str | Path]) -> dict[str, list[str]]:
    """Word -> phones from lexicon lines ``WORD PH1 PH2 ...``; the first pronunciation of a word wins."""
    lexicon: dict[str, list[str]] = {}
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for line in handle:
                word, *phones = line.split()
                if word and phones:
                    lexicon.setdefault(word, phones)
    return lexicon


def _librispeech_transcripts(folder: Path) -> dict[str, str]:
    transcripts: dict[str, str] = {}
    for trans in folder.rglob("*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if line.strip():
                uid, _, text = line.partition(" ")
                transcripts[uid] = text.strip()
    return transcripts


class LibriPhoneDataset(_BucketDataset):
    """PR: LibriSpeech ``<path>/<split>/<spk>/<chapter>/*.flac`` + ``*.trans.txt``, words -> phones by lexicon."""

    def __init__(self, split: Sequence[str], tokenizer: Any, bucket_size: int, path: str,
                 lexicon: Sequence[str], ascending: bool = False, **kwargs: object) -> None:
        words = read_lexicon(lexicon)
        items = []
        for name in split:
            folder = Path(path) / name
            audio = sorted(folder.rglob("*.flac"))
            if not audio:
                raise MissingInputError(f"no .flac files under {folder}")
            transcripts = _librispeech_transcripts(folder)
            for file in audio:
                if file.stem not in transcripts:
                    raise MissingInputError(f"{file}: no transcript line {file.stem} in the chapter's .trans.txt")
                phones = []
                for word in transcripts[file.stem].split():
                    if word not in words:
                        raise InputError(f"{file}: word {word!r} is in no lexicon file ({', '.join(map(str, lexicon))})")
                    phones += words[word]
                items.append((file, tokenizer.encode(" ".join(phones))))
        super().__init__(items, bucket_size, ascending)


class SnipsDataset(_BucketDataset):
    """SF: Audio SNIPS ``<path>/<split>/*.wav`` of the speakers listed for the split, labels from
    ``all.iob.snips.txt`` (slot mode) or ``all-trans.txt``."""

    def __init__(self, split: Sequence[str], tokenizer: Any, bucket_size: int, path: str,
                 ascending: bool = False, **kwargs: Any) -> None:
        speakers = kwargs[f"{split[0]}_speakers"]
        label_file = Path(path) / ("all.iob.snips.txt" if "-slot" in tokenizer.token_type else "all-trans.txt")
        transcripts = {}
        for line in label_file.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.strip().partition(" ")
            if uid:
                transcripts[uid] = text
        items = []
        for name in split:
            folder = Path(path) / name
            for file in sorted(folder.rglob("*.wav")):
                if file.stem in transcripts and any(file.stem.startswith(speaker) for speaker in speakers):
                    items.append((file, tokenizer.encode(transcripts[file.stem])))
            if not items:
                raise MissingInputError(f"no labelled .wav of speakers {list(speakers)} under {folder}")
        super().__init__(items, bucket_size, ascending)
