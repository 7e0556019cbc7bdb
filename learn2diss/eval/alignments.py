"""Frame-level phone labels from forced alignments, resampled to the feature frames (50 Hz for every parent here).

Two file formats are read (``--alignment-format``):

``segments``
    one segment per line, ``utt_id start end phone`` (seconds; tabs or spaces; a header line is skipped),
    as written from Montreal-Forced-Aligner TextGrids or the demo corpus.
``frames``
    one utterance per line, ``utt_id p1 p1 p1 p2 ...`` with one label per frame at ``label_rate`` Hz
    (100 Hz for most LibriSpeech alignments, 50 Hz for HuBERT-rate ones), as used by the HuBERT/SUPERB
    community.

Either way an utterance becomes a list of ``[start, end)`` segments, and feature frame ``i`` gets the
label of the segment holding its centre ``(i + 0.5) * frame_shift`` (the ZeroSpeech convention also used
by :mod:`learn2diss.eval.abx`). Frames outside every segment are unlabelled (``""``) and left out of
the metrics. Stress digits are removed (``AH0`` -> ``AH``) as in fairseq's HuBERT purity script.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.features import FRAME_SHIFT_S

FORMATS = ("auto", "segments", "frames")
_STRESS = re.compile(r"(?<=[A-Za-z])[0-9]$")


@dataclass(frozen=True)
class PhoneAlignment:
    """Phone segments of one utterance: ``starts``/``ends`` in seconds, sorted, with ``phones``."""

    starts: np.ndarray
    ends: np.ndarray
    phones: tuple[str, ...]

    def frame_labels(self, n_frames: int, frame_shift: float = FRAME_SHIFT_S) -> np.ndarray:
        """Label of each of ``n_frames`` frames (centre ``(i + 0.5) * frame_shift``); ``""`` if unaligned.

        ``frame_shift``: seconds per feature frame; the model's (:func:`learn2diss.eval.features.frame_shift`)
        when there is one, else the 0.02 s of precomputed base-parent features.
        """
        centres = (np.arange(n_frames) + 0.5) * frame_shift
        index = np.searchsorted(self.starts, centres, side="right") - 1
        labels = np.full(n_frames, "", dtype=object)
        valid = (index >= 0) & (centres < self.ends[np.clip(index, 0, None)])
        labels[valid] = np.asarray(self.phones, dtype=object)[index[valid]]
        return labels


def strip_stress(phone: str) -> str:
    """``AH0`` -> ``AH``; other labels unchanged."""
    return _STRESS.sub("", phone)


def _detect_format(path: Path, first: list[str]) -> str:
    if len(first) == 4:
        try:
            float(first[1]), float(first[2])
            return "segments"
        except ValueError:
            if first[1].lower() in ("start", "begin", "onset"):
                return "segments"
    if len(first) >= 2:
        return "frames"
    raise InputError(f"{path}: cannot tell the alignment format from its first line {' '.join(first)!r}")


def read_alignments(
    path: str | os.PathLike[str], fmt: str = "auto", label_rate: float | None = None, remove_stress: bool = True
) -> dict[str, PhoneAlignment]:
    """Read an alignment file into ``{utt_id: PhoneAlignment}``.

    Args:
        path: the alignment file.
        fmt: ``segments``, ``frames`` or ``auto`` (4 columns with numeric times -> segments).
        label_rate: frames per second of a ``frames`` file (required for it).
        remove_stress: strip ARPAbet stress digits.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown alignment format {fmt!r}; choose from {FORMATS}")
    if not path.is_file():
        raise MissingInputError(f"alignment file not found: {path}")
    lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: empty alignment file")
    if fmt == "auto":
        fmt = _detect_format(path, lines[0])
    clean = strip_stress if remove_stress else (lambda phone: phone)
    if fmt == "frames":
        if not label_rate or label_rate <= 0:
            raise InputError(f"{path}: a per-frame label file needs --label-rate (frames per second, e.g. 100 or 50)")
        return {parts[0]: _frames_to_segments(parts[1:], label_rate, clean) for parts in lines}
    return _read_segments(path, lines, clean)


def _frames_to_segments(labels: list[str], rate: float, clean) -> PhoneAlignment:
    labels = [clean(label) for label in labels]
    change = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    bounds = np.asarray(change + [len(labels)], dtype=np.float64) / rate
    return PhoneAlignment(bounds[:-1], bounds[1:], tuple(labels[i] for i in change))


def _read_segments(path: Path, lines: list[list[str]], clean) -> dict[str, PhoneAlignment]:
    segments: dict[str, list[tuple[float, float, str]]] = {}
    for line_no, parts in enumerate(lines, start=1):
        if len(parts) != 4:
            raise InputError(f"{path}:{line_no}: expected 4 columns 'utt_id start end phone', found {len(parts)}")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError as error:
            if line_no == 1:
                continue  # header
            raise InputError(f"{path}:{line_no}: start/end {parts[1]!r} {parts[2]!r} are not numbers") from error
        if not 0 <= start < end:
            raise InputError(f"{path}:{line_no}: need 0 <= start < end, got {start} {end}")
        segments.setdefault(parts[0], []).append((start, end, clean(parts[3])))
    out = {}
    for utt, entries in segments.items():
        entries.sort()
        out[utt] = PhoneAlignment(
            np.array([e[0] for e in entries]), np.array([e[1] for e in entries]), tuple(e[2] for e in entries)
        )
    return out
