"""``torch.compile`` of the parts of a training step that pay, behind ``train.compile``.

An objective names its parts (:meth:`learn2diss.training.loop.Objective.compile`); each is a function whose
tensor arguments may have dimensions that change from batch to batch (the number of MI pairs, of selected
frames). Those are marked dynamic before every call, so that one graph serves every batch instead of one
compilation per size. ``none`` runs the function itself (eager), so the eager step is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

__all__ = ["COMPILE_MODES", "compile_part"]

COMPILE_MODES = ("none", "default", "max-autotune-no-cudagraphs")
F = TypeVar("F", bound=Callable[..., Any])


def compile_part(fn: F, mode: str, dynamic: Sequence[Sequence[int]] = ()) -> F:
    """``fn`` compiled with ``mode`` (``none``: ``fn`` itself), dimension ``dynamic[i]`` of its ``i``-th argument
    marked dynamic at every call (``()`` for an argument whose shape repeats)."""
    if mode == "none":
        return fn
    compiled = torch.compile(fn, mode=None if mode == "default" else mode)

    def call(*args: Any) -> Any:
        for arg, dims in zip(args, dynamic, strict=False):
            for dim in dims:
                torch._dynamo.maybe_mark_dynamic(arg, dim)
        return compiled(*args)

    return call  # type: ignore[return-value]
