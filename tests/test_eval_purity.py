"""Purity metrics on hand-computed cases, alignment readers, and the k-means path end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learn2diss.eval.alignments import read_alignments, strip_stress
from learn2diss.eval.purity import (
    cluster_purity,
    frame_phone_scores,
    joint_distribution,
    phone_purity,
    pnmi,
    speaker_purity,
    utterance_speaker_purity,
)

REF = np.array([0, 0, 0, 1, 1, 2])  # phones
HYP = np.array([0, 0, 1, 1, 1, 1])  # clusters: z0 = {y0, y0}, z1 = {y0, y1, y1, y2}


def test_phone_and_cluster_purity_by_hand():
    p_xy = joint_distribution(REF, HYP)
    assert phone_purity(p_xy) == pytest.approx((2 + 2) / 6)  # majority phone of z0 (2) and z1 (2)
    assert cluster_purity(p_xy) == pytest.approx((2 + 2 + 1) / 6)  # majority cluster of y0, y1, y2


def test_pnmi_by_hand():
    # I(y;z) = 2/6 ln 2 + 1/6 ln(1/2) + 2/6 ln(3/2) + 1/6 ln(3/2);  H(y) with p(y) = (1/2, 1/3, 1/6)
    mutual = math.log(2) / 6 + math.log(1.5) / 2
    entropy = -(0.5 * math.log(0.5) + math.log(1 / 3) / 3 + math.log(1 / 6) / 6)
    assert pnmi(joint_distribution(REF, HYP)) == pytest.approx(mutual / entropy)
    assert pnmi(joint_distribution(REF, REF)) == pytest.approx(1.0)
    assert pnmi(joint_distribution(REF, np.zeros(6, dtype=int))) == pytest.approx(0.0)


def test_speaker_purity_is_an_unweighted_mean_over_clusters():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    speakers = np.array([0, 0, 1, 1, 1, 2])
    # cluster 0: 2 of 3 from speaker 0; cluster 1: 2 of 2; cluster 2: 1 of 1 (weighted would be 5/6)
    assert speaker_purity(clusters, speakers) == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_kmeans_recovers_separated_phones():
    rng = np.random.default_rng(0)
    prototypes = 10 * np.eye(16)[:3]
    labels = [rng.choice(np.array(["AA", "B", "S"]), size=60) for _ in range(4)]
    index = {"AA": 0, "B": 1, "S": 2}
    features = [prototypes[[index[p] for p in lab]] + 0.01 * rng.standard_normal((60, 16)) for lab in labels]
    labels[0][:5] = ""  # unaligned frames are skipped
    scores = frame_phone_scores(features, labels, k=3, fit_frames=1000, seed=0)
    assert scores.frames == 4 * 60 - 5
    assert (scores.phone_purity, scores.cluster_purity, scores.pnmi) == pytest.approx((100.0, 100.0, 100.0))


def test_speaker_purity_caps_clusters_on_small_sets():
    rng = np.random.default_rng(1)
    speakers = np.repeat(["a", "b", "c"], 4)
    embeddings = 5 * np.eye(8)[np.repeat([0, 1, 2], 4)] + 0.01 * rng.standard_normal((12, 8))
    purity, q = utterance_speaker_purity(embeddings, speakers, q=3)
    assert (purity, q) == (pytest.approx(100.0), 3)
    purity, q = utterance_speaker_purity(embeddings, speakers, q=2000)
    assert q == 12 and purity == pytest.approx(100.0)


EXPECTED = ["sil", "sil", "AH", "AH", "AH", "AH", "B", "B", "B", "B", ""]


def test_segment_alignments_to_50hz_frames(tmp_path):
    path = tmp_path / "ali.tsv"
    path.write_text("utt\tstart\tend\tphone\nu1\t0.04\t0.12\tAH0\nu1\t0.00\t0.04\tsil\nu1\t0.12\t0.20\tB\n")
    alignment = read_alignments(path)["u1"]
    assert list(alignment.frame_labels(11)) == EXPECTED


def test_frame_label_alignments_at_100hz(tmp_path):
    path = tmp_path / "ali.txt"
    path.write_text("u1 " + " ".join(["sil"] * 4 + ["AH1"] * 8 + ["B"] * 8) + "\n")
    assert list(read_alignments(path, label_rate=100)["u1"].frame_labels(11)) == EXPECTED
    with pytest.raises(ValueError, match="label-rate"):
        read_alignments(path)


def test_bad_alignment_line_is_named(tmp_path):
    path = tmp_path / "ali.tsv"
    path.write_text("u1 0.0 0.1 AH\nu1 0.1 B\n")
    with pytest.raises(ValueError, match=r"ali.tsv:2: expected 4 columns"):
        read_alignments(path, fmt="segments")


def test_strip_stress():
    assert [strip_stress(p) for p in ("AH0", "IY1", "sil", "B")] == ["AH", "IY", "sil", "B"]
