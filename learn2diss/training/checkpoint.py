"""Training checkpoints on disk: ``step_N.pt`` files, written atomically, read back safely, the damaged ones skipped.

What a checkpoint holds is listed once, in :func:`learn2diss.training.loop.checkpoint_state`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from learn2diss.upstream.checkpoints import CheckpointError, load_untrusted

__all__ = ["CHECKPOINT_PATTERN", "CHECKPOINT_KEYS", "checkpoints", "latest_checkpoint",
           "load_checkpoint", "load_latest_checkpoint", "prune"]

CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")
CHECKPOINT_KEYS = ("stage", "step", "position", "world_size", "nonfinite_steps", "model", "modules", "optimizers")


def checkpoints(directory: Path) -> list[Path]:
    """The ``step_N.pt`` files of ``directory``, newest (largest N) first."""
    found = [(int(m.group(1)), p) for p in directory.glob("step_*.pt") if (m := CHECKPOINT_PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(directory: Path) -> Path | None:
    """The ``step_N.pt`` with the largest N in ``directory``, if any."""
    found = checkpoints(directory)
    return found[0] if found else None


def load_checkpoint(path: Path) -> dict:
    """Our own training checkpoint, through :func:`load_untrusted` (``weights_only=True``; a pickle that wants
    to build objects is refused). A damaged or incomplete file is a :class:`CheckpointError` naming it."""
    state = load_untrusted(path)
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a learn2diss training checkpoint (missing {', '.join(missing)})")
    return state


def load_latest_checkpoint(directory: Path, log: Callable[[str], None] = print) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``directory`` that loads, or None if there is none.

    A damaged newer one (truncated, not a checkpoint, refused pickle) is skipped with a message naming it and
    the reason; if every checkpoint is damaged, :class:`CheckpointError` lists them.
    """
    skipped = []
    for path in checkpoints(directory):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            skipped.append(str(err))
            log(f"warning: skipping a damaged checkpoint: {err}")
    if skipped:
        raise CheckpointError(f"{directory}: no usable checkpoint: " + "; ".join(skipped))
    return None


def prune(directory: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints of ``directory``."""
    for path in checkpoints(directory)[keep:]:
        path.unlink(missing_ok=True)
