"""Random streams derived from integer keys: the one way the package makes its randomness a function of its
position (seed, epoch, batch, utterance, step, rank, micro-batch, ...), so that a resumed run draws exactly what
an uninterrupted one would have, without any saved generator state.

>>> float(keyed_rng(0, 1, 2).random()) == float(keyed_rng(0, 1, 2).random()) != float(keyed_rng(0, 1, 3).random())
True
>>> 0 <= seed_for(0, 5, 1) < 2**63
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["keyed_rng", "seed_for"]


def keyed_rng(*keys: int) -> np.random.Generator:
    """A numpy generator whose stream is a function of ``keys`` (numpy's ``SeedSequence`` mixes them)."""
    return np.random.default_rng([int(k) for k in keys])


def seed_for(*keys: int) -> int:
    """A 63-bit seed mixed from ``keys``, for torch's generators (``torch.manual_seed``, ``torch.Generator``)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))
