"""CTC fine-tuning of the frame encoder g on letters (paper §4.3, Tables 4 and 7), as an objective of the training
loop (:func:`learn2diss.training.loop.train`).

The frozen feature extractor f stays frozen; g's transformer layers (and its mask embedding and final
layer norm) and a new linear head (768 -> 29 letters) are trained with CTC. X' is span-masked during
training (wav2vec 2.0 fine-tuning), only the head trains for the first ``freeze_updates`` updates, and
the learning rate follows fairseq's tri-stage schedule (``optimizer.schedule: tri_stage``). Batches come
from :class:`~learn2diss.data.batching.SecondsBatchSampler` with the audio read in DataLoader workers; the
loop adds DDP (``torchrun``), skipped and counted NaN/inf updates, and checkpoints
``OUT/checkpoints/step_N.pt`` (model with head, optimizer, data position; ``model_config`` and
``ctc_config`` beside them) from which a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from learn2diss.errors import InputError
from learn2diss.eval.ctc.config import CtcConfig, FinetuneConfig
from learn2diss.eval.ctc.data import CtcBatch, CtcDataset, LabelledUtterance, collate_ctc
from learn2diss.eval.ctc.vocab import INDEX, TOKENS
from learn2diss.training.config import OptimizerConfig
from learn2diss.training.ddp import DistributedContext
from learn2diss.training.loop import Objective, StepLoss
from learn2diss.upstream.checkpoints import CheckpointError
from learn2diss.upstream.config import SAMPLE_RATE

if TYPE_CHECKING:
    from learn2diss.upstream.model import Learn2Diss

log = logging.getLogger(__name__)
STAGE = "ctc"  # the stage name in the trainer's checkpoints


class CtcModel(nn.Module):
    """A Learn2Diss model with a linear letter head on the last frame-encoder layer."""

    def __init__(self, model: Learn2Diss) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Linear(model.config.parent.embed_dim, len(TOKENS))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """g's layers, mask embedding and final norm (not W_g, which CTC does not use)."""
        head_of_g = {id(p) for p in self.model.g.head.parameters()}
        return [p for p in self.model.frame_parameters() if id(p) not in head_of_g]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """g's trained parameters and the head."""
        return self.encoder_parameters() + list(self.head.parameters())

    def forward(self, waveforms: Tensor, lengths: Tensor, mask: bool, config: FinetuneConfig | None = None,
                generator: torch.Generator | None = None, update_encoder: bool = True) -> tuple[Tensor, Tensor]:
        """Log-probabilities (batch, frame, 29) and valid frames (batch,)."""
        from learn2diss.upstream.model import span_mask

        features = self.model.extract(waveforms, lengths)
        spans = None
        if mask and config is not None and config.mask_prob > 0:
            spans = span_mask(features.lengths, features.x.shape[1], config.mask_prob, config.mask_length, generator)
        with torch.set_grad_enabled(update_encoder and torch.is_grad_enabled()):
            last = self.model.encode_frames(features, spans).layers[-1]
        return self.head(last).log_softmax(-1), features.lengths


class CtcOutput(NamedTuple):
    """The CTC loss of a batch (torch's ``mean`` reduction: per-utterance loss / target length, averaged) and the
    share of its frames whose best label is blank (100 %: the all-blank plateau of early CTC training)."""

    ctc: Tensor
    blank_rate: Tensor


def blank_rate(log_probs: Tensor, frames: Tensor) -> Tensor:
    """Percent of the valid frames of (batch, frame, tokens) ``log_probs`` whose best label is blank."""
    valid = torch.arange(log_probs.shape[1], device=frames.device)[None, :] < frames[:, None]
    blank = (log_probs.detach().argmax(-1) == INDEX["-"]) & valid
    return 100.0 * blank.sum() / valid.sum().clamp(min=1)


class CtcForward(nn.Module):
    """The forward pass that DDP wraps: f, span-masked g, the head, and the CTC loss of a :class:`CtcBatch`."""

    def __init__(self, ctc: CtcModel, config: FinetuneConfig) -> None:
        super().__init__()
        self.ctc = ctc
        self.config = config
        self.update_encoder = True

    def before_step(self, step: int) -> None:
        """g trains from update ``freeze_updates`` on (before it, only the head gets gradients)."""
        self.update_encoder = step >= self.config.freeze_updates

    def forward(self, batch: CtcBatch, generator: torch.Generator) -> CtcOutput:
        log_probs, frames = self.ctc(batch.waveforms, batch.lengths, mask=True, config=self.config, generator=generator,
                                     update_encoder=self.update_encoder)
        return CtcOutput(nn.functional.ctc_loss(log_probs.transpose(0, 1), batch.targets, frames, batch.target_lengths,
                                                blank=INDEX["-"], zero_infinity=True), blank_rate(log_probs, frames))


class CtcObjective(Objective):
    """CTC fine-tuning as an objective of the training loop: the CTC loss, and g frozen for the first updates."""

    def __init__(self, ctc: CtcModel, config: FinetuneConfig) -> None:
        super().__init__(CtcForward(ctc, config))

    def before_step(self, step: int) -> None:
        module = self.module
        assert isinstance(module, CtcForward)
        module.before_step(step)

    def loss(self, outputs: CtcOutput, step: int) -> StepLoss:
        return StepLoss(outputs.ctc, {"ctc": outputs.ctc, "ctc/blank_rate": outputs.blank_rate})


def _trainable_utterances(train: Sequence[LabelledUtterance], shortest: int,
                          max_seconds: float) -> tuple[list[LabelledUtterance], np.ndarray]:
    """The utterances between ``shortest`` samples and ``max_seconds`` (the others are skipped, with a warning)
    and their lengths in samples."""
    from learn2diss.data.audio import audio_info

    samples = np.array([audio_info(u.path)[0] for u in train], dtype=np.int64)
    keep = (samples >= shortest) & (samples <= max_seconds * SAMPLE_RATE)
    if not keep.any():
        raise InputError(f"no training utterance between {shortest} samples and {max_seconds} s "
                         "(finetune.max_seconds)")
    if not keep.all():
        log.warning("skipped %d training utterances outside [%d samples, %s s]", int((~keep).sum()), shortest,
                    max_seconds)
    return [u for u, k in zip(train, keep, strict=True) if k], samples[keep]


def _batches(utterances: list[LabelledUtterance], samples: np.ndarray, config: CtcConfig,
             ctx: DistributedContext) -> Callable[[tuple[int, int]], Iterator[CtcBatch]]:
    """``(epoch, batch index) -> iterator`` of this rank's batches (the pretraining sampler, audio read in workers)."""
    from learn2diss.data.batching import SecondsBatchSampler

    dataset = CtcDataset(utterances)

    def factory(position: tuple[int, int]) -> Iterator[CtcBatch]:
        sampler = SecondsBatchSampler(samples, np.arange(len(samples)), int(config.finetune.batch_seconds * SAMPLE_RATE),
                                      config.train.seed, ctx.rank, ctx.world_size, start=position)
        return iter(torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate_ctc, num_workers=config.finetune.num_workers,
            pin_memory=ctx.device.type == "cuda", generator=torch.Generator()))

    return factory


def finetune(
    model: Learn2Diss, train: Sequence[LabelledUtterance], config: CtcConfig, out_dir: str | os.PathLike[str],
    ctx: DistributedContext | None = None,
) -> CtcModel:
    """Fine-tune ``model`` with CTC on ``train`` (in place); resumes from the newest ``out_dir/checkpoints/step_N.pt``.

    ``ctx``: the process group (``torchrun``); default one process on the CPU. Every rank returns the
    fine-tuned :class:`CtcModel` (in eval mode); ``out_dir/metrics.jsonl`` holds the logged losses.
    """
    from learn2diss.runlock import hold

    ctx = ctx or DistributedContext(0, 0, 1, torch.device("cpu"))
    out_dir = Path(out_dir)
    with hold(out_dir) if ctx.is_main else contextlib.nullcontext():  # one writer per run folder
        return _finetune(model, train, config, out_dir, ctx)


def _finetune(model: Learn2Diss, train: Sequence[LabelledUtterance], config: CtcConfig, out_dir: Path,
              ctx: DistributedContext) -> CtcModel:
    from learn2diss.schema import to_dict
    from learn2diss.training.loop import TrainingStage, make_adam
    from learn2diss.training.loop import train as run_stage

    utterances, samples = _trainable_utterances(train, model.min_samples, config.finetune.max_seconds)
    torch.manual_seed(config.train.seed)  # the head's initialisation
    ctc = CtcModel(model).to(ctx.device)
    trainable = ctc.trainable_parameters()
    ctc.requires_grad_(False)  # f, h and W_g: no gradient at all (and none for DDP to reduce)
    for p in trainable:
        p.requires_grad_(True)
    objective = CtcObjective(ctc, config.finetune)
    encoder_cfg, head_cfg = config.finetune.optimizer, config.finetune.head_optimizer
    optimizers: dict[str, tuple[torch.optim.Optimizer, OptimizerConfig]] = {
        "encoder": (make_adam(ctc.encoder_parameters(), encoder_cfg), encoder_cfg),
        "head": (make_adam(list(ctc.head.parameters()), head_cfg), head_cfg)}
    stage = TrainingStage(
        name=STAGE, model=ctc, objective=objective, optimizers=optimizers,
        steps=config.finetune.max_updates, grad_accum=config.finetune.grad_accum,
    )
    run_stage(stage, _batches(utterances, samples, config, ctx), out_dir, out_dir / "tensorboard", config.train, ctx,
              resume=True, checkpoint_extra={"model_config": to_dict(model.config), "ctc_config": to_dict(config)})
    return ctc.eval()


def load_ctc_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> tuple[CtcModel, dict]:
    """The fine-tuned model and the trainer state (step, data position, optimizer, ``ctc_config``) of a CTC run.

    ``path``: the run folder (``runs/eval/ctc/<model>/<condition>``: its newest usable checkpoint) or one
    ``checkpoints/step_N.pt``. Read through :func:`~learn2diss.upstream.checkpoints.load_untrusted`; every
    error names the file.
    """
    from learn2diss.schema import ConfigError, from_dict
    from learn2diss.training.checkpoint import load_checkpoint, load_latest_checkpoint
    from learn2diss.upstream.config import ModelConfig
    from learn2diss.upstream.model import Learn2Diss

    path = Path(path)
    if path.is_dir():
        found = load_latest_checkpoint(path / "checkpoints")
        if found is None:
            raise CheckpointError(f"{path}: no CTC checkpoint (checkpoints/step_N.pt)")
        path, state = found
    else:
        state = load_checkpoint(path)
    if state["stage"] != STAGE or "model_config" not in state:
        raise CheckpointError(f"{path}: not a CTC fine-tuning checkpoint (stage {state['stage']!r})")
    try:
        ctc = CtcModel(Learn2Diss(from_dict(ModelConfig, state["model_config"], "model_config")))
        ctc.load_state_dict(state["model"])
    except (ConfigError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the CTC model does not load ({err})") from None
    return ctc.to(map_location).eval(), state


@torch.inference_mode()
def emissions(ctc: CtcModel, utterance: LabelledUtterance, device: str | torch.device = "cpu") -> np.ndarray:
    """(frames, 29) log-probabilities of one utterance, without masking."""
    from learn2diss.data.audio import read_audio

    wav = torch.from_numpy(read_audio(utterance.path))[None].to(device)
    log_probs, frames = ctc.eval()(wav, torch.tensor([wav.shape[1]], device=device), mask=False)
    return log_probs[0, : int(frames[0])].float().cpu().numpy()
