"""The two Learn2Diss training objectives, as :class:`~learn2diss.training.loop.Objective` s of the training loop.

- :class:`SimCLRObjective` (stage b): f, then h alone on the two 1-s segments of each utterance,
  InfoNCE (eq. 5).
- :class:`JointObjective` (stage d): f, masked g with L_CE^g + L_PC^g (eq. 3-4), h on the segment
  pairs with InfoNCE + L_CE^h (eq. 5-7), and the paired representations of the MI term: z-bar of
  view 1 (the segment X'_{i,1}) with y-bar of the same frames of the masked-input g pass (eq. 8-9).
  q_phi is its auxiliary network: the loop takes ``club.inner_steps`` steps of its NLL (eq. 2,
  :meth:`JointObjective.q_nll`) on each micro-batch's pairs, then :meth:`JointObjective.loss` adds
  the CLUB estimate to L_total (eq. 10).

The forward passes (:class:`SimCLRForward`, :class:`JointForward`: what DDP wraps) take a
:class:`~learn2diss.data.batching.Batch` and a ``torch.Generator`` on the batch's device (span masks,
pseudo-con subsampling) and return a named tuple of tensors (:class:`SimCLROutput`, :class:`JointOutput`;
a named tuple so that DDP finds the tensors in it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from learn2diss.club import GaussianCLUBNetwork, club_nll, club_upper_bound, standardize_features
from learn2diss.data.batching import IGNORE, Batch
from learn2diss.pretrain.config import InfoNCEConfig, JointConfig
from learn2diss.pretrain.losses import (
    frame_cross_entropy,
    info_nce_loss,
    pseudo_con_loss,
    utterance_cross_entropy,
)
from learn2diss.training.compile import compile_part
from learn2diss.training.loop import Auxiliary, Objective, StepLoss
from learn2diss.upstream.model import (
    Features,
    FrameOutput,
    Learn2Diss,
    UtteranceOutput,
    aggregate_frame_layers,
)

__all__ = ["SimCLRObjective", "SimCLRForward", "SimCLROutput", "JointObjective", "JointForward", "JointOutput",
           "gather_segments", "mi_frame_layers", "mi_utterance_side", "MI_SKIPPED"]


class SimCLROutput(NamedTuple):
    """Stage b: the InfoNCE loss of h (eq. 5), a scalar."""

    infonce: Tensor


class JointOutput(NamedTuple):
    """Stage d: the terms of eq. 10 without the CLUB estimate, and the MI pairs it is computed from.

    Attributes:
        frame_ce, pseudo_con: L_CE^g and L_PC^g (eq. 3-4), scalars.
        infonce, utt_ce: InfoNCE and L_CE^h (eq. 5-7), scalars (0 without two-segment utterances).
        ybar: (n, S, d) y-bar of view 1 of the n utterances with two segments (eq. 9), float32, as q_phi and the
            estimate see it (standardised per dimension with ``joint.club.standardize: batch``).
        zbar: (n, S, d^L) z-bar of the same frames (``joint.club.z_source``), likewise.
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


def compiled_utterance_encoder(model: Learn2Diss, mode: str) -> Callable[[Tensor, Tensor], UtteranceOutput]:
    """h (ECAPA-TDNN) on the views ``(2n, S, d)``, compiled with ``mode`` (``none``: eager); the number of views
    changes from batch to batch (marked dynamic), the segment length S does not."""
    return compile_part(model.h.forward, mode, dynamic=[(0,), (0,)])


class SimCLRForward(nn.Module):
    """Stage b's forward: InfoNCE of h on the segment pairs (only utterances with two segments are used)."""

    def __init__(self, model: Learn2Diss, infonce: InfoNCEConfig, segment_frames: int) -> None:
        super().__init__()
        self.model = model
        self.infonce = infonce
        self.segment_frames = segment_frames
        self.encode_utterance = compiled_utterance_encoder(model, "none")

    def forward(self, batch: Batch, generator: torch.Generator) -> SimCLROutput:
        del generator  # no randomness beyond the batch's segment positions
        features = self.model.extract(batch.waveforms, batch.lengths)
        keep = batch.segment_valid
        views = gather_segments(features.x, batch.segment_starts[keep], self.segment_frames, keep.nonzero()[:, 0])
        n = views.shape[1]
        lengths = torch.full((2 * n,), self.segment_frames, dtype=torch.long, device=views.device)
        out = self.encode_utterance(views.flatten(0, 1), lengths)  # view 1 of all, then view 2
        z1, z2 = out.embedding[:n], out.embedding[n:]
        return SimCLROutput(info_nce_loss(z1, z2, self.infonce.temperature, self.infonce.denominator))


class SimCLRObjective(Objective):
    """Stage b: InfoNCE (eq. 5) is the loss."""

    def __init__(self, model: Learn2Diss, infonce: InfoNCEConfig, segment_frames: int) -> None:
        super().__init__(SimCLRForward(model, infonce, segment_frames))

    def loss(self, outputs: SimCLROutput, step: int) -> StepLoss:
        return StepLoss(outputs.infonce, {"infonce": outputs.infonce})

    def compile(self, mode: str) -> None:
        """h, the one trained part of this stage."""
        module = self.module
        assert isinstance(module, SimCLRForward)
        module.encode_utterance = compiled_utterance_encoder(module.model, mode)


class JointForward(nn.Module):
    """Stage d's forward: every term of eq. 10 except the CLUB estimate, plus the pairs (y-bar, z-bar) it needs."""

    def __init__(self, model: Learn2Diss, config: JointConfig, segment_frames: int) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.segment_frames = segment_frames
        self.compile_parts("none")

    def compile_parts(self, mode: str) -> None:
        """h and the frame-loss block (:meth:`frame_losses`), compiled with ``mode`` (``none``: eager)."""
        self.encode_utterance = compiled_utterance_encoder(self.model, mode)
        # the selected frames and the pseudo-con subset change in number from batch to batch
        self.frame_loss_block = compile_part(self.frame_losses, mode, dynamic=[(0,), (0,), (0,), (0,)])

    def frame_losses(self, logits: Tensor, targets: Tensor, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """L_CE^g and L_PC^g of eq. 3 on the selected frames (``logits``, ``targets``) and on the pseudo-con subset
        of them (``features`` = y^M, ``labels``)."""
        cfg = self.config.pseudo_con
        return (frame_cross_entropy(logits, targets),
                pseudo_con_loss(features, labels, cfg.temperature, cfg.denominator, cfg.normalize))

    def forward(self, batch: Batch, generator: torch.Generator) -> JointOutput:
        cfg = self.config
        model = self.model
        features = model.extract(batch.waveforms, batch.lengths)
        mask = model.sample_mask(features, generator)
        frames = model.encode_frames(features, mask)
        assert batch.frame_targets is not None and batch.utt_targets is not None  # the joint stage labels both
        targets = batch.frame_targets[:, : mask.shape[1]]
        if targets.shape != mask.shape:
            raise ValueError(f"frame targets {tuple(targets.shape)} do not cover the {tuple(mask.shape)} frames")
        selected = targets != IGNORE
        if cfg.loss_frames == "masked":
            selected = selected & mask
        frame_ce, pseudo_con = self._frame_terms(frames, targets, selected, generator)

        keep = batch.segment_valid
        n = int(keep.sum())
        if n == 0:  # no utterance long enough for two segments: no utterance-level term in this batch
            zero = frames.logits.sum() * 0.0
            ybar = features.x.new_zeros(0, self.segment_frames, features.x.shape[-1], dtype=torch.float32)
            zbar = features.x.new_zeros(0, self.segment_frames, model.config.utterance.embed_dim, dtype=torch.float32)
            return JointOutput(frame_ce, pseudo_con, zero, zero, ybar, zbar)
        starts = batch.segment_starts[keep]
        rows = keep.nonzero()[:, 0]
        # (2, n, S, d); h never trains f (only a parent's own run trains its front end: joint.feature_grad_mult)
        x_views = gather_segments(features.x.detach(), starts, self.segment_frames, rows)
        lengths = torch.full((2 * n,), self.segment_frames, dtype=torch.long, device=x_views.device)
        utt = self.encode_utterance(x_views.flatten(0, 1), lengths)
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
        mode = cfg.club.standardize
        return JointOutput(frame_ce, pseudo_con, infonce, utt_ce, standardize_features(ybar.float(), mode),
                           standardize_features(zbar.float(), mode))

    def _frame_terms(self, frames: FrameOutput, targets: Tensor, selected: Tensor,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The frame losses (eq. 3) on the selected frames; pseudo-con on a random subset of at most
        ``pseudo_con.max_frames`` of them. Both are 0 when no frame is selected."""
        logits, labels = frames.logits[selected], targets[selected]
        if logits.shape[0] == 0:
            zero = frames.logits.sum() * 0.0
            return zero, frames.layers[-1].sum() * 0.0
        feats, feat_labels = frames.layers[-1][selected], labels
        max_frames = self.config.pseudo_con.max_frames
        if max_frames and feats.shape[0] > max_frames:
            pick = torch.randperm(feats.shape[0], generator=generator, device=feats.device)[:max_frames]
            feats, feat_labels = feats[pick], feat_labels[pick]
        return self.frame_loss_block(logits, labels, feats, feat_labels)


def _q_nll(q: nn.Module, zbar: Tensor, ybar: Tensor) -> Tensor:
    """Eq. 2 on (detached) pairs: ``q`` is q_phi or its DDP wrapper."""
    mu, logvar = q(zbar)
    return club_nll(mu, logvar, ybar, torch.ones(ybar.shape[:2], dtype=torch.bool, device=ybar.device))


MI_SKIPPED = "count/mi_skipped_batches"  # summed (not averaged) over a logging interval by the trainer's logger


class JointObjective(Objective):
    """Stage d: L_total of eq. 10, with q_phi as the auxiliary network trained by its NLL (eq. 2).

    The CLUB estimate uses q_phi's current weights without gradient into them, so L_MI trains only the
    encoders. A micro-batch with fewer than two MI pairs (utterances with two segments) has no CLUB term: its
    estimate would be 0 by construction (the negatives of eq. 8 are the positives), so q_phi takes no step
    (with DDP: unless the other ranks have pairs), ``mi_club`` and ``q_nll`` are not reported for it (the
    logged means cover the batches with pairs) and ``count/mi_skipped_batches`` counts it.
    """

    def __init__(self, model: Learn2Diss, config: JointConfig, segment_frames: int, q: GaussianCLUBNetwork,
                 q_optimizer: torch.optim.Optimizer) -> None:
        club = config.club
        super().__init__(JointForward(model, config, segment_frames), [Auxiliary(
            "q_phi", q, q_optimizer, club.optimizer, club.inner_steps, loss=self.q_nll, items=self.mi_pairs,
            min_items=2, log_name="q_nll")])
        self.config = config
        self.q = q
        self.compile("none")

    def compile(self, mode: str) -> None:
        """h and the frame-loss block of the forward pass, and the q_phi block: its NLL (eq. 2, forward and
        backward) and the CLUB estimate (eq. 8). The number of MI pairs changes from batch to batch (dynamic)."""
        module = self.module
        assert isinstance(module, JointForward)
        module.compile_parts(mode)
        self.nll_block = compile_part(_q_nll, mode, dynamic=[(), (0,), (0,)])
        self.club_block = compile_part(self._club_estimate, mode, dynamic=[(0,), (0,)])

    @staticmethod
    def mi_pairs(outputs: JointOutput) -> int:
        """The (y-bar, z-bar) pairs of a micro-batch: its utterances with two segments."""
        return outputs.ybar.shape[0]

    def q_nll(self, q: nn.Module, outputs: JointOutput) -> Tensor:
        """Eq. 2: q_phi's negative log-likelihood of the detached pairs (``q``: q_phi or its DDP wrapper)."""
        return self.nll_block(q, outputs.zbar.detach(), outputs.ybar.detach())

    def _club_estimate(self, zbar: Tensor, ybar: Tensor) -> Tensor:
        """Eq. 8 with q_phi's current weights, without gradient into them (L_MI trains only the encoders)."""
        club = self.config.club
        frozen = {name: p.detach() for name, p in self.q.named_parameters()}
        mu, logvar = torch.func.functional_call(self.q, frozen, (zbar,))
        valid = torch.ones(ybar.shape[:2], dtype=torch.bool, device=ybar.device)
        return club_upper_bound(mu, logvar, ybar, valid, club.negatives, club.frame_reduction)

    def loss(self, outputs: JointOutput, step: int) -> StepLoss:
        """L_total (eq. 10): L_frame + L_utt (eq. 4, 7) + lambda L_MI (eq. 8) with q_phi's current weights."""
        del step
        joint, club = self.config, self.config.club
        terms = {"frame_ce": outputs.frame_ce.float(), "pseudo_con": outputs.pseudo_con.float(),
                 "infonce": outputs.infonce.float(), "utt_ce": outputs.utt_ce.float()}
        total = (terms["frame_ce"] + joint.pseudo_con.weight * terms["pseudo_con"]  # eq. 4
                 + terms["infonce"] + terms["utt_ce"])  # eq. 7
        ybar, zbar = outputs.ybar, outputs.zbar
        n = ybar.shape[0]
        skipped = torch.tensor(float(n < 2), device=ybar.device)
        if n < 2:
            return StepLoss(total, {**terms, MI_SKIPPED: skipped})
        mi = self.club_block(zbar, ybar)  # eq. 8
        total = total + club.weight * mi  # eq. 10
        return StepLoss(total, {**terms, "mi_club": mi.detach(), MI_SKIPPED: skipped})
