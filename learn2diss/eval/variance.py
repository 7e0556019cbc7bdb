"""Per-dimension variance of the frame features, on the inference pass and inside a masked pass.

The diagnostic of the CLUB term's failure mode: a penalty that lowers the CLUB estimate by shrinking the scale of g's
output, rather than by removing information, shows up as a collapse of this variance. It reads
``frame:last`` (y^M, the output of g's last layer, what the ABX and probes read) three ways:

* ``frame_var_unmasked``: the unmasked inference pass (what every evaluation uses);
* ``frame_var_masked_pos`` / ``frame_var_unmasked_pos``: one masked pass (the training input, span
  mask drawn with ``seed``), at the masked and at the unmasked positions.

Each is the variance of every dimension over all valid frames of all batches (population variance,
accumulated in float64), averaged over dimensions. With a q_phi it also gives
``q_logvar_at_floor``, the share of q_phi's log-variance entries within ``floor_tolerance`` of the
tanh floor (-1), and ``q_logvar_mean``, given the z-bar of whole utterances (eq. 9's aggregate, or z^L).

Example::

    from learn2diss.eval.variance import feature_variance
    stats = feature_variance(model, [(waveforms, lengths)])   # waveforms (B, samples), lengths (B,)
    stats["frame_var_unmasked"], stats["frame_var_masked_pos"], stats["frame_var_unmasked_pos"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor

from learn2diss.club import standardize_features
from learn2diss.upstream.model import Learn2Diss
from learn2diss.upstream.parent import valid_frames

__all__ = ["feature_variance", "RunningMoments"]


class RunningMoments:
    """Per-dimension sums of x and x^2 over rows, in float64; ``variance()`` is their mean over dimensions."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.squares: Tensor | None = None
        self.count = 0

    def add(self, rows: Tensor) -> None:
        """``rows``: (n, dim) frames."""
        rows = rows.detach().double().cpu()
        if self.total is None:
            self.total, self.squares = rows.sum(0), rows.pow(2).sum(0)
        else:
            assert self.squares is not None  # set with the total
            self.total += rows.sum(0)
            self.squares += rows.pow(2).sum(0)
        self.count += rows.shape[0]

    def variance(self) -> float:
        """Mean over dimensions of the population variance (NaN when no row was added)."""
        if self.total is None or self.squares is None or self.count == 0:
            return float("nan")
        mean = self.total / self.count
        return float((self.squares / self.count - mean.pow(2)).clamp(min=0).mean())


@torch.no_grad()
def feature_variance(
    model: Learn2Diss,
    batches: Iterable[tuple[Tensor, Tensor]],
    q: torch.nn.Module | None = None,
    seed: int = 0,
    floor_tolerance: float = 0.01,
    z_source: Literal["aggregate", "last"] = "aggregate",
) -> dict[str, float]:
    """The per-position feature-variance diagnostic of ``model``'s frame encoder g (module docstring).

    Args:
        model: a Learn2Diss model (run in eval mode; its mode is restored after).
        batches: ``(waveforms (B, samples) at 16 kHz, lengths (B,) valid samples)`` on the model's device.
        q: optional q_phi (:class:`learn2diss.club.GaussianCLUBNetwork`) of the same run.
        seed: seed of the span masks of the masked pass.
        floor_tolerance: a log-variance below ``-1 + floor_tolerance`` counts as at the tanh floor.
        z_source: q_phi's input, as the run's ``joint.club.z_source``: eq. 9's aggregate z-bar, or z^L.

    Returns:
        ``frame_var_unmasked``, ``frame_var_masked_pos``, ``frame_var_unmasked_pos``, ``frames``,
        ``masked_fraction``; with ``q`` also ``q_logvar_at_floor`` and ``q_logvar_mean``.
    """
    was_training = model.training
    model.eval()
    q_was_training = q.training if q is not None else False
    if q is not None:
        q.eval()
    moments = {name: RunningMoments() for name in ("unmasked", "masked_pos", "unmasked_pos")}
    floor_hits, logvar_sum, logvar_count = 0, 0.0, 0
    generator: torch.Generator | None = None
    try:
        for waveforms, lengths in batches:
            features = model.extract(waveforms, lengths)
            if generator is None:
                generator = torch.Generator(device=features.x.device).manual_seed(seed)
            valid = valid_frames(features.lengths, features.x.shape[1])
            moments["unmasked"].add(model.encode_frames(features, None).layers[-1][valid])
            mask = model.sample_mask(features, generator)
            masked = model.encode_frames(features, mask).layers[-1]
            moments["masked_pos"].add(masked[valid & mask])
            moments["unmasked_pos"].add(masked[valid & ~mask])
            if q is not None:
                utt = model.encode_utterance(features.x, features.lengths)
                if z_source == "aggregate":
                    zbar = model.aggregate_utterance_layers(utt)
                else:
                    zbar = utt.embedding[:, None, :].expand(-1, valid.shape[1], -1)
                zbar = standardize_features(zbar, getattr(q, "standardize_mode", "none"), valid)
                _, logvar = q(zbar)
                logvar = logvar[valid].float()
                floor_hits += int((logvar < -1.0 + floor_tolerance).sum())
                logvar_sum += float(logvar.sum())
                logvar_count += logvar.numel()
    finally:
        model.train(was_training)
        if q is not None:
            q.train(q_was_training)
    n_masked, n_unmasked = moments["masked_pos"].count, moments["unmasked_pos"].count
    out = {
        "frame_var_unmasked": moments["unmasked"].variance(),
        "frame_var_masked_pos": moments["masked_pos"].variance(),
        "frame_var_unmasked_pos": moments["unmasked_pos"].variance(),
        "frames": float(moments["unmasked"].count),
        "masked_fraction": n_masked / max(n_masked + n_unmasked, 1),
    }
    if q is not None:
        out["q_logvar_at_floor"] = floor_hits / max(logvar_count, 1)
        out["q_logvar_mean"] = logvar_sum / max(logvar_count, 1)
    return out
