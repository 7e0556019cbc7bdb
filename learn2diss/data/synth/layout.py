"""Writers for the corpus files other tools read (formats: docs/demo_corpus.md).

LibriSpeech ``*.trans.txt``, split manifests, phone alignments and the phone inventory, ZeroSpeech
ABX item files, VoxCeleb-style speaker list and verification trials. Every file is written to a
temporary name and moved into place.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from learn2diss.data.synth.backends import Result
from learn2diss.data.synth.phones import INVENTORY, SILENCE
from learn2diss.data.synth.plan import Utterance, used_splits
from learn2diss.io import write_lines
from learn2diss.upstream.config import SAMPLE_RATE


def seconds(sample: int) -> str:
    """A sample index as exact seconds (16 kHz samples have at most 7 decimals)."""
    return f"{sample / SAMPLE_RATE:.7f}".rstrip("0").rstrip(".")


def write_transcripts(root: Path, done: list[tuple[Utterance, Result]]) -> None:
    """``SPEAKER-CHAPTER.trans.txt`` beside the audio: ``UTT-ID TRANSCRIPT`` per line."""
    groups: dict[Path, list[str]] = defaultdict(list)
    for utt, _ in done:
        folder = (root / utt.path).parent
        groups[folder / f"{utt.speaker.speaker_id}-{utt.chapter}.trans.txt"].append(
            f"{utt.utt_id} {utt.transcript}"
        )
    for path, lines in groups.items():
        write_lines(path, sorted(lines))


def write_split_manifests(root: Path, done: list[tuple[Utterance, Result]]) -> None:
    """``splits/{split}.tsv``: utt_id, path, speaker, num_samples, transcript."""
    for split in used_splits(done):
        lines = ["utt_id\tpath\tspeaker\tnum_samples\ttranscript"]
        lines += [
            f"{u.utt_id}\t{u.path}\t{u.speaker.speaker_id}\t{r.num_samples}\t{u.transcript}"
            for u, r in done
            if u.split == split
        ]
        write_lines(root / "splits" / f"{split}.tsv", lines)


def write_alignments(root: Path, done: list[tuple[Utterance, Result]]) -> None:
    """``alignments/{split}.tsv`` (utt_id, onset, offset, phone) and ``alignments/phones.txt``."""
    write_lines(root / "alignments" / "phones.txt", INVENTORY)
    for split in used_splits(done):
        lines = ["utt_id\tonset\toffset\tphone"]
        for u, r in done:
            if u.split == split:
                lines += [f"{u.utt_id}\t{seconds(a)}\t{seconds(b)}\t{p}" for a, b, p in r.segments]
        write_lines(root / "alignments" / f"{split}.tsv", lines)


def abx_items(done: list[tuple[Utterance, Result]], split: str, triphone_span: bool) -> list[str]:
    """ZeroSpeech 2021 items: every phone whose neighbours are phones too (no silence).

    ``triphone_span`` gives the onset of the previous and offset of the next phone (the
    ``.item`` convention); otherwise the central phone's own times (``.pitem``).
    """
    lines = ["#file onset offset #phone prev-phone next-phone speaker"]
    for u, r in done:
        if u.split != split:
            continue
        segs = r.segments
        for i in range(1, len(segs) - 1):
            (a0, _, prev), (a1, b1, phone), (_, b2, nxt) = segs[i - 1], segs[i], segs[i + 1]
            if SILENCE in (prev, phone, nxt):
                continue
            onset, offset = (a0, b2) if triphone_span else (a1, b1)
            speaker = u.speaker.speaker_id
            lines.append(
                f"{u.utt_id} {seconds(onset)} {seconds(offset)} {phone} {prev} {nxt} {speaker}"
            )
    return lines


def write_abx(root: Path, done: list[tuple[Utterance, Result]], split: str = "test") -> None:
    write_lines(root / "abx" / f"{split}.item", abx_items(done, split, triphone_span=True))
    write_lines(root / "abx" / f"{split}.pitem", abx_items(done, split, triphone_span=False))


def verification_trials(done: list[tuple[Utterance, Result]], seed: int) -> list[str]:
    """For every test utterance: one target and one non-target trial, VoxCeleb1 style.

    ``label enroll_path test_path``; the enrolment utterance is drawn from the same speaker
    (label 1) or from another test speaker (label 0).
    """
    rng = np.random.default_rng([seed, 2])
    by_speaker: dict[int, list[Utterance]] = defaultdict(list)
    for u, _ in done:
        if u.split == "test":
            by_speaker[u.speaker.speaker_id].append(u)
    lines: list[str] = []
    for speaker in sorted(by_speaker):
        others = [u for s in sorted(by_speaker) if s != speaker for u in by_speaker[s]]
        for test in by_speaker[speaker]:
            same = [u for u in by_speaker[speaker] if u.utt_id != test.utt_id]
            if same:
                lines.append(f"1 {same[rng.integers(len(same))].path} {test.path}")
            if others:
                lines.append(f"0 {others[rng.integers(len(others))].path} {test.path}")
    return lines


def write_voxceleb(
    root: Path, plan: list[Utterance], done: list[tuple[Utterance, Result]], seed: int
) -> None:
    """``voxceleb/speakers.tsv`` (one row per speaker) and ``voxceleb/veri_test.txt``."""
    speakers = {
        u.speaker.speaker_id: (u.speaker, u.split if u.split in ("test", "val") else "train")
        for u in plan
    }
    counts: dict[int, int] = defaultdict(int)
    for u, _ in done:
        counts[u.speaker.speaker_id] += 1
    lines = ["speaker\tname\tsex\tvoice\tbackend\tsplit\tnum_utterances"]
    for sid in sorted(speakers):
        s, split = speakers[sid]
        lines.append(
            f"{sid}\t{s.name}\t{s.sex}\t{s.voice.name}\t{s.voice.backend}\t{split}\t{counts[sid]}"
        )
    write_lines(root / "voxceleb" / "speakers.tsv", lines)
    write_lines(root / "voxceleb" / "veri_test.txt", verification_trials(done, seed))
