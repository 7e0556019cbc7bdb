"""Demo corpus builder: a small corpus built once per session, checked file by file.

Needs the Debian synthesisers (``bash scripts/install-demo-debs.sh`` as root). Without them the
corpus tests skip with the reason, except on CI as root, where they fail instead.
"""

from __future__ import annotations

import csv
import filecmp
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from learn2diss.data.synth.phones import INVENTORY, SILENCE
from learn2diss.data.synth.text import WORDNET_DIR, WORDNET_FILES

TOOLS = ("sox", "espeak-ng", "mbrola", "flite", "festival")
SMALL = ["--speakers", "6", "--utts", "4", "--shared", "2", "--seed", "3"]
SAMPLE_RATE = 16000


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    missing += [
        f"{WORDNET_DIR}/{name}" for name in WORDNET_FILES if not (WORDNET_DIR / name).is_file()
    ]
    return missing


def require_synthesisers() -> None:
    missing = missing_tools()
    if not missing:
        return
    reason = (
        f"demo-corpus synthesisers not installed (missing: {', '.join(missing)}); "
        "run `sudo bash scripts/install-demo-debs.sh`"
    )
    if os.environ.get("CI") and os.geteuid() == 0:
        pytest.fail(f"on CI as root the demo-corpus tests must run: {reason}")
    pytest.skip(reason)


def build(out: Path, *extra: str) -> Path:
    from learn2diss.cli import main

    assert main(["data", "synth", "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_synthesisers()
    return build(tmp_path_factory.mktemp("synth") / "small", *SMALL, "--jobs", "2")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def manifest(root: Path) -> dict[str, dict[str, str]]:
    rows = {}
    for split in ("train", "dev", "test"):
        for row in read_tsv(root / "splits" / f"{split}.tsv"):
            rows[row["utt_id"]] = {**row, "split": split}
    return rows


def alignments(root: Path) -> dict[str, list[tuple[float, float, str]]]:
    segments: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for split in ("train", "dev", "test"):
        for row in read_tsv(root / "alignments" / f"{split}.tsv"):
            segments[row["utt_id"]].append(
                (float(row["onset"]), float(row["offset"]), row["phone"])
            )
    return segments


def check_audio_and_alignments(root: Path) -> None:
    """Every utterance: 16 kHz mono 16-bit, contiguous alignment ending within 20 ms of the
    audio end, silence at least 30 dB below speech."""
    rows, segs = manifest(root), alignments(root)
    assert set(rows) == set(segs)
    for utt, row in rows.items():
        info = sf.info(str(root / row["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16"), utt
        assert info.frames == int(row["num_samples"])
        s = segs[utt]
        assert s[0][0] == 0.0
        assert all(a[1] == b[0] for a, b in zip(s, s[1:], strict=False)), f"{utt}: gap or overlap"
        assert all(onset < offset for onset, offset, _ in s)
        assert abs(s[-1][1] - info.frames / SAMPLE_RATE) <= 0.020
        assert {p for _, _, p in s} <= set(INVENTORY)
        audio, _ = sf.read(str(root / row["path"]), dtype="float64")
        cut = [(round(a * SAMPLE_RATE), round(b * SAMPLE_RATE), p) for a, b, p in s]
        speech = np.concatenate([audio[a:b] for a, b, p in cut if p != SILENCE])
        silence = np.concatenate([audio[a:b] for a, b, p in cut if p == SILENCE])
        ratio_db = 10 * np.log10(np.mean(speech**2) / np.mean(silence**2))
        assert ratio_db >= 30.0, f"{utt}: silence only {ratio_db:.1f} dB below speech"


def test_audio_files_and_alignments(corpus: Path) -> None:
    check_audio_and_alignments(corpus)
    assert len(manifest(corpus)) == 6 * 4


def test_librispeech_layout_and_transcripts(corpus: Path) -> None:
    rows = manifest(corpus)
    for utt, row in rows.items():
        speaker, chapter, _ = utt.split("-")
        assert row["path"] == f"LibriSpeech-style/{row['split']}/{speaker}/{chapter}/{utt}.flac"
        assert row["speaker"] == speaker
        assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", row["transcript"]), row["transcript"]
    trans = {}
    for path in (corpus / "LibriSpeech-style").rglob("*.trans.txt"):
        speaker, chapter = path.name.removesuffix(".trans.txt").split("-")
        assert path.parent.parts[-2:] == (speaker, chapter)
        for line in path.read_text().splitlines():
            utt, text = line.split(" ", 1)
            trans[utt] = text
    assert trans == {utt: row["transcript"] for utt, row in rows.items()}
    assert sorted(corpus.joinpath("alignments", "phones.txt").read_text().split()) == sorted(
        INVENTORY
    )


def test_splits_and_shared_sentences(corpus: Path) -> None:
    rows = manifest(corpus)
    speakers = {
        split: {r["speaker"] for r in rows.values() if r["split"] == split}
        for split in ("train", "dev", "test")
    }
    assert speakers["test"] and speakers["train"]
    assert not speakers["test"] & speakers["train"], "test speakers must be unseen in train"
    assert speakers["dev"] <= speakers["train"]
    shared = defaultdict(set)  # chapter 1 utterance n is the same sentence for every speaker
    for utt, row in rows.items():
        speaker, chapter, number = utt.split("-")
        if chapter == "1":
            shared[number].add(row["transcript"])
            assert (
                sum(
                    r["speaker"] == speaker and r["transcript"] == row["transcript"]
                    for r in rows.values()
                )
                == 1
            )
    assert len(shared) == 2 and all(len(texts) == 1 for texts in shared.values())
    own = [r["transcript"] for u, r in rows.items() if u.split("-")[1] == "2"]
    assert len(own) == len(set(own)), "own sentences are drawn without replacement"


def test_abx_item_files_inside_audio(corpus: Path) -> None:
    rows = manifest(corpus)
    for name, triphone in (("test.item", True), ("test.pitem", False)):
        lines = corpus.joinpath("abx", name).read_text().splitlines()
        assert lines[0] == "#file onset offset #phone prev-phone next-phone speaker"
        assert len(lines) > 20
        segs = alignments(corpus)
        for line in lines[1:]:
            utt, onset, offset, phone, prev, nxt, speaker = line.split()
            row = rows[utt]
            assert row["split"] == "test" and row["speaker"] == speaker
            assert 0 <= float(onset) < float(offset) <= int(row["num_samples"]) / SAMPLE_RATE
            assert SILENCE not in (phone, prev, nxt)
            triple = [(a, b, p) for a, b, p in segs[utt]]
            starts = [a for a, _, _ in triple]
            i = starts.index(float(onset)) + (1 if triphone else 0)
            assert (triple[i - 1][2], triple[i][2], triple[i + 1][2]) == (prev, phone, nxt)


def test_voxceleb_lists(corpus: Path) -> None:
    rows = manifest(corpus)
    speakers = read_tsv(corpus / "voxceleb" / "speakers.tsv")
    assert {s["speaker"] for s in speakers} == {r["speaker"] for r in rows.values()}
    assert {s["sex"] for s in speakers} == {"F", "M"}
    by_path = {r["path"]: r for r in rows.values()}
    trials = corpus.joinpath("voxceleb", "veri_test.txt").read_text().splitlines()
    labels = set()
    for line in trials:
        label, enroll, test = line.split()
        assert enroll != test
        a, b = by_path[enroll], by_path[test]
        assert a["split"] == b["split"] == "test"
        assert label == ("1" if a["speaker"] == b["speaker"] else "0")
        labels.add(label)
    assert labels == {"0", "1"}


def test_same_seed_gives_identical_bytes(corpus: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again", *SMALL, "--jobs", "1")
    comparison = filecmp.dircmp(corpus, again)
    files = [p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file()]
    assert len(files) > 40
    for rel in files:
        assert filecmp.cmp(corpus / rel, again / rel, shallow=False), f"{rel} differs"
    assert not comparison.left_only and not comparison.right_only
    other = build(tmp_path / "other", *SMALL[:-1], "4", "--jobs", "2")
    assert not filecmp.cmp(
        corpus / "splits" / "train.tsv", other / "splits" / "train.tsv", shallow=False
    )


def test_rerun_is_a_no_op_and_other_settings_refused(
    corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    from learn2diss.cli import console, main

    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    assert main(["data", "synth", "--out", str(corpus), *SMALL]) == 0
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == before
    assert console(["data", "synth", "--out", str(corpus), *SMALL[:-1], "9"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_default_speaker_set_all_voices(tmp_path: Path) -> None:
    """All 24 default speakers (every voice, all three backends), 3 utterances each (~3 s)."""
    require_synthesisers()
    out = build(tmp_path / "default", "--utts", "3", "--shared", "2")
    check_audio_and_alignments(out)
    speakers = read_tsv(out / "voxceleb" / "speakers.tsv")
    assert len(speakers) >= 24
    assert {s["backend"] for s in speakers} == {"mbrola", "flite", "festival"}
    assert sum(s["sex"] == "F" for s in speakers) >= 6
    assert sum(int(s["num_utterances"]) for s in speakers) >= 0.97 * 3 * len(speakers)
