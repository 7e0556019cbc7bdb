"""ZeroSpeech 2021 ABX error rate (paper Table 3) on per-utterance frame features.

The engine is ``zerospeech-libriabx2`` (``zrc_abx2``), the code behind the ZeroSpeech 2021 / abxLS
phonetic benchmark: features are L2-normalised, the frame distance is the angle between vectors
divided by pi ("cosine"/"angular"), averaged along the DTW path, and groups are subsampled to
``max_size_group`` items and ``max_x_across`` X speakers with a fixed seed. Learn2Diss features are
50 Hz, so items are cut with the model's frame shift, its conv stride over the sample rate (0.02 s for
every parent here; the ZeroSpeech tools default to 0.01 s).

Example::

    from learn2diss.eval.abx import AbxSettings, score_abx
    scores = score_abx("features/dev-clean", "zr2021/phonetic/dev-clean/dev-clean.item", AbxSettings())
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learn2diss.errors import InputError, MissingInputError
from learn2diss.eval.features import FRAME_SHIFT_S
from learn2diss.io import load_npy

ITEM_COLUMNS = ("#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker")
DISTANCES = {"cosine": "cosine", "angular": "cosine", "euclidean": "euclidean", "kl_symmetric": "kl_symmetric"}


@dataclass(frozen=True)
class AbxItem:
    """One line of a ZeroSpeech item file: a phone in context, with times in seconds."""

    file: str
    onset: float
    offset: float
    phone: str
    prev_phone: str
    next_phone: str
    speaker: str


@dataclass(frozen=True)
class AbxSettings:
    """ABX options; the defaults are the ZeroSpeech 2021 settings with the base parents' 0.02 s frame shift
    (pass the model's own, :func:`learn2diss.eval.features.frame_shift`, when it has another stride)."""

    frame_shift: float = FRAME_SHIFT_S
    distance: str = "cosine"
    speaker_modes: tuple[str, ...] = ("within", "across")
    context_mode: str = "within"
    max_size_group: int = 10
    max_x_across: int = 5
    seed: int = 3459
    extension: str = ".npy"

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise InputError(f"unknown ABX distance {self.distance!r}; choose from {sorted(DISTANCES)}")
        for mode in self.speaker_modes:
            if mode not in ("within", "across"):
                raise InputError(f"unknown ABX speaker mode {mode!r}; choose within or across")
        if self.context_mode not in ("within", "any"):
            raise InputError(f"unknown ABX context mode {self.context_mode!r}; choose within or any")
        if not self.frame_shift > 0:
            raise InputError(f"ABX frame shift must be positive, got {self.frame_shift}")


@dataclass(frozen=True)
class AbxScore:
    """ABX error rate of one condition, in percent."""

    speaker_mode: str
    context_mode: str
    error: float


def read_item_file(path: str | os.PathLike[str]) -> list[AbxItem]:
    """Parse a ZeroSpeech item file (a header line, then 7 space-separated columns per item).

    Raises:
        ValueError: naming the file and line of a malformed item.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"ABX item file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise InputError(f"{path}: empty ABX item file")
    items = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != len(ITEM_COLUMNS):
            raise InputError(f"{path}:{line_no}: expected 7 columns {' '.join(ITEM_COLUMNS)}, found {len(parts)}")
        try:
            onset, offset = float(parts[1]), float(parts[2])
        except ValueError as error:
            raise InputError(f"{path}:{line_no}: onset/offset {parts[1]!r} {parts[2]!r} are not numbers") from error
        if not 0 <= onset < offset:
            raise InputError(f"{path}:{line_no}: need 0 <= onset < offset, got {onset} {offset}")
        items.append(AbxItem(parts[0], onset, offset, parts[3], parts[4], parts[5], parts[6]))
    if not items:
        raise InputError(f"{path}: no items after the header line")
    return items


def item_frames(onset: float, offset: float, frame_shift: float = FRAME_SHIFT_S) -> tuple[int, int]:
    """Frame range ``[start, end)`` that the engine takes for an item.

    Frame ``i`` is centred at ``(i + 0.5) * frame_shift``; the item keeps frames whose centre lies in
    ``[onset, offset]``, except the last one: libri-light / ZeroSpeech 2021 slice ``[start:end]`` with
    ``end = floor(offset / shift - 0.5)`` (exclusive), and this is what the published scores used.
    The arithmetic mirrors ``zrc_abx2`` (rate = 1 / shift, then rate * time) so float rounding agrees.
    """
    rate = 1 / frame_shift
    start = max(0, int(math.ceil(rate * onset - 0.5)))
    end = int(math.floor(rate * offset - 0.5))
    return start, end


def check_features(features_dir: str | os.PathLike[str], items: Sequence[AbxItem], settings: AbxSettings) -> None:
    """Check that every utterance of the item file has a finite 2-D feature file long enough for its items."""
    folder = Path(features_dir)
    if not folder.is_dir():
        raise MissingInputError(f"ABX features folder not found: {folder}")
    needed: dict[str, int] = {}
    for item in items:
        needed[item.file] = max(needed.get(item.file, 0), item_frames(item.onset, item.offset, settings.frame_shift)[1])
    available = {p.name[: -len(settings.extension)]: p for p in folder.rglob(f"*{settings.extension}")}
    missing = sorted(set(needed) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingInputError(
            f"{len(missing)} utterance(s) of the item file have no {settings.extension} feature file in {folder}: {shown}"
        )
    reference: tuple[Path, int] | None = None
    for name, frames in needed.items():
        array = load_npy(available[name], mmap=True)  # an object array or a damaged file is an error naming it
        if array.ndim != 2:
            raise InputError(f"{available[name]}: features must be 2-D (frames, dim), got shape {array.shape}")
        if reference is None:
            reference = (available[name], array.shape[1])
        elif array.shape[1] != reference[1]:
            raise InputError(f"{available[name]}: {array.shape[1]}-dimensional features, but {reference[0]} has "
                             f"{reference[1]}: every file must come from one representation")
        if array.shape[0] < frames:
            raise InputError(
                f"{available[name]}: {array.shape[0]} frames but the item file needs {frames} at a "
                f"{settings.frame_shift} s frame shift (wrong frame rate?)"
            )
        if not np.isfinite(array).all():
            raise InputError(f"{available[name]}: features contain NaN or infinite values")


class _GroupProgress:
    """The engine's group iterator behind a progress bar (it only iterates and asks the board size)."""

    def __init__(self, iterator: object, description: str) -> None:
        self.iterator, self.description = iterator, description

    def __iter__(self):
        from tqdm import tqdm

        return iter(tqdm(self.iterator, total=len(self.iterator), desc=self.description, unit="group", leave=False))

    def get_board_size(self):
        return self.iterator.get_board_size()


@contextlib.contextmanager
def _progress(modes: Sequence[str]):
    """Show a progress bar per speaker mode while zrc_abx2 scores (it prints nothing while it works)."""
    import zrc_abx2.ABX_src.abx_group_computation as engine

    score_groups, remaining = engine.get_abx_scores_dtw_on_group, list(modes)

    def with_progress(group_iterator, *args):
        mode = remaining.pop(0) if remaining else ""
        return score_groups(_GroupProgress(group_iterator, f"ABX {mode} speaker"), *args)

    engine.get_abx_scores_dtw_on_group = with_progress
    try:
        yield
    finally:
        engine.get_abx_scores_dtw_on_group = score_groups


def score_abx(
    features_dir: str | os.PathLike[str], item_file: str | os.PathLike[str], settings: AbxSettings,
    progress: bool = False,
) -> list[AbxScore]:
    """ABX error rates (%) of the features in ``features_dir`` on ``item_file``, one per speaker mode; with
    ``progress``, a progress bar per mode (on stderr)."""
    import zrc_abx2

    check_features(features_dir, read_item_file(item_file), settings)
    args = zrc_abx2.EvalArgs(
        path_data=str(features_dir),
        path_item_file=str(item_file),
        file_extension=settings.extension,
        feature_size=settings.frame_shift,
        cuda=False,
        speaker_mode=settings.speaker_modes[0] if len(settings.speaker_modes) == 1 else "all",
        context_mode=settings.context_mode,
        distance_mode=DISTANCES[settings.distance],
        max_size_group=settings.max_size_group,
        max_x_across=settings.max_x_across,
        seed=settings.seed,
    )
    modes = [m for m in ("within", "across") if m in settings.speaker_modes]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), (
            _progress(modes) if progress else contextlib.nullcontext()):
        warnings.simplefilter("ignore")  # the engine's own deprecation and dataset-name warnings
        raw = zrc_abx2.EvalABX().eval_abx(args)
    scores = []
    for entry in raw:
        error = 100.0 * float(entry["score"])
        if not math.isfinite(error):
            raise InputError(f"ABX score is {error} for {features_dir}: features contain NaN or infinite values?")
        scores.append(AbxScore(entry["abx-s-condition"], entry["abx-c-condition"], error))
    return scores
