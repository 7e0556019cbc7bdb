"""Linear probes: known answers on constructed features; purity and probes commands end to end."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import tiny_checkpoint, write_librispeech

from learn2diss.cli import main
from learn2diss.eval.probes import (
    ProbeData,
    linear_probe_accuracy,
    probe_encoder,
    speaker_stratified_split,
)
from learn2diss.eval.results import read_rows


def test_split_holds_out_part_of_every_speaker():
    speakers = {f"{s}-{n}": s for s in "abc" for n in range(5)}
    train, test = speaker_stratified_split(sorted(speakers), speakers, test_fraction=0.2, seed=0)
    assert sorted(train + test) == sorted(speakers) and not set(train) & set(test)
    assert sorted(speakers[u] for u in test) == ["a", "b", "c"]


def test_probe_reads_encoded_classes_and_not_absent_ones():
    rng = np.random.default_rng(0)
    labels = np.repeat(["x", "y", "z"], 40)
    coded = np.eye(3)[np.repeat([0, 1, 2], 40)] + 0.1 * rng.standard_normal((120, 3))
    noise = rng.standard_normal((120, 3))
    train, test = np.arange(120) % 4 != 0, np.arange(120) % 4 == 0
    assert linear_probe_accuracy(coded[train], labels[train], coded[test], labels[test]) == 100.0
    assert linear_probe_accuracy(noise[train], labels[train], noise[test], labels[test]) < 60.0


def test_disentangled_encoders_give_the_table5_pattern():
    """Frame features carry phones only, utterance features speakers only: the matrix shows it."""
    rng = np.random.default_rng(1)
    phones_of = {}
    frame_feats, utt_frames, utt_pooled, speakers = {}, {}, {}, {}
    for s in range(4):
        for n in range(6):
            utt = f"{s}-1-{n}"
            speakers[utt] = str(s)
            phone_ids = rng.integers(0, 3, size=30)
            phones_of[utt] = np.array(["AA", "B", "S"])[phone_ids]
            frame_feats[utt] = np.eye(8)[phone_ids] + 0.1 * rng.standard_normal((30, 8))
            utt_frames[utt] = np.tile(np.eye(8)[s + 4], (30, 1)) + 0.1 * rng.standard_normal((30, 8))
            utt_pooled[utt] = utt_frames[utt].mean(0)
    train, test = speaker_stratified_split(sorted(speakers), speakers, 0.34, seed=0)
    frame = probe_encoder(ProbeData({u: a.mean(0) for u, a in frame_feats.items()}, frame_feats), train, test,
                          speakers, phones_of)
    utterance = probe_encoder(ProbeData(utt_pooled, utt_frames), train, test, speakers, phones_of)
    assert frame["phone_acc"] == 100.0 and utterance["speaker_id_acc"] == 100.0
    assert frame["speaker_id_acc"] < 70.0 and utterance["phone_acc"] < 60.0


def demo_like_corpus(root):
    write_librispeech(root / "audio", {"11": ["A", "B", "C"], "22": ["A", "B", "C"]}, seconds=1.0)
    lines = ["utt_id\tonset\toffset\tphone"]
    for spk in ("11", "22"):
        for n in range(3):
            utt = f"{spk}-100-{n:04d}"
            lines += [f"{utt}\t0\t0.3\tAA1", f"{utt}\t0.3\t0.6\tB", f"{utt}\t0.6\t1.0\tS"]
    (root / "test.tsv").write_text("\n".join(lines) + "\n")
    return root / "test.tsv"


def test_purity_command_end_to_end(tmp_path):
    alignments = demo_like_corpus(tmp_path)
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    assert main(["eval", "purity", "--checkpoint", str(ckpt), "--audio", str(tmp_path / "audio"), "--alignments",
                 str(alignments), "--dataset", "demo", "--clusters", "8", "--speaker-clusters", "2",
                 "--results", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work"),
                 "--model-name", "L2D-W12"]) == 0
    rows = {r.metric: r for r in read_rows(tmp_path / "results" / "purity.csv")}
    assert set(rows) == {"phone_purity", "cluster_purity", "pnmi", "speaker_purity"}
    assert all(0.0 <= r.value <= 100.0 for r in rows.values())
    assert rows["phone_purity"].value >= 100 * 19 / 49 - 1e-6  # purity >= the majority phone share (S: 19/49)
    assert rows["speaker_purity"].features == "utt:embedding" and rows["pnmi"].features == "frame:last"


def test_probes_command_end_to_end(tmp_path):
    alignments = demo_like_corpus(tmp_path)
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    assert main(["eval", "probes", "--checkpoint", str(ckpt), "--audio", str(tmp_path / "audio"), "--alignments",
                 str(alignments), "--test-fraction", "0.34", "--results", str(tmp_path / "results"),
                 "--work-dir", str(tmp_path / "work")]) == 0
    rows = {(r.condition, r.metric): r.value for r in read_rows(tmp_path / "results" / "probes.csv")}
    assert set(rows) == {(e, m) for e in ("frame", "utterance") for m in ("speaker_id_acc", "phone_acc")}
    assert all(0.0 <= v <= 100.0 for v in rows.values())


def test_unknown_speaker_map_entry_is_named(tmp_path):
    alignments = demo_like_corpus(tmp_path)
    speakers = tmp_path / "spk.tsv"
    speakers.write_text("utt_id\tpath\tspeaker\n11-100-0000\tx\t11\n")
    with pytest.raises(ValueError, match="no speaker for 5 utterance"):
        main(["eval", "probes", "--features-dir", str(tmp_path), "--alignments", str(alignments),
              "--speakers", str(speakers), "--results", str(tmp_path / "results")])
