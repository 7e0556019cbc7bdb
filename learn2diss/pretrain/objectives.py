"""The forward passes of the two training stages, as modules that DDP can wrap.

- :class:`SimCLRObjective` (stage b): f, then h alone on the two 1-s segments of each utterance,
  InfoNCE (eq. 5).
- :class:`JointObjective` (stage d): f, masked g with L_CE^g + L_PC^g (eq. 3-4), h on the segment
  pairs with InfoNCE + L_CE^h (eq. 5-7), and the paired representations of the MI term: z-bar of
  view 1 (the segment X'_{i,1}) with y-bar of the same frames of the masked-input g pass (eq. 8-9).
  The CLUB terms need q_phi, which has its own optimiser: :func:`joint_loss` trains it on the
  returned ``ybar`` / ``zbar`` and adds the estimate to L_total.

Both take a :class:`~learn2diss.data.batching.Batch` and a ``torch.Generator`` on the batch's
device (span masks, pseudo-con subsampling) and return a named tuple of tensors (:class:`SimCLROutput`,
:class:`JointOutput`; a named tuple so that DDP finds the tensors in it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from learn2diss.data.batching import IGNORE, Batch
from learn2diss.pretrain.club import GaussianCLUBNetwork
from learn2diss.pretrain.config import InfoNCEConfig, JointConfig
from learn2diss.pretrain.losses import (
    club_nll,
    club_upper_bound,
    frame_cross_entropy,
    info_nce_loss,
    pseudo_con_loss,
    utterance_cross_entropy,
)
from learn2diss.pretrain.trainer import StepLoss
from learn2diss.upstream.model import (
    Features,
    FrameOutput,
    Learn2Diss,
    UtteranceOutput,
    aggregate_frame_layers,
)

__all__ = ["SimCLRObjective", "SimCLROutput", "JointObjective", "JointOutput", "joint_loss", "gather_segments",
           "mi_frame_layers", "mi_utterance_side", "MI_SKIPPED"]


class SimCLROutput(NamedTuple):
    """Stage b: the InfoNCE loss of h (eq. 5), a scalar."""

    infonce: Tensor


class JointOutput(NamedTuple):
    """Stage d: the terms of eq. 10 without the CLUB estimate, and the MI pairs it is computed from.

    Attributes:
        frame_ce, pseudo_con: L_CE^g and L_PC^g (eq. 3-4), scalars.
        infonce, utt_ce: InfoNCE and L_CE^h (eq. 5-7), scalars (0 without two-segment utterances).
        ybar: (n, S, d) y-bar of view 1 of the n utterances with two segments (eq. 9).
        zbar: (n, S, d^L) z-bar of the same frames (``joint.club.z_source``).
    """

    frame_ce: Tensor
    pseudo_con: Tensor
    infonce: Tensor
    utt_ce: Tensor
    ybar: Tensor
    zbar: Tensor


def gather_segments(x: Tensor, starts: Tensor, length: int, rows: Tensor | None = None) -> Tensor:
    """Frames ``starts[i, v] .. + length`` of row ``rows[i]`` (default i) of x (B, T, D); -> (V, n, length, D)."""
    if rows is None:
        rows = torch.arange(x.shape[0], device=x.device)
    frames = starts[:, :, None] + torch.arange(length, device=x.device)  # (n, V, length)
    return x[rows[:, None, None], frames].transpose(0, 1)


def mi_frame_layers(model: Learn2Diss, features: Features, frames: FrameOutput,
                    frame_pass: Literal["masked", "unmasked"]) -> list[Tensor]:
    """g's layers y^1..y^M that y-bar of the MI term is built from (``joint.club.frame_pass``).

    ``"masked"``: those of the masked training pass (the paper). ``"unmasked"``: an extra pass of g
    without a mask, with gradient, i.e. the input that inference and every evaluation use, so that
    the penalty acts on the features that are read out rather than on a masked input.
    """
    if frame_pass == "masked":
        return frames.layers
    return model.encode_frames(features, None).layers


def mi_utterance_side(model: Learn2Diss, utt: UtteranceOutput, n: int, z_source: Literal["aggregate", "last"]) -> Tensor:
    """z-bar (n, S, d^L) of view 1 of the first ``n`` segments (``joint.club.z_source``).

    ``"aggregate"``: eq. 9, z^L + sum_l A^l z^l_t, which varies over frames through ECAPA's per-frame
    layers. ``"last"``: z^L alone, repeated over the S frames, so that q_phi can only read what the
    pooled utterance embedding holds while y-bar stays eq. 9's aggregate.
    """
    if z_source == "aggregate":
        return model.aggregate_utterance_layers(utt)[:n]
    z = utt.embedding[:n]
    return z[:, None, :].expand(n, utt.layers[0].shape[1], z.shape[-1])


class SimCLRObjective(nn.Module):
    """Stage b: InfoNCE of h on the segment pairs (only utterances with two segments are used)."""

    def __init__(self, model: Learn2Diss, infonce: InfoNCEConfig, segment_frames: int) -> None:
        super().__init__()
        self.model = model
        self.infonce = infonce
        self.segment_frames = segment_frames

    def forward(self, batch: Batch, generator: torch.Generator) -> SimCLROutput:
        del generator  # no randomness beyond the batch's segment positions
        features = self.model.extract(batch.waveforms, batch.lengths)
        keep = batch.segment_valid
        views = gather_segments(features.x, batch.segment_starts[keep], self.segment_frames, keep.nonzero()[:, 0])
        n = views.shape[1]
        lengths = torch.full((2 * n,), self.segment_frames, dtype=torch.long, device=views.device)
        out = self.model.encode_utterance(views.flatten(0, 1), lengths)  # view 1 of all, then view 2
        z1, z2 = out.embedding[:n], out.embedding[n:]
        return SimCLROutput(info_nce_loss(z1, z2, self.infonce.temperature, self.infonce.denominator))


class JointObjective(nn.Module):
    """Stage d: every term of eq. 10 except the CLUB estimate, plus the pairs (y-bar, z-bar) it needs."""

    def __init__(self, model: Learn2Diss, config: JointConfig, segment_frames: int) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.segment_frames = segment_frames

    def forward(self, batch: Batch, generator: torch.Generator) -> JointOutput:
        cfg = self.config
        model = self.model
        features = model.extract(batch.waveforms, batch.lengths)
        mask = model.sample_mask(features, generator)
        frames = model.encode_frames(features, mask)
        targets = batch.frame_targets[:, : mask.shape[1]]
        if targets.shape != mask.shape:
            raise ValueError(f"frame targets {tuple(targets.shape)} do not cover the {tuple(mask.shape)} frames")
        selected = targets != IGNORE
        if cfg.loss_frames == "masked":
            selected = selected & mask
        frame_ce = frame_cross_entropy(frames.logits, targets, selected)
        pseudo_con = self._pseudo_con(frames.layers[-1], targets, selected, generator)

        keep = batch.segment_valid
        n = int(keep.sum())
        if n == 0:  # no utterance long enough for two segments: no utterance-level term in this batch
            zero = frames.logits.sum() * 0.0
            ybar = features.x.new_zeros(0, self.segment_frames, features.x.shape[-1])
            zbar = features.x.new_zeros(0, self.segment_frames, model.config.utterance.embed_dim)
            return JointOutput(frame_ce, pseudo_con, zero, zero, ybar, zbar)
        starts = batch.segment_starts[keep]
        rows = keep.nonzero()[:, 0]
        # (2, n, S, d); h never trains f (only a parent's own run trains its front end: joint.feature_grad_mult)
        x_views = gather_segments(features.x.detach(), starts, self.segment_frames, rows)
        lengths = torch.full((2 * n,), self.segment_frames, dtype=torch.long, device=x_views.device)
        utt = model.encode_utterance(x_views.flatten(0, 1), lengths)
        z1, z2 = utt.embedding[:n], utt.embedding[n:]
        infonce = info_nce_loss(z1, z2, cfg.infonce.temperature, cfg.infonce.denominator)
        utt_ce = utterance_cross_entropy(utt.logits[:n], utt.logits[n:], batch.utt_targets[keep])

        # MI pairs: the frames of view 1 (eq. 8 uses one view), y-bar from the same frames of g's pass
        view1 = starts[:, :1]
        layers = mi_frame_layers(model, features, frames, cfg.club.frame_pass)
        if cfg.club.representation == "aggregate":  # eq. 9, summed over the segment frames only
            ybar = aggregate_frame_layers([gather_segments(layer, view1, self.segment_frames, rows)[0] for layer in layers])
            zbar = mi_utterance_side(model, utt, n, cfg.club.z_source)  # (n, S, d^L)
        else:  # Table 6 ablation: final layers only
            ybar = gather_segments(layers[-1], view1, self.segment_frames, rows)[0]
            zbar = z1[:, None, :].expand(n, self.segment_frames, z1.shape[-1])
        return JointOutput(frame_ce, pseudo_con, infonce, utt_ce, ybar, zbar)

    def _pseudo_con(self, y: Tensor, targets: Tensor, selected: Tensor, generator: torch.Generator) -> Tensor:
        cfg = self.config.pseudo_con
        feats, labels = y[selected], targets[selected]
        if cfg.max_frames and feats.shape[0] > cfg.max_frames:
            pick = torch.randperm(feats.shape[0], generator=generator, device=feats.device)[: cfg.max_frames]
            feats, labels = feats[pick], labels[pick]
        return pseudo_con_loss(feats, labels, cfg.temperature, cfg.denominator, cfg.normalize)


MI_SKIPPED = "count/mi_skipped_batches"  # summed (not averaged) over a logging interval by the trainer's logger


def _pairs_anywhere(q_train: torch.nn.Module, n: int, device: torch.device) -> int:
    """MI pairs of this micro-batch on all ranks (q_phi's DDP steps must run on every rank or on none)."""
    if not isinstance(q_train, torch.nn.parallel.DistributedDataParallel):
        return n
    import torch.distributed as dist

    count = torch.tensor([n], device=device)
    dist.all_reduce(count)
    return int(count.item())


def joint_loss(
    joint: JointConfig, q: GaussianCLUBNetwork, q_train: torch.nn.Module, q_opt: torch.optim.Optimizer
) -> Callable[[JointOutput, int], StepLoss]:
    """The loss of the joint stage: ``club.inner_steps`` NLL steps of q_phi (eq. 2), then L_total (eq. 10).

    ``q_train`` is ``q`` or its DDP wrapper (used for the NLL steps); the CLUB estimate uses q_phi's
    current weights without gradient into them, so L_MI trains only the encoders. y-bar and z-bar
    pass through :meth:`GaussianCLUBNetwork.standardize` first (``club.standardize``).

    A micro-batch with fewer than two MI pairs (utterances with two segments) has no CLUB term: its
    estimate would be 0 by construction (the negatives of eq. 8 are the positives), so q_phi takes
    no step (with DDP: unless another rank has pairs), ``mi_club`` and ``q_nll`` are not reported
    for it (the logged means cover the batches with pairs) and ``count/mi_skipped_batches`` counts it.
    """
    club = joint.club

    def loss(out: JointOutput, step: int) -> StepLoss:
        del step
        terms = {"frame_ce": out.frame_ce.float(), "pseudo_con": out.pseudo_con.float(),
                 "infonce": out.infonce.float(), "utt_ce": out.utt_ce.float()}
        total = (terms["frame_ce"] + joint.pseudo_con.weight * terms["pseudo_con"]  # eq. 4
                 + terms["infonce"] + terms["utt_ce"])  # eq. 7
        ybar, zbar = out.ybar.float(), out.zbar.float()
        n = ybar.shape[0]
        anywhere = _pairs_anywhere(q_train, n, ybar.device) if club.inner_steps else n
        skipped = torch.tensor(float(n < 2), device=ybar.device)
        if anywhere < 2:
            return StepLoss(total, {**terms, MI_SKIPPED: skipped})
        ybar, zbar = q.standardize(ybar, zbar)
        valid = torch.ones(ybar.shape[:2], dtype=torch.bool, device=ybar.device)
        y_d, z_d = ybar.detach(), zbar.detach()
        nll = torch.zeros((), device=ybar.device)
        for _ in range(club.inner_steps if anywhere >= 2 else 0):  # eq. 2 on detached features, own optimiser
            mu, logvar = q_train(z_d)
            nll = club_nll(mu, logvar, y_d, valid)
            q_opt.zero_grad(set_to_none=True)
            nll.backward()
            params = list(q.parameters())
            norm = torch.nn.utils.clip_grad_norm_(params, club.optimizer.clip_grad_norm or float("inf"))
            if bool(torch.isfinite(norm)):  # identical on every rank after DDP's gradient all-reduce
                q_opt.step()
        if n < 2:  # this rank only took part in the other ranks' q_phi steps
            return StepLoss(total, {**terms, MI_SKIPPED: skipped})
        frozen = {name: p.detach() for name, p in q.named_parameters()}
        mu, logvar = torch.func.functional_call(q, frozen, (zbar,))
        mi = club_upper_bound(mu, logvar, ybar, valid, club.negatives, club.frame_reduction)  # eq. 8
        total = total + club.weight * mi  # eq. 10
        return StepLoss(total, {**terms, "mi_club": mi.detach(), "q_nll": nll.detach(), MI_SKIPPED: skipped})

    return loss
