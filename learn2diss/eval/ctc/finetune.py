"""CTC fine-tuning of the frame encoder g on letters (paper §4.3, Tables 4 and 7).

The frozen feature extractor f stays frozen; g's transformer layers (and its mask embedding and final
layer norm) and a new linear head (768 -> 29 letters) are trained with CTC. X' is span-masked during
training (wav2vec 2.0 fine-tuning), only the head trains for the first ``freeze_updates`` updates, and
the learning rate follows fairseq's tri-stage schedule. The run saves ``checkpoint/`` (model, head,
optimizer, position in the data) every ``save_every`` updates, written beside the old one and swapped in
so that a complete checkpoint exists at every instant, and resumes from it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from learn2diss.errors import InputError
from learn2diss.eval.ctc.config import FinetuneConfig
from learn2diss.eval.ctc.data import LabelledUtterance
from learn2diss.eval.ctc.vocab import INDEX, TOKENS, encode

log = logging.getLogger(__name__)
SAMPLE_RATE = 16_000


class CtcModel(nn.Module):
    """A Learn2Diss model with a linear letter head on the last frame-encoder layer."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = nn.Linear(model.config.parent.embed_dim, len(TOKENS))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """g's layers, mask embedding and final norm (not W_g, which CTC does not use) and the head."""
        head_of_g = {id(p) for p in self.model.frame_head.parameters()}
        return [p for p in self.model.frame_parameters() if id(p) not in head_of_g] + list(self.head.parameters())

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


def tri_stage_lr(step: int, config: FinetuneConfig) -> float:
    """fairseq's tri-stage schedule: linear warm-up from ``init_lr_scale``, hold, exponential decay to
    ``final_lr_scale``, then constant."""
    peak, init, final = config.lr, config.lr * config.init_lr_scale, config.lr * config.final_lr_scale
    if step < config.warmup_updates:
        return init + (peak - init) * step / config.warmup_updates
    step -= config.warmup_updates
    if step < config.hold_updates:
        return peak
    step -= config.hold_updates
    if step < config.decay_updates:
        return peak * math.exp(math.log(config.final_lr_scale) * step / config.decay_updates)
    return final


def make_batches(durations: Sequence[int], batch_samples: int) -> list[list[int]]:
    """Indices grouped by length so that ``batch size x longest`` stays within ``batch_samples``."""
    order = np.argsort(durations, kind="stable")
    batches, current = [], []
    for index in order:
        longest = durations[index]  # ascending order: the newest is the longest
        if current and (len(current) + 1) * longest > batch_samples:
            batches.append(current)
            current = []
        current.append(int(index))
    if current:
        batches.append(current)
    return batches


def load_batch(utterances: Sequence[LabelledUtterance], device: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Padded waveforms, sample lengths, concatenated targets and target lengths."""
    from learn2diss.data.audio import read_audio

    waves = [torch.from_numpy(read_audio(u.path)) for u in utterances]
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        padded[i, : len(w)] = w
    targets = [torch.tensor(encode(u.text)) for u in utterances]
    return (padded.to(device), lengths.to(device), torch.cat(targets).to(device),
            torch.tensor([len(t) for t in targets]).to(device))


def _batch_stream(batches: list[list[int]], seed: int, epoch: int, position: int) -> Iterator[tuple[int, int, list[int]]]:
    """Batches in a seeded random order per epoch, starting at ``(epoch, position)``; yields (epoch, next, batch)."""
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(len(batches))
        for i in range(position, len(order)):
            yield epoch, i + 1, batches[order[i]]
        epoch, position = epoch + 1, 0


def _save(ctc: CtcModel, optimizer: torch.optim.Optimizer, state: dict, directory: Path) -> None:
    """Write ``directory`` (model/, head.safetensors, trainer.pt) beside the old one and swap it in
    (:func:`learn2diss.io.atomic_dir`): a complete checkpoint exists at every instant."""
    from learn2diss.io import atomic_dir, save_safetensors, save_torch
    from learn2diss.upstream.checkpoints import save_model

    with atomic_dir(directory) as tmp:
        save_model(ctc.model, tmp / "model")
        save_safetensors(tmp / "head.safetensors",
                         {k: v.detach().cpu().contiguous() for k, v in ctc.head.state_dict().items()})
        save_torch(tmp / "trainer.pt", {**state, "optimizer": optimizer.state_dict()})


def load_ctc_checkpoint(directory: str | os.PathLike[str], map_location: str = "cpu") -> tuple[CtcModel, dict]:
    """The fine-tuned model and the trainer state (optimizer state, step, data position) of ``directory``.

    ``trainer.pt`` goes through :func:`~learn2diss.upstream.checkpoints.load_untrusted`; every error names the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from learn2diss.upstream.checkpoints import CheckpointError, load_model, load_untrusted

    directory = Path(directory)
    ctc = CtcModel(load_model(directory / "model", map_location))
    head = directory / "head.safetensors"
    try:
        ctc.head.load_state_dict(load_file(head, device=map_location))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{head}: not a readable head checkpoint ({err})") from None
    state = load_untrusted(directory / "trainer.pt")
    missing = [key for key in ("step", "epoch", "position", "optimizer") if key not in state]
    if missing:
        raise CheckpointError(f"{directory / 'trainer.pt'}: not a CTC trainer state (missing {', '.join(missing)})")
    return ctc, state


def finetune(
    model: nn.Module, train: Sequence[LabelledUtterance], config: FinetuneConfig, out_dir: str | os.PathLike[str],
    device: str = "cpu", progress: bool = True,
) -> tuple[CtcModel, list[float]]:
    """Fine-tune ``model`` with CTC on ``train``; resumes from ``out_dir/checkpoint`` when present.

    Returns the fine-tuned :class:`CtcModel` and the training loss of every update of this call.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from learn2diss.data.audio import audio_info
    from learn2diss.io import recover_dir

    out_dir = Path(out_dir)
    checkpoint = out_dir / "checkpoint"
    durations, kept = [], []
    shortest = model.min_samples
    for utt in train:
        samples = audio_info(utt.path)[0]
        if shortest <= samples <= config.max_seconds * SAMPLE_RATE:
            durations.append(samples)
            kept.append(utt)
    if not kept:
        raise InputError(f"no training utterance between {shortest} samples and {config.max_seconds} s")
    if len(kept) < len(train):
        log.warning("skipped %d training utterances outside [%d samples, %s s]", len(train) - len(kept), shortest,
                    config.max_seconds)
    batches = make_batches(durations, int(config.batch_seconds * SAMPLE_RATE))

    torch.manual_seed(config.seed)
    ctc = CtcModel(model)
    state = {"step": 0, "epoch": 0, "position": 0}
    optimizer_state = None
    recover_dir(checkpoint)  # a save interrupted between its renames: the complete copy is moved back in place
    if (checkpoint / "trainer.pt").is_file():
        resumed, saved = load_ctc_checkpoint(checkpoint)
        ctc.load_state_dict(resumed.state_dict())
        optimizer_state = saved.pop("optimizer")
        state = {k: int(saved[k]) for k in state}
        log.info("resuming CTC fine-tuning at update %d", state["step"])
    ctc.to(device).train()
    optimizer = torch.optim.Adam(ctc.trainable_parameters(), lr=config.lr, betas=(0.9, 0.98), eps=1e-8)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    generator = torch.Generator(device=device).manual_seed(config.seed + state["step"])
    stream = _batch_stream(batches, config.seed, state["epoch"], state["position"])
    writer = SummaryWriter(str(out_dir / "tensorboard"))
    losses: list[float] = []
    bar = tqdm(total=config.max_updates, initial=state["step"], desc="CTC fine-tuning", unit="update",
               disable=not progress)
    while state["step"] < config.max_updates:
        lr = tri_stage_lr(state["step"], config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.grad_accum):
            state["epoch"], state["position"], batch = next(stream)
            wavs, lengths, targets, target_lengths = load_batch([kept[i] for i in batch], device)
            log_probs, frames = ctc(wavs, lengths, mask=True, config=config, generator=generator,
                                    update_encoder=state["step"] >= config.freeze_updates)
            loss = nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, frames, target_lengths,
                                          blank=INDEX["-"], zero_infinity=True) / config.grad_accum
            loss.backward()
            total += float(loss.detach())
        nn.utils.clip_grad_norm_(ctc.trainable_parameters(), config.clip_norm)
        optimizer.step()
        state["step"] += 1
        losses.append(total)
        bar.update(1)
        if state["step"] % config.log_every == 0:
            writer.add_scalar("ctc/loss", total, state["step"])
            writer.add_scalar("ctc/lr", lr, state["step"])
            bar.set_postfix(loss=f"{total:.3f}")
        if state["step"] % config.save_every == 0 or state["step"] == config.max_updates:
            _save(ctc, optimizer, state, checkpoint)
    bar.close()
    writer.close()
    return ctc.eval(), losses


@torch.inference_mode()
def emissions(ctc: CtcModel, utterance: LabelledUtterance, device: str = "cpu") -> np.ndarray:
    """(frames, 29) log-probabilities of one utterance, without masking."""
    from learn2diss.data.audio import read_audio

    wav = torch.from_numpy(read_audio(utterance.path))[None].to(device)
    log_probs, frames = ctc.eval()(wav, torch.tensor([wav.shape[1]], device=device), mask=False)
    return log_probs[0, : int(frames[0])].float().cpu().numpy()
