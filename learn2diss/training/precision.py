"""Mixed precision: the one place where autocast is set up (training steps and the inference passes of a run)."""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["autocast"]


def autocast(device: torch.device, precision: Literal["bf16", "fp32"]) -> torch.autocast:
    """bf16 autocast on CUDA when ``precision`` is ``bf16``; a disabled context otherwise (the CPU runs fp32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bf16")
