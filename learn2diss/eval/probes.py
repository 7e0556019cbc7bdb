"""Linear probes on frozen features: how much speaker and phone information each encoder keeps.

A Table 5 style disentanglement matrix in seconds instead of SUPERB's days: for each encoder
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

from learn2diss.errors import InputError
from learn2diss.eval.purity import aligned_frames

# Defaults of `learn2diss eval probes` and of the demo's probes (one protocol, so the command reproduces the demo's
# rows): half of each speaker's utterances scored (on the demo's 300 test utterances, 150 scored: 0.7 points per
# utterance, against 1.7 with a 20 % hold-out), and 20,000 random frames per phone-probe split.
TEST_FRACTION = 0.5
MAX_FRAMES = 20_000


def speaker_stratified_split(
    utterances: Sequence[str], speakers: Mapping[str, str], test_fraction: float = TEST_FRACTION, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Hold out ``test_fraction`` of each speaker's utterances (at least one when the speaker has two or more)."""
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
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
        raise InputError("no held-out utterances: every speaker has a single utterance")
    return train, test


def fit_logistic_regression(
    x: np.ndarray, y: np.ndarray, num_classes: int, max_iter: int = 100, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (D, C) and biases (C,) of a multinomial logistic regression with an L2 penalty on the weights.

    scikit-learn's ``LogisticRegression(C=1)`` objective, ``mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 n)``
    (biases unpenalised; strictly convex, one optimum), minimised by full-batch L-BFGS in torch (float32,
    strong-Wolfe line search) until the largest gradient entry is below ``tol`` or after ``max_iter``
    iterations. About 5x faster than scikit-learn's lbfgs at its 300 iterations on the demo's 20 k x 192
    frame probe, with accuracies within 0.1 point (docs/demo.md, "Time").
    """
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    weight = torch.zeros(xt.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=10, tolerance_grad=tol,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xt @ weight + bias, yt) + weight.pow(2).sum() / (2 * len(xt))
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach().numpy(), bias.detach().numpy()


@dataclass(frozen=True)
class ProbeScores:
    """A probe's accuracy (%) and cross-entropy (bits per test item, over the labels seen in training)."""

    accuracy: float
    cross_entropy_bits: float


def linear_probe_scores(
    train_x: np.ndarray, train_y: Sequence[str] | np.ndarray, test_x: np.ndarray, test_y: Sequence[str] | np.ndarray,
    max_iter: int = 100,
) -> ProbeScores:
    """Accuracy and cross-entropy of a standardised multinomial logistic regression (L2, C = 1;
    :func:`fit_logistic_regression`).

    Features are standardised with the training set's mean and deviation (a constant dimension is left
    unscaled), as scikit-learn's ``StandardScaler``. The fit is deterministic. Test labels never seen in
    training count as errors and are left out of the cross-entropy. The cross-entropy is not bounded by the
    number of classes the way accuracy is, so it still moves where accuracy sits at its ceiling.
    """
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    classes, codes = np.unique(train_y, return_inverse=True)
    if len(classes) < 2:
        raise InputError("a probe needs at least two classes in its training set")
    train_x = np.asarray(train_x, dtype=np.float64)
    mean, std = train_x.mean(0), train_x.std(0)
    std[std == 0] = 1.0
    weight, bias = fit_logistic_regression((train_x - mean) / std, codes, len(classes), max_iter)
    scores = ((np.asarray(test_x, dtype=np.float64) - mean) / std).astype(np.float32) @ weight + bias
    accuracy = 100.0 * float((classes[scores.argmax(1)] == test_y).mean())
    seen = np.isin(test_y, classes)
    log_probs = scores[seen] - np.logaddexp.reduce(scores[seen].astype(np.float64), axis=1, keepdims=True)
    true = log_probs[np.arange(int(seen.sum())), np.searchsorted(classes, test_y[seen])]
    return ProbeScores(accuracy, float(-true.mean() / np.log(2)) if len(true) else float("nan"))


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: Sequence[str] | np.ndarray, test_x: np.ndarray, test_y: Sequence[str] | np.ndarray,
    seed: int = 0, max_iter: int = 100,
) -> float:
    """Accuracy (%) of :func:`linear_probe_scores`; ``seed`` is accepted for the callers and unused (the fit is
    deterministic)."""
    del seed
    return linear_probe_scores(train_x, train_y, test_x, test_y, max_iter).accuracy


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
    phones: Mapping[str, np.ndarray], max_frames: int = MAX_FRAMES, seed: int = 0,
) -> dict[str, float]:
    """``{"speaker_id_acc": %, "phone_acc": %}`` of one encoder."""
    speaker = linear_probe_accuracy(
        np.stack([data.pooled[u] for u in train]), [speakers[u] for u in train],
        np.stack([data.pooled[u] for u in test]), [speakers[u] for u in test], seed)
    train_x, train_y = sample_frames([data.frames[u] for u in train], [phones[u] for u in train], max_frames, seed)
    test_x, test_y = sample_frames([data.frames[u] for u in test], [phones[u] for u in test], max_frames, seed + 1)
    phone = linear_probe_accuracy(train_x, train_y, test_x, test_y, seed)
    return {"speaker_id_acc": speaker, "phone_acc": phone}
