"""Speaker verification on utterance embeddings: the equal error rate (EER) of cosine scoring.

Every pair of utterances of an evaluation set is a trial (target when both have the same speaker). The
embeddings are centred on their mean (the set's own, no training data) and compared by cosine similarity;
the EER is where the false-acceptance and false-rejection rates meet on scikit-learn's ROC curve. Unlike a
closed-set speaker-ID probe, which reaches its ceiling quickly with few speakers, the EER keeps moving with
how well the embeddings separate speakers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learn2diss.errors import InputError


def equal_error_rate(scores: np.ndarray, targets: np.ndarray) -> float:
    """EER (%) of trial ``scores`` (higher: more likely the same speaker) against boolean ``targets``."""
    from sklearn.metrics import roc_curve

    targets = np.asarray(targets, dtype=bool)
    if targets.all() or not targets.any():
        raise InputError("an EER needs both target and non-target trials")
    fpr, tpr, _ = roc_curve(targets, scores)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    # linear interpolation between the two ROC points around the crossing
    j = i + 1 if i + 1 < len(fpr) and (fnr[i] - fpr[i]) > 0 else max(i - 1, 0)
    a, b = fnr[i] - fpr[i], fnr[j] - fpr[j]
    if a == b:
        return 100.0 * float((fnr[i] + fpr[i]) / 2)
    w = a / (a - b)
    return 100.0 * float(fpr[i] + w * (fpr[j] - fpr[i]))


def cosine_eer(embeddings: np.ndarray, speakers: Sequence[str]) -> float:
    """EER (%) of centred cosine scoring over every pair of the (n, d) ``embeddings``."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x - x.mean(0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(speakers)
    upper = np.triu_indices(len(x), k=1)
    return equal_error_rate((x @ x.T)[upper], (labels[:, None] == labels[None, :])[upper])
