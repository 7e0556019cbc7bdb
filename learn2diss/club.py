"""The CLUB mutual-information upper bound (Cheng et al. 2020) as Learn2Diss uses it (paper §3.2.4, §3.3, eq. 1, 2, 8).

q_phi(y-bar | z-bar) is a diagonal Gaussian whose mean and log-variance are predicted from z-bar by two
feed-forward networks of P = 2 layers each (256 -> 2048 -> 768 in the paper,
:class:`GaussianCLUBNetwork`). It exists only during pretraining and is trained by its own negative
log-likelihood (eq. 2, :func:`club_nll`) with its own optimiser; it is not part of the exported model.
:func:`club_upper_bound` is the estimate of eq. 8 with the negative term in closed form (no B x B x T x D
tensor). Pretraining (:mod:`learn2diss.pretrain.objectives`) and the variance diagnostic
(:mod:`learn2diss.eval.variance`) use this module.

``standardize`` (not in the paper; docs/pretraining.md "Where the CLUB estimate can cheat") makes
the estimate blind to the scale of the features: y-bar and z-bar are standardised per dimension over the
batch, without a learned scale, before q_phi and before the estimate (:func:`standardize_features`).

Example::

    >>> import torch
    >>> q = GaussianCLUBNetwork(x_dim=256, y_dim=768, hidden_dim=2048)
    >>> mu, logvar = q(torch.randn(2, 50, 256))
    >>> tuple(mu.shape), tuple(logvar.shape)
    ((2, 50, 768), (2, 50, 768))
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["GaussianCLUBNetwork", "standardize_features", "gaussian_log_likelihood", "club_nll", "club_negative_term",
           "club_upper_bound"]

_EPS = 1e-6
_LOG_2PI = math.log(2 * math.pi)


def standardize_features(x: Tensor, mode: Literal["none", "batch"], valid: Tensor | None = None) -> Tensor:
    """Per-dimension standardisation of ``x`` (..., dim) with no learned scale, so rescaling x changes nothing.

    ``"batch"``: mean and variance of this batch's valid frames (gradient flows through them, as in
    batch norm); ``"none"``: x unchanged.

    Args:
        x: (..., dim) y-bar or z-bar.
        valid: (...) bool, the frames the statistics are taken over (all when None).
    """
    if mode == "none":
        return x
    flat = x.reshape(-1, x.shape[-1]).float()
    if valid is not None:
        flat = flat[valid.reshape(-1)]
    mean, var = flat.mean(0), flat.var(0, unbiased=False)
    return (x.float() - mean) / torch.sqrt(var + _EPS)


class GaussianCLUBNetwork(nn.Module):
    """Mean and log-variance MLPs ``x_dim -> hidden_dim -> y_dim`` (ReLU between the two layers).

    Args:
        x_dim: dimension of the conditioning variable z-bar (d^L = 256).
        y_dim: dimension of y-bar (d = 768).
        hidden_dim: hidden width (2048).
        logvar_activation: ``"tanh"`` bounds the log-variance to [-1, 1] as CLUB's reference
            estimator does (variance in [1/e, e]); ``"none"`` leaves it unbounded.
        standardize: how its inputs are standardised (:func:`standardize_features`; the run's
            ``joint.club.standardize``), recorded so that a diagnostic feeds it what training fed it.
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden_dim: int, logvar_activation: Literal["tanh", "none"] = "tanh",
        standardize: Literal["none", "batch"] = "none",
    ) -> None:
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim))
        logvar_layers: list[nn.Module] = [nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim)]
        if logvar_activation == "tanh":
            logvar_layers.append(nn.Tanh())
        self.logvar = nn.Sequential(*logvar_layers)
        self.standardize_mode = standardize

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: (..., x_dim) -> mean and log-variance, each (..., y_dim)."""
        return self.mean(x), self.logvar(x)


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
