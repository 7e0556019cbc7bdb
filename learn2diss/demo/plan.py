"""What the demo runs: corpus size, config overrides and evaluation sizes (full and ``--quick``), and its folders.

The full settings are the ones measured to fit 15 minutes on 2 CPU cores (docs/demo.md); ``--quick``
is the reduced demo of the test suite (a few speakers, a few steps: every table and figure, no meaning).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

# The three models of the demo: result name, variant (the Table 5/6 convention), label in the tables.
PARENT, L2D_NO_MI, L2D_MI = "demo-parent", "demo-L2D-no-MI", "demo-L2D"
MODELS: tuple[tuple[str, str], ...] = ((PARENT, ""), (L2D_NO_MI, "no-mi"), (L2D_MI, ""))
DATASET = "demo"  # the dataset column of the result rows


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run; every field is recorded in ``WORK/demo.json``."""

    speakers: int = 24  # `learn2diss data synth` defaults: 24 speakers x 50 utterances, 6 test speakers
    utterances: int = 50
    shared: int = 10
    test_speakers: int = 6
    parent_overrides: tuple[str, ...] = ()  # --set for configs/demo_parent.yaml
    l2d_overrides: tuple[str, ...] = ()  # --set for configs/demo_l2d.yaml and demo_l2d_no_mi.yaml
    ctc_overrides: tuple[str, ...] = ()  # --set for the packaged ctc_demo schedule
    purity_clusters: int = 100  # frame k-means K of phone purity (the paper's 2048 needs ~100x more frames)
    probe_max_frames: int = 20_000  # frames per phone-probe split
    # share of each test speaker's utterances the probes are scored on: half (150 of 300 utterances, 0.7 points per
    # utterance) rather than the command's default 20 % (60 utterances, 1.7 points per utterance)
    probe_test_fraction: float = 0.5
    lm_order: int = 4

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


FULL = DemoSettings(
    ctc_overrides=("finetune.max_updates=200", "finetune.warmup_updates=20", "finetune.hold_updates=80",
                   "finetune.decay_updates=100", "finetune.freeze_updates=20", "finetune.batch_seconds=20",
                   "finetune.save_every=100"),
)

QUICK = DemoSettings(
    speakers=8, utterances=10, shared=4, test_speakers=2,
    parent_overrides=("joint.steps=6", "joint.frame_optimizer.warmup_steps=2", "frame_targets.fit_max_frames=3000",
                      "train.log_every=2"),
    l2d_overrides=("joint.steps=6", "joint.frame_optimizer.warmup_steps=2", "utt_simclr.steps=3",
                   "frame_targets.fit_max_frames=3000", "utt_targets.cluster_counts=[2,3,4,5,6]", "train.log_every=2"),
    ctc_overrides=("finetune.max_updates=3", "finetune.warmup_updates=1", "finetune.hold_updates=1",
                   "finetune.decay_updates=1", "finetune.freeze_updates=1", "finetune.save_every=3",
                   "finetune.log_every=1", "finetune.batch_seconds=10"),
    purity_clusters=20, probe_max_frames=2_000,
)


@dataclass(frozen=True)
class DemoPaths:
    """Folders and files of one demo run: ``work`` (corpus, runs, caches) and ``out`` (results/demo)."""

    work: Path
    out: Path
    configs: Path

    @property
    def corpus(self) -> Path:
        return self.work / "corpus"

    @property
    def manifest(self) -> Path:
        return self.work / "manifest"

    def run(self, name: str) -> Path:
        return self.work / "runs" / name

    def checkpoint(self, model: str) -> Path:
        return self.work / "checkpoints" / model

    @property
    def lm(self) -> Path:
        return self.work / "lm"

    @property
    def eval_work(self) -> Path:
        return self.work / "eval"

    @property
    def stages(self) -> Path:
        return self.work / "stages"

    def config(self, name: str) -> Path:
        path = self.configs / f"{name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"demo config {path} not found; pass --configs DIR (the repository's configs/)")
        return path

    def split(self, name: str) -> Path:
        return self.corpus / "LibriSpeech-style" / name
