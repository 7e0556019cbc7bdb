"""The Learn2Diss training losses, one function per paper equation (Krishna & Ganapathy, §3.2).

Every function takes tensors and returns a scalar tensor (or per-frame values where noted); all
hyperparameters are arguments that come from the config. Losses are computed in float32 whatever
the autocast dtype of their inputs.

Decisions where the paper is ambiguous (docs/pretraining.md has the reasoning):

- pseudo-con (eq. 3) is printed without a log; :func:`pseudo_con_loss` is the supervised
  contrastive (SupCon) form, ``-mean_p log softmax(...)``, and skips anchors without positives.
- InfoNCE (eq. 5) takes a temperature; ``denominator="all_others"`` is SimCLR's NT-Xent.
- CLUB (eq. 8) is per frame with the negative term in closed form (no B x B x T x D tensor).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "frame_cross_entropy",
    "pseudo_con_loss",
    "info_nce_loss",
    "utterance_cross_entropy",
    "gaussian_log_likelihood",
    "club_nll",
    "club_negative_term",
    "club_upper_bound",
]

_LOG_2PI = math.log(2 * math.pi)
_EXCLUDED = -1e9  # logit of a pair left out of a softmax denominator: finite, so empty rows give no NaN gradient


def frame_cross_entropy(logits: Tensor, targets: Tensor, selected: Tensor) -> Tensor:
    """L_CE^g of eq. 3: cross-entropy between ``softmax(W_g y^M_t)`` and the k-means target nu_t.

    Args:
        logits: (batch, frame, K) ``W_g y^M``.
        targets: (batch, frame) int64 k-means labels nu_t.
        selected: (batch, frame) bool, the frames the loss is on (the masked frames in the paper).

    Returns:
        The mean over selected frames (0 when none is selected).
    """
    if not bool(selected.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[selected].float(), targets[selected])


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


def gaussian_log_likelihood(mu: Tensor, logvar: Tensor, y: Tensor) -> Tensor:
    """log q_phi(y | x) for a diagonal Gaussian with mean ``mu`` and log-variance ``logvar``.

    The normalised density (with the 1/2 and log 2 pi terms), summed over the last dimension.
    Shapes broadcast; returns ``(...)`` for inputs ``(..., dim)``.
    """
    mu, logvar, y = mu.float(), logvar.float(), y.float()
    return -0.5 * ((y - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(dim=-1)


def club_nll(mu: Tensor, logvar: Tensor, y: Tensor, valid: Tensor | None = None) -> Tensor:
    """L(phi) of eq. 2: the negative log-likelihood of the pairs (y_i, x_i) under q_phi.

    Args:
        mu, logvar: (batch, frame, dim_y) q_phi's parameters given x = z-bar_{i,t}.
        y: (batch, frame, dim_y) y-bar_{i,t}.
        valid: (batch, frame) bool, frames to use (all when None).

    Returns:
        The mean over valid frames of -log q_phi(y | x).
    """
    ll = gaussian_log_likelihood(mu, logvar, y)  # (batch, frame)
    if valid is None:
        return -ll.mean()
    return -(ll * valid).sum() / valid.sum().clamp(min=1)


def club_negative_term(
    mu: Tensor,
    logvar: Tensor,
    y: Tensor,
    valid: Tensor | None = None,
    negatives: Literal["same_time", "all_frames"] = "same_time",
) -> Tensor:
    """The negative term of eq. 8, ``1/B sum_j log q_phi(y-bar_{i,t} | z-bar_{j,t})``, in closed form.

    For a diagonal Gaussian, ``log q(y | x_j) = -1/2 sum_d [y_d^2 v_jd - 2 y_d mu_jd v_jd
    + mu_jd^2 v_jd + logvar_jd + log 2 pi]`` with v = exp(-logvar), so the mean over j only needs
    the per-dimension means of v, mu v, mu^2 v and logvar over the negatives: O(B T D) instead of
    the O(B^2 T D) pairwise tensor. ``"same_time"`` takes the j at the same frame index t (eq. 8 as
    printed); ``"all_frames"`` takes every valid frame (j, t') of the batch.

    Args:
        mu, logvar, y: (batch, frame, dim_y); ``mu, logvar = q_phi(z-bar)``.
        valid: (batch, frame) bool; invalid frames are neither anchors' negatives nor counted.

    Returns:
        (batch, frame) the negative term per frame (meaningless at invalid frames).
    """
    mu, logvar, y = mu.float(), logvar.float(), y.float()
    if valid is None:
        valid = torch.ones(mu.shape[:2], dtype=torch.bool, device=mu.device)
    w = valid.float()[..., None]  # (batch, frame, 1)
    inv_var = torch.exp(-logvar)
    stats = torch.stack([inv_var, mu * inv_var, mu.pow(2) * inv_var, logvar])  # (4, batch, frame, dim)
    if negatives == "same_time":
        count = w.sum(dim=0).clamp(min=1)  # (frame, 1)
        means = (stats * w).sum(dim=1) / count  # (4, frame, dim), broadcast over batch below
        means = means[:, None]
    else:
        count = w.sum().clamp(min=1)
        means = (stats * w).sum(dim=(1, 2)) / count  # (4, dim)
        means = means[:, None, None]
    a, b, c, e = means
    quad = y.pow(2) * a - 2 * y * b + c + e + _LOG_2PI
    return -0.5 * quad.sum(dim=-1)


def club_upper_bound(
    mu: Tensor,
    logvar: Tensor,
    y: Tensor,
    valid: Tensor | None = None,
    negatives: Literal["same_time", "all_frames"] = "same_time",
    frame_reduction: Literal["sum", "mean"] = "sum",
) -> Tensor:
    """L_MI of eq. 8: the CLUB estimate (eq. 1) between y-bar_{i,t} and z-bar_{i,t}, per frame.

    ``1/B sum_i sum_t [log q(y_{i,t} | z_{i,t}) - 1/B sum_j log q(y_{i,t} | z_{j,t})]`` with the
    negative term from :func:`club_negative_term`. ``frame_reduction="sum"`` sums over frames and
    averages over utterances as printed; ``"mean"`` averages over all valid frames.

    Args:
        mu, logvar: (batch, frame, dim_y) ``q_phi(z-bar)``.
        y: (batch, frame, dim_y) y-bar.
        valid: (batch, frame) bool valid frames (all when None).
    """
    if valid is None:
        valid = torch.ones(mu.shape[:2], dtype=torch.bool, device=mu.device)
    positive = gaussian_log_likelihood(mu, logvar, y)
    negative = club_negative_term(mu, logvar, y, valid, negatives)
    per_frame = (positive - negative) * valid
    if frame_reduction == "sum":
        return per_frame.sum() / max(mu.shape[0], 1)
    return per_frame.sum() / valid.sum().clamp(min=1)
