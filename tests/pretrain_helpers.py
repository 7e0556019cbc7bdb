"""Shared by the pretraining tests: a generated corpus (tones + noise, 3 pseudo-speakers) and its manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from learn2diss.cli import main
from learn2diss.data.manifest import build_manifest, scan_librispeech, write_manifest
from learn2diss.pretrain.config import config_path

CONFIG = config_path("tiny")


def pretrain(data: Path, out: Path, *extra: str) -> int:
    """``learn2diss pretrain EXTRA`` on the tiny config, on the CPU."""
    return main(["pretrain", *extra, "--config", str(CONFIG), "--data", str(data), "--out", str(out),
                 "--device", "cpu"])


def make_corpus(root: Path, per_speaker: int = 4, seed: int = 0) -> Path:
    """LibriSpeech-layout FLAC files of 1.2-3.2 s; returns the manifest folder."""
    rng = np.random.default_rng(seed)
    for speaker, f0 in [("100", 120.0), ("200", 210.0), ("300", 330.0)]:
        for u in range(per_speaker):
            n = int(16000 * rng.uniform(1.2, 3.2))
            t = np.arange(n) / 16000
            wav = 0.2 * np.sin(2 * np.pi * f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)) * t)
            wav += 0.02 * rng.standard_normal(n)
            folder = root / "corpus" / "train" / speaker / "1"
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{speaker}-1-{u:04d}.flac", wav.astype(np.float32), 16000)
    manifest, skipped = build_manifest(scan_librispeech(root / "corpus", ["train"]), progress=False)
    assert not skipped
    write_manifest(root / "manifests" / "train.tsv", manifest)
    return root / "manifests"


def kill_after_checkpoint(monkeypatch: pytest.MonkeyPatch, step: int, run: Callable[[], object]) -> None:
    """Call ``run`` as if the process were killed right after writing the checkpoint of ``step``."""
    import learn2diss.training.loop as loop_module

    real_save = loop_module.save_torch

    def die_after(path, state):
        if state["step"] > step:
            raise KeyboardInterrupt("killed")
        real_save(path, state)

    monkeypatch.setattr(loop_module, "save_torch", die_after)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(loop_module, "save_torch", real_save)
