"""q_phi(y-bar | z-bar), the variational network of the CLUB mutual-information estimate (paper §3.2.4, §3.3).

A diagonal Gaussian whose mean and log-variance are predicted from z-bar by two feed-forward
networks of P = 2 layers each (256 -> 2048 -> 768 in the paper). It exists only during pretraining
and is trained by its own negative log-likelihood (eq. 2, :func:`learn2diss.pretrain.losses.club_nll`)
with its own optimiser; it is not part of the exported model.

``standardize`` (not in the paper; docs/pretraining.md "Where the CLUB estimate can cheat") makes
the estimate blind to the scale of the features: y-bar and z-bar are standardised per dimension,
without a learned scale, before q_phi and before the estimate (:meth:`GaussianCLUBNetwork.standardize`).

Example::

    >>> import torch
    >>> q = GaussianCLUBNetwork(x_dim=256, y_dim=768, hidden_dim=2048)
    >>> mu, logvar = q(torch.randn(2, 50, 256))
    >>> tuple(mu.shape), tuple(logvar.shape)
    ((2, 50, 768), (2, 50, 768))
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["GaussianCLUBNetwork", "RunningMoments", "standardize_features"]

_EPS = 1e-6


class RunningMoments(nn.Module):
    """Running per-dimension mean and variance: an exponential average with factor ``max(momentum, 1/batches)``,
    so the first batch sets them and the average then follows drifting features (buffers: checkpointed)."""

    def __init__(self, dim: int, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, rows: Tensor) -> None:
        """``rows``: (n, dim) frames of one batch."""
        self.batches += 1
        factor = max(self.momentum, 1.0 / float(self.batches))
        self.mean.lerp_(rows.mean(0), factor)
        self.var.lerp_(rows.var(0, unbiased=False), factor)


def standardize_features(x: Tensor, mode: Literal["none", "batch", "running"], running: RunningMoments | None = None,
                         valid: Tensor | None = None) -> Tensor:
    """Per-dimension standardisation of ``x`` (..., dim) with no learned scale, so rescaling x changes nothing.

    ``"batch"``: mean and variance of this batch's valid frames (gradient flows through them, as in
    batch norm); ``"running"``: ``running``'s statistics (updated from this batch first, without
    gradient, while the module is in training mode); ``"none"``: x unchanged.

    Args:
        x: (..., dim) y-bar or z-bar.
        running: the running statistics (``"running"`` only).
        valid: (...) bool, the frames the statistics are taken over (all when None).
    """
    if mode == "none":
        return x
    flat = x.reshape(-1, x.shape[-1]).float()
    if valid is not None:
        flat = flat[valid.reshape(-1)]
    if mode == "batch":
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
    else:
        if running is None:
            raise ValueError("standardize='running' needs the running statistics")
        if running.training and flat.shape[0] > 1:
            running.update(flat.detach())
        mean, var = running.mean, running.var
    return (x.float() - mean) / torch.sqrt(var + _EPS)


class GaussianCLUBNetwork(nn.Module):
    """Mean and log-variance MLPs ``x_dim -> hidden_dim -> y_dim`` (ReLU between the two layers).

    Args:
        x_dim: dimension of the conditioning variable z-bar (d^L = 256).
        y_dim: dimension of y-bar (d = 768).
        hidden_dim: hidden width (2048).
        logvar_activation: ``"tanh"`` bounds the log-variance to [-1, 1] as CLUB's reference
            estimator does (variance in [1/e, e]); ``"none"`` leaves it unbounded.
        standardize: ``"none"``, ``"batch"`` or ``"running"``: see :func:`standardize_features`;
            with ``"running"`` the statistics are buffers of this module (checkpointed with q_phi).
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden_dim: int, logvar_activation: Literal["tanh", "none"] = "tanh",
        standardize: Literal["none", "batch", "running"] = "none",
    ) -> None:
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim))
        logvar_layers: list[nn.Module] = [nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim)]
        if logvar_activation == "tanh":
            logvar_layers.append(nn.Tanh())
        self.logvar = nn.Sequential(*logvar_layers)
        self.standardize_mode = standardize
        self.y_norm = RunningMoments(y_dim) if standardize == "running" else None
        self.z_norm = RunningMoments(x_dim) if standardize == "running" else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: (..., x_dim) -> mean and log-variance, each (..., y_dim)."""
        return self.mean(x), self.logvar(x)

    def standardize(self, ybar: Tensor, zbar: Tensor) -> tuple[Tensor, Tensor]:
        """y-bar and z-bar as q_phi and the CLUB estimate see them (unchanged unless ``standardize`` is set)."""
        return (standardize_features(ybar, self.standardize_mode, self.y_norm),
                standardize_features(zbar, self.standardize_mode, self.z_norm))
