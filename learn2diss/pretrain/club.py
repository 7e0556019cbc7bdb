"""q_phi(y-bar | z-bar), the variational network of the CLUB mutual-information estimate (paper §3.2.4, §3.3).

A diagonal Gaussian whose mean and log-variance are predicted from z-bar by two feed-forward
networks of P = 2 layers each (256 -> 2048 -> 768 in the paper). It exists only during pretraining
and is trained by its own negative log-likelihood (eq. 2, :func:`learn2diss.pretrain.losses.club_nll`)
with its own optimiser; it is not part of the exported model.

Example::

    >>> import torch
    >>> q = GaussianCLUBNetwork(x_dim=256, y_dim=768, hidden_dim=2048)
    >>> mu, logvar = q(torch.randn(2, 50, 256))
    >>> tuple(mu.shape), tuple(logvar.shape)
    ((2, 50, 768), (2, 50, 768))
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

__all__ = ["GaussianCLUBNetwork"]


class GaussianCLUBNetwork(nn.Module):
    """Mean and log-variance MLPs ``x_dim -> hidden_dim -> y_dim`` (ReLU between the two layers).

    Args:
        x_dim: dimension of the conditioning variable z-bar (d^L = 256).
        y_dim: dimension of y-bar (d = 768).
        hidden_dim: hidden width (2048).
        logvar_activation: ``"tanh"`` bounds the log-variance to [-1, 1] as CLUB's reference
            estimator does (variance in [1/e, e]); ``"none"`` leaves it unbounded.
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden_dim: int, logvar_activation: Literal["tanh", "none"] = "tanh"
    ) -> None:
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim))
        logvar_layers: list[nn.Module] = [nn.Linear(x_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, y_dim)]
        if logvar_activation == "tanh":
            logvar_layers.append(nn.Tanh())
        self.logvar = nn.Sequential(*logvar_layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: (..., x_dim) -> mean and log-variance, each (..., y_dim)."""
        return self.mean(x), self.logvar(x)
