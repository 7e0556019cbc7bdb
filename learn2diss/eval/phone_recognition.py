"""SUPERB-style phone recognition (PR) with a linear CTC head on cached frozen features: the demo's and the
study's PER.

As SUPERB's PR task (Yang et al. 2021): the upstream is frozen, a linear layer maps each 50 Hz frame
feature to phone posteriors plus the CTC blank, trained with CTC on the training speakers' phone sequences
and decoded greedily (best path, repeats merged, blanks removed); the metric is the phone error rate (PER,
edit distance over reference phones, percent). Features (``frame:last`` of the frame encoder g, or MFCCs) are
standardised with the training frames' mean and deviation. The phone sequences come from the corpus's
alignments (silences dropped). An all-blank output scores 100 %; unlike a short fine-tune of the whole
encoder, which stays on that plateau at demo scale, this head separates models within seconds of CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BLANK = 0


@dataclass(frozen=True)
class HeadSettings:
    """Training of the linear CTC head (full passes over the training utterances, Adam)."""

    epochs: int = 20
    batch_utterances: int = 16
    lr: float = 2e-2
    seed: int = 0


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def greedy_decode(logits: np.ndarray) -> list[int]:
    """Best path of (T, C) scores: argmax per frame, repeats merged, blanks removed."""
    best = logits.argmax(1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != BLANK]


def train_ctc_head(features: Sequence[np.ndarray], targets: Sequence[Sequence[int]], num_classes: int,
                   settings: HeadSettings):
    """A linear layer (D -> num_classes, index 0 the blank) trained with CTC on (T_u, D) features."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    head = torch.nn.Linear(features[0].shape[1], num_classes, dtype=torch.float32)
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr)
    xs = [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) for f in features]
    ys = [torch.tensor(t, dtype=torch.long) for t in targets]
    for _ in range(settings.epochs):
        order = torch.randperm(len(xs), generator=generator).tolist()
        for start in range(0, len(order), settings.batch_utterances):
            batch = order[start:start + settings.batch_utterances]
            x = torch.nn.utils.rnn.pad_sequence([xs[i] for i in batch], batch_first=True)
            log_probs = F.log_softmax(head(x), dim=-1).transpose(0, 1)  # (T, B, C)
            loss = F.ctc_loss(log_probs, torch.cat([ys[i] for i in batch]),
                              torch.tensor([len(xs[i]) for i in batch]), torch.tensor([len(ys[i]) for i in batch]),
                              blank=BLANK, reduction="mean", zero_infinity=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


def phone_error_rate(train: Mapping[str, np.ndarray], train_phones: Mapping[str, Sequence[str]],
                     test: Mapping[str, np.ndarray], test_phones: Mapping[str, Sequence[str]],
                     settings: HeadSettings = HeadSettings()) -> tuple[float, str]:
    """PER (%) on ``test`` of a linear CTC head trained on ``train`` (utt -> (T, D) features / phone sequence).

    Returns the PER and a details line (utterances, phones, epochs). Test phones unseen in training count as
    errors.
    """
    import torch

    inventory = sorted({p for u in train for p in train_phones[u]})
    index = {p: i + 1 for i, p in enumerate(inventory)}  # 0 is the blank
    stacked = np.concatenate([np.asarray(train[u], dtype=np.float64) for u in train])
    mean, std = stacked.mean(0), stacked.std(0)
    std[std == 0] = 1.0

    def scaled(x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)

    head = train_ctc_head([scaled(train[u]) for u in train], [[index[p] for p in train_phones[u]] for u in train],
                          len(inventory) + 1, settings)
    errors = total = 0
    with torch.no_grad():
        for utt, x in test.items():
            hyp = [inventory[c - 1] for c in greedy_decode(head(torch.from_numpy(scaled(x))).numpy())]
            errors += edit_distance(list(test_phones[utt]), hyp)
            total += len(test_phones[utt])
    details = (f"linear CTC head on frozen features, {len(train)} train / {len(test)} test utterances, "
               f"{len(inventory)} phones, {settings.epochs} epochs, greedy decoding")
    return 100.0 * errors / max(total, 1), details
