"""Labelled speech for CTC in the published layouts: LibriSpeech and Libri-light limited supervision.

Any folder holding LibriSpeech-style chapters (``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` with the
audio beside it) can be used. The named splits resolve under a root folder:

* ``1h``  -> ``librispeech_finetuning/1h`` (all six 10-minute folds, clean and other);
* ``10h`` -> ``librispeech_finetuning/1h`` + ``librispeech_finetuning/9h``;
* ``100h`` -> ``LibriSpeech/train-clean-100`` (or ``train-clean-100`` directly under the root);
* ``dev-clean`` etc. -> ``LibriSpeech/<set>`` (or ``<set>`` directly under the root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.ctc.vocab import normalize_text
from learn2diss.eval.features import AUDIO_EXTENSIONS

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
