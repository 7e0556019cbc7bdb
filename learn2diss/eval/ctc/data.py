"""Labelled speech for CTC in the published layouts: LibriSpeech and Libri-light limited supervision.

Any folder holding LibriSpeech-style chapters (``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` with the
audio beside it) can be used. The named splits resolve under a root folder:

* ``1h``  -> ``librispeech_finetuning/1h`` (all six 10-minute folds, clean and other);
* ``10h`` -> ``librispeech_finetuning/1h`` + ``librispeech_finetuning/9h``;
* ``100h`` -> ``LibriSpeech/train-clean-100`` (or ``train-clean-100`` directly under the root);
* ``dev-clean`` etc. -> ``LibriSpeech/<set>`` (or ``<set>`` directly under the root).

For fine-tuning, :class:`CtcDataset` reads an utterance's audio and letters (in DataLoader workers) per key
of :class:`~learn2diss.data.batching.SecondsBatchSampler`, and :func:`collate_ctc` makes a :class:`CtcBatch`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from learn2diss.data.batching import PaddedBatch
from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.ctc.vocab import encode, normalize_text
from learn2diss.eval.features import AUDIO_EXTENSIONS
from learn2diss.upstream.padding import pad_waveforms

SPLITS = {"1h": ("librispeech_finetuning/1h",), "10h": ("librispeech_finetuning/1h", "librispeech_finetuning/9h"),
          "100h": ("train-clean-100",)}


@dataclass(frozen=True)
class LabelledUtterance:
    """An utterance with its audio file and normalised transcript."""

    utt_id: str
    path: Path
    text: str


def read_transcribed_folder(folder: str | os.PathLike[str]) -> list[LabelledUtterance]:
    """Every utterance listed in the ``*.trans.txt`` files under ``folder``, sorted by id.

    Raises:
        FileNotFoundError / ValueError naming the folder, transcript file and line at fault.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"labelled-speech folder not found: {folder}")
    out = []
    transcripts = sorted(folder.rglob("*.trans.txt"))
    if not transcripts:
        raise MissingInputError(f"no LibriSpeech *.trans.txt transcripts under {folder}")
    for trans in transcripts:
        for line_no, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            audio = next((trans.parent / f"{utt}{ext}" for ext in AUDIO_EXTENSIONS
                          if (trans.parent / f"{utt}{ext}").is_file()), None)
            if audio is None:
                raise MissingInputError(f"{trans}:{line_no}: no audio {utt}.flac/.wav beside the transcript")
            try:
                out.append(LabelledUtterance(utt, audio, normalize_text(text)))
            except ValueError as err:
                raise InputError(f"{trans}:{line_no}: {err}") from None
    return sorted(out, key=lambda u: u.utt_id)


def resolve_split(root: str | os.PathLike[str], name: str) -> list[Path]:
    """Folders of a named split (``1h``, ``10h``, ``100h``, or a LibriSpeech set such as ``dev-clean``) under ``root``."""
    root = Path(root)
    relative = SPLITS.get(name, (name,))
    folders = []
    for rel in relative:
        candidates = [root / rel, root / "LibriSpeech" / rel]
        found = next((c for c in candidates if c.is_dir()), None)
        if found is None:
            raise MissingInputError(f"split {name}: folder {candidates[0]} (or {candidates[1]}) not found")
        folders.append(found)
    return folders


def read_split(root: str | os.PathLike[str], name: str) -> list[LabelledUtterance]:
    """All labelled utterances of a named split."""
    return [u for folder in resolve_split(root, name) for u in read_transcribed_folder(folder)]


@dataclass
class CtcBatch(PaddedBatch):
    """A padded CTC training batch (CPU tensors; :meth:`to` moves them).

    Attributes:
        waveforms: (B, S) float32, zero-padded. lengths: (B,) int64 valid samples.
        targets: (sum of target lengths,) int64 letter indices, concatenated. target_lengths: (B,) int64.
        epoch, index: position in the sampler's stream.
    """

    waveforms: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    epoch: int
    index: int


class CtcDataset(torch.utils.data.Dataset):
    """Audio and letter targets of ``utterances[i]`` for a sampler key ``(i, epoch, batch index)``."""

    def __init__(self, utterances: Sequence[LabelledUtterance]) -> None:
        self.utterances = list(utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        from learn2diss.data.audio import read_audio

        utt, epoch, batch = key
        return {"wav": read_audio(self.utterances[utt].path), "targets": encode(self.utterances[utt].text),
                "epoch": epoch, "batch": batch}


def collate_ctc(items: list[dict]) -> CtcBatch:
    """Pad the waveforms and concatenate the targets of :class:`CtcDataset` items."""
    waveforms, lengths = pad_waveforms([it["wav"] for it in items])
    return CtcBatch(waveforms, lengths,
                    torch.tensor([t for it in items for t in it["targets"]], dtype=torch.long),
                    torch.tensor([len(it["targets"]) for it in items], dtype=torch.long),
                    items[0]["epoch"], items[0]["batch"])
