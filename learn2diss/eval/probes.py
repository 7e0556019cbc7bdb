"""Linear probes on frozen features: how much speaker and phone information each encoder keeps.

A Table 5 style disentanglement matrix in minutes instead of SUPERB's days: for each encoder
(frame-level g, utterance-level h) a multinomial logistic regression predicts the speaker of an
utterance from its mean-pooled (or pooled) features, and the phone of every frame from per-frame
features. Utterances are split per speaker (``test_fraction`` of each speaker's utterances held out),
so the speaker probe sees every test speaker in training and the phone probe is scored on unseen
utterances. Accuracies are in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from learn2diss.eval.purity import aligned_frames


def speaker_stratified_split(
    utterances: Sequence[str], speakers: Mapping[str, str], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Hold out ``test_fraction`` of each speaker's utterances (at least one when the speaker has two or more)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[str]] = {}
    for utt in utterances:
        by_speaker.setdefault(speakers[utt], []).append(utt)
    train, test = [], []
    for spk in sorted(by_speaker):
        utts = sorted(by_speaker[spk])
        rng.shuffle(utts)
        n_test = max(1, round(test_fraction * len(utts))) if len(utts) > 1 else 0
        test += utts[:n_test]
        train += utts[n_test:]
    if not test:
        raise ValueError("no held-out utterances: every speaker has a single utterance")
    return train, test


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, test_y: Sequence[str], seed: int = 0,
    max_iter: int = 300,
) -> float:
    """Accuracy (%) of a standardised multinomial logistic regression (scikit-learn, L2, lbfgs).

    Test labels never seen in training count as errors.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(set(train_y)) < 2:
        raise ValueError("a probe needs at least two classes in its training set")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(np.asarray(train_x, dtype=np.float32), train_y)
    return 100.0 * float((probe.predict(np.asarray(test_x, dtype=np.float32)) == test_y).mean())


def sample_frames(
    features: Sequence[np.ndarray], labels: Sequence[np.ndarray], max_frames: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned frames (``""`` labels dropped) of several utterances, at most ``max_frames`` drawn at random."""
    x, y = aligned_frames(features, labels)
    if len(x) > max_frames:
        pick = np.random.default_rng(seed).choice(len(x), size=max_frames, replace=False)
        x, y = x[pick], y[pick]
    return x, y


@dataclass(frozen=True)
class ProbeData:
    """Inputs of one encoder's probes: pooled vectors per utterance and per-frame features per utterance."""

    pooled: Mapping[str, np.ndarray]
    frames: Mapping[str, np.ndarray]


def probe_encoder(
    data: ProbeData, train: Sequence[str], test: Sequence[str], speakers: Mapping[str, str],
    phones: Mapping[str, np.ndarray], max_frames: int = 50_000, seed: int = 0,
) -> dict[str, float]:
    """``{"speaker_id_acc": %, "phone_acc": %}`` of one encoder."""
    speaker = linear_probe_accuracy(
        np.stack([data.pooled[u] for u in train]), [speakers[u] for u in train],
        np.stack([data.pooled[u] for u in test]), [speakers[u] for u in test], seed)
    train_x, train_y = sample_frames([data.frames[u] for u in train], [phones[u] for u in train], max_frames, seed)
    test_x, test_y = sample_frames([data.frames[u] for u in test], [phones[u] for u in test], max_frames, seed + 1)
    phone = linear_probe_accuracy(train_x, train_y, test_x, test_y, seed)
    return {"speaker_id_acc": speaker, "phone_acc": phone}
