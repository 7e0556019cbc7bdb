"""The Learn2Diss training losses of g and h, one function per paper equation (Krishna & Ganapathy, §3.2, eq. 3-7;
the CLUB terms, eq. 1, 2 and 8, are in :mod:`learn2diss.club`).

Every function takes tensors and returns a scalar tensor (or per-frame values where noted); all
hyperparameters are arguments that come from the config. Losses are computed in float32 whatever
the autocast dtype of their inputs.

Decisions where the paper is ambiguous (docs/pretraining.md has the reasoning):

- pseudo-con (eq. 3) is printed without a log; :func:`pseudo_con_loss` is the supervised
  contrastive (SupCon) form, ``-mean_p log softmax(...)``, and skips anchors without positives.
- InfoNCE (eq. 5) takes a temperature; ``denominator="all_others"`` is SimCLR's NT-Xent.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "frame_cross_entropy",
    "pseudo_con_loss",
    "info_nce_loss",
    "utterance_cross_entropy",
]

_EXCLUDED = -1e9  # logit of a pair left out of a softmax denominator: finite, so empty rows give no NaN gradient


def frame_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """L_CE^g of eq. 3: cross-entropy between ``softmax(W_g y^M_t)`` and the k-means target nu_t.

    Args:
        logits: (frames, K) ``W_g y^M`` of the frames the loss is on (the masked frames in the paper), at
            least one.
        targets: (frames,) int64 k-means labels nu_t.

    Returns:
        The mean over the frames.
    """
    return F.cross_entropy(logits.float(), targets)


def pseudo_con_loss(
    features: Tensor,
    labels: Tensor,
    temperature: float,
    denominator: Literal["all_others", "negatives"] = "all_others",
    normalize: bool = True,
) -> Tensor:
    """L_PC^g of eq. 3, the pseudo-con loss (Krishna & Ganapathy, ASRU 2023), in SupCon form.

    For anchor t with positives P(t) = {p != t : nu_p = nu_t}::

        L_t = -1/|P(t)| sum_{p in P(t)} log( exp(y_t.y_p / tau) / sum_{a in A(t)} exp(y_t.y_a / tau) )

    with A(t) = every other frame (``"all_others"``, SupCon) or the frames of another label
    (``"negatives"``, A(t) as printed in the paper). Anchors without a positive (or, for
    ``"negatives"``, without a negative) are skipped.

    Args:
        features: (frames, dim) y^M of the selected frames, from every utterance of the batch.
        labels: (frames,) int64 k-means labels nu.
        temperature: tau.
        denominator: which frames form A(t).
        normalize: L2-normalise the features first (cosine similarity).

    Returns:
        The mean of L_t over the anchors kept (0 when there are none).
    """
    x = features.float()
    if normalize:
        x = F.normalize(x, dim=-1)
    n = x.shape[0]
    sim = (x @ x.T) / temperature  # (frames, frames)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    same = labels[:, None] == labels[None, :]
    positives = same & ~eye
    excluded = same if denominator == "negatives" else eye
    log_denominator = sim.masked_fill(excluded, _EXCLUDED).logsumexp(dim=1)  # (frames,)
    num_pos = positives.sum(dim=1)
    keep = num_pos > 0
    if denominator == "negatives":
        keep &= (~same).any(dim=1)
    if not bool(keep.any()):
        return features.sum() * 0.0
    log_prob = sim - log_denominator[:, None]  # (frames, frames)
    mean_pos = (log_prob * positives).sum(dim=1)[keep] / num_pos[keep]
    return -mean_pos.mean()


def info_nce_loss(
    z1: Tensor,
    z2: Tensor,
    temperature: float,
    denominator: Literal["all_others", "paper"] = "all_others",
) -> Tensor:
    """L_InfoNCE^h of eq. 5 on the pooled embeddings of two non-overlapping segments per utterance.

    Similarities are cosines divided by ``temperature`` (eq. 5 as printed has tau = 1). The
    positive of view (i, j) is (i, 3 - j). ``denominator="all_others"`` sums over the 2B - 1 other
    views including the positive (SimCLR's NT-Xent); ``"paper"`` reads the indicator of eq. 5
    literally: the other view a != j of the other utterances k != i.

    Args:
        z1, z2: (batch, dim) z^L_{i,1} and z^L_{i,2}.

    Returns:
        The mean over the 2B anchors (0 when batch < 2).
    """
    b = z1.shape[0]
    if b < 2:
        return (z1.sum() + z2.sum()) * 0.0
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)  # (2B, dim), rows i then B + i
    sim = (z @ z.T) / temperature
    idx = torch.arange(2 * b, device=z.device)
    partner = (idx + b) % (2 * b)
    if denominator == "all_others":
        mask = idx[:, None] == idx[None, :]
    else:
        utt = idx % b
        view = idx // b
        mask = (utt[:, None] == utt[None, :]) | (view[:, None] == view[None, :])
    log_den = sim.masked_fill(mask, _EXCLUDED).logsumexp(dim=1)
    return (log_den - sim[idx, partner]).mean()


def utterance_cross_entropy(logits1: Tensor, logits2: Tensor, targets: Tensor) -> Tensor:
    """L_CE^h of eq. 6: cross-entropy of ``softmax(W_h z^L_{i,j})`` against the utterance cluster mu_i.

    Eq. 6 sums over utterances; this is the mean over utterances and the two views, so the loss
    does not grow with the batch size (the same reduction as L_CE^g).

    Args:
        logits1, logits2: (batch, Q) for the two segments.
        targets: (batch,) int64 utterance cluster of each utterance.
    """
    if logits1.shape[0] == 0:
        return (logits1.sum() + logits2.sum()) * 0.0
    return 0.5 * (F.cross_entropy(logits1.float(), targets) + F.cross_entropy(logits2.float(), targets))
