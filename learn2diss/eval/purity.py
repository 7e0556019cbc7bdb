"""Phone purity, cluster purity, PNMI and speaker purity (paper Table 8, Appendix A.3).

Frame features are quantised by faiss k-means (K = 2048 in the paper) fitted on a subset of frames;
the cluster of every aligned frame is compared with its forced-alignment phone. Utterance embeddings are
quantised into Q clusters (Q = 2000 in the paper) and compared with the speakers. The phone metrics are
the ones of HuBERT (Hsu et al. 2021, §IV-D; fairseq ``measure_teacher_quality.py``); speaker purity is
the one of Learn2Diss Appendix A.3. All values are returned in percent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from learn2diss.errors import InputError
from learn2diss.kmeans import assign, fit_kmeans

log = logging.getLogger(__name__)


def joint_distribution(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """Joint distribution ``p(y, z)`` of reference labels ``y`` (rows) and cluster ids ``z`` (columns).

    Args:
        ref: (N,) integer reference labels in ``[0, n_ref)``.
        hyp: (N,) integer cluster ids in ``[0, n_hyp)``.
    """
    if ref.shape != hyp.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"need two equally long non-empty label vectors, got {ref.shape} and {hyp.shape}")
    counts = np.zeros((int(ref.max()) + 1, int(hyp.max()) + 1), dtype=np.float64)
    np.add.at(counts, (ref, hyp), 1.0)
    return counts / counts.sum()


def phone_purity(p_xy: np.ndarray) -> float:
    """Phone purity ``sum_z max_y p(y, z)``: frame accuracy when each cluster is mapped to its majority phone
    (HuBERT §IV-D; Learn2Diss Table 8)."""
    return float(p_xy.max(axis=0).sum())


def cluster_purity(p_xy: np.ndarray) -> float:
    """Cluster purity ``sum_y max_z p(y, z)``: accuracy when each phone is mapped to its majority cluster (HuBERT §IV-D)."""
    return float(p_xy.max(axis=1).sum())


def pnmi(p_xy: np.ndarray) -> float:
    """Phone-normalised mutual information ``I(y; z) / H(y)`` (HuBERT §IV-D)."""
    p_y = p_xy.sum(axis=1, keepdims=True)
    p_z = p_xy.sum(axis=0, keepdims=True)
    nonzero = p_xy > 0
    mutual = float((p_xy[nonzero] * np.log(p_xy[nonzero] / (p_y @ p_z)[nonzero])).sum())
    p = p_y[p_y > 0]
    entropy = float(-(p * np.log(p)).sum())
    if entropy == 0:
        raise InputError("PNMI is undefined when every frame has the same phone (H(y) = 0)")
    return mutual / entropy


def speaker_purity(clusters: np.ndarray, speakers: np.ndarray) -> float:
    """Speaker purity of Learn2Diss Appendix A.3: in each cluster, the share of utterances of its dominant
    speaker, averaged over the (non-empty) clusters with equal weight."""
    if clusters.shape != speakers.shape or clusters.size == 0:
        raise ValueError(f"need one cluster id per utterance, got {clusters.shape} and {speakers.shape}")
    p_xy = joint_distribution(speakers, clusters)
    sizes = p_xy.sum(axis=0)
    used = sizes > 0
    return float((p_xy.max(axis=0)[used] / sizes[used]).mean())


def encode_labels(labels: Sequence[str] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """String labels -> integer codes and the sorted vocabulary."""
    vocab, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return codes.astype(np.int64), list(vocab)


@dataclass(frozen=True)
class PhoneScores:
    """Phone metrics of frame clusters, in percent, with the counts they came from."""

    phone_purity: float
    cluster_purity: float
    pnmi: float
    frames: int
    clusters: int


def aligned_frames(features: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The frames of several utterances with their labels, both truncated to the shorter; ``""`` labels dropped."""
    xs, ys = [], []
    for feats, labs in zip(features, labels, strict=True):
        n = min(len(feats), len(labs))
        keep = np.asarray(labs[:n]) != ""
        xs.append(np.asarray(feats[:n])[keep])
        ys.append(np.asarray(labs[:n])[keep])
    return np.concatenate(xs), np.concatenate(ys)


def frame_phone_scores(
    features: Sequence[np.ndarray], labels: Sequence[np.ndarray], k: int = 2048, fit_frames: int = 200_000,
    seed: int = 0, niter: int = 20,
) -> PhoneScores:
    """Quantise frame features with k-means and score the clusters against aligned phones.

    Args:
        features: per utterance, (T_u, D) frame features.
        labels: per utterance, (T_u,) phone labels; ``""`` marks unaligned frames, which are skipped.
            A length mismatch is resolved by truncating both to the shorter (as fairseq does).
        k: number of clusters; ``fit_frames``: size of the random subset k-means is fitted on.
    """
    x, y = aligned_frames(features, labels)
    if len(x) == 0:
        raise InputError("no aligned frames: do the alignment utterance ids match the audio?")
    ref, _ = encode_labels(y)
    centroids, _ = fit_kmeans(x, k, niter, seed, max_points=fit_frames)
    p_xy = joint_distribution(ref, assign(x, centroids).numpy())
    return PhoneScores(100 * phone_purity(p_xy), 100 * cluster_purity(p_xy), 100 * pnmi(p_xy), len(x), k)


def utterance_speaker_purity(
    embeddings: np.ndarray, speakers: Sequence[str], q: int = 2000, seed: int = 0, niter: int = 20
) -> tuple[float, int]:
    """Speaker purity (%) of ``q``-means clusters of utterance embeddings (N, D); returns (purity, q used).

    ``q`` is capped at the number of utterances; when the cap binds, purity is trivially high.
    """
    spk, _ = encode_labels(speakers)
    used_q = min(q, len(embeddings))  # the documented cap: Q follows the data here
    if used_q < q:
        log.warning("speaker purity: %d clusters requested but only %d utterances; using %d", q, used_q, used_q)
    centroids, _ = fit_kmeans(np.asarray(embeddings), used_q, niter, seed)
    return 100 * speaker_purity(assign(embeddings, centroids).numpy(), spk), used_q
