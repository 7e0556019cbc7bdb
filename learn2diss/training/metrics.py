"""What a training stage logs: TensorBoard and ``metrics.jsonl`` (rank 0), one record per logging step."""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor

from learn2diss.io import FileReadError, open_append, parse_json, read_text, write_lines

__all__ = ["MetricsLogger", "cut_metrics"]


def cut_metrics(path: Path, step: int) -> None:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resumed run logs the later steps again, once);
    a line cut short by a kill is dropped too."""
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in read_text(path, "metrics log").splitlines():
        try:
            record = parse_json(line, path)
            keep = int(record["step"]) <= step
        except (FileReadError, ValueError, KeyError, TypeError):
            keep = False
        kept += [line] if keep else []
        dropped += not keep
    if dropped:
        write_lines(path, kept)


class MetricsLogger:
    """Rank-0 TensorBoard + metrics.jsonl writer; averages each scalar over the calls since the last write that
    reported it (a term missing from some micro-batches averages over the others); ``count/...`` keys are summed.
    With ``enabled`` false (other ranks, benchmarks) it only averages."""

    def __init__(self, directory: Path | None, tensorboard_dir: Path | None, enabled: bool, start_step: int = 0) -> None:
        self.enabled = enabled and directory is not None
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        if enabled and directory is not None:
            from torch.utils.tensorboard import SummaryWriter

            directory.mkdir(parents=True, exist_ok=True)
            # purge_step: TensorBoard hides the events a killed run logged after its checkpoint
            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=start_step + 1 if start_step else None)
            self.jsonl = open_append(directory / "metrics.jsonl")  # closed in close()

    def add(self, scalars: dict[str, Tensor]) -> None:
        for key, value in scalars.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def write(self, step: int, extra: dict[str, float]) -> dict[str, float]:
        means = {k: float(v) if k.startswith("count/") else float(v) / self.counts[k] for k, v in self.sums.items()}
        means.update(extra)
        self.sums, self.counts = {}, {}
        if self.enabled:
            for key, value in means.items():
                self.writer.add_scalar(key, value, step)
            self.jsonl.write(json.dumps({"step": step, **means}) + "\n")
            self.jsonl.flush()
        return means

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()
