"""What the demo runs: corpus size, config overrides, seeds and evaluation sizes (full and ``--quick``), and its
folders.

The full settings are the ones measured to fit 15 minutes on 2 CPU cores (docs/demo.md); ``--quick``
is the reduced demo of the test suite (a few speakers, a few steps: every table and figure, no meaning).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from learn2diss.pretrain.config import ConfigError, config_path
from learn2diss.study.cells import StudyPaths
from learn2diss.study.grid import Grid, Setting

PARENT = "demo-parent"  # the parent's name in the rows and the feature caches
# The shipped demo parent (package data): `learn2diss demo --train-parent` rebuilds it (docs/demo.md, "The parent")
SHIPPED_PARENT = Path(__file__).parent / "parent"
SHIPPED_PARENT_HASH = "b32b9f6ba7c4"  # checkpoint_hash of SHIPPED_PARENT (its tensors); docs/demo.md gives the same
EVAL_SPLIT = "test"  # the demo reports on the unseen test speakers and chooses nothing
# The two Learn2Diss settings of Table 5: lambda = 0 and the config's lambda (config demo_l2d, joint.club.weight)
NO_MI, MI = "lambda-0", "lambda-default"
GRID = Grid((Setting(NO_MI, (("joint.club.weight", 0.0),)), Setting(MI, ())), x="joint.club.weight")
SETTING_TITLES = {NO_MI: "λ = 0", MI: "λ > 0"}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run; every field is recorded in ``WORK/demo.json``."""

    # 30 speakers x 50 utterances: 18 train, 6 unseen validation speakers (where `learn2diss study` chooses) and
    # 6 unseen test speakers (what the demo reports; it chooses nothing)
    speakers: int = 30
    utterances: int = 50
    shared: int = 10
    test_speakers: int = 6
    val_speakers: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)  # joint-stage seeds, the same for both lambdas (train.seed = data.seed)
    train_parent: bool = False  # train the parent (config demo_parent) instead of using the shipped one
    parent_overrides: tuple[str, ...] = ()  # --set for config demo_parent (with train_parent)
    l2d_overrides: tuple[str, ...] = ()  # --set for config demo_l2d (every stage)
    purity_clusters: int = 100  # frame k-means K of PNMI (the paper's 2048 needs ~100x more frames)
    probe_max_frames: int = 20_000  # frames per phone-probe split
    # share of each test speaker's utterances the probes are scored on: half (150 of 300 utterances, 0.7 points per
    # utterance) rather than the command's default 20 % (60 utterances, 1.7 points per utterance)
    probe_test_fraction: float = 0.5
    asr_train_utterances: int = 300  # training utterances of the phone-recognition head (every 3rd of train)
    asr_epochs: int = 20

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


FULL = DemoSettings()

QUICK = DemoSettings(
    speakers=10, utterances=10, shared=4, test_speakers=2, val_speakers=2, seeds=(0, 1),
    parent_overrides=("joint.steps=6", "joint.frame_optimizer.warmup_steps=2", "frame_targets.fit_max_frames=3000",
                      "train.log_every=2"),
    l2d_overrides=("joint.steps=4", "joint.frame_optimizer.warmup_steps=2", "utt_simclr.steps=3",
                   "frame_targets.fit_max_frames=3000", "utt_targets.cluster_counts=[2,3,4,5,6]", "train.log_every=2"),
    purity_clusters=20, probe_max_frames=2_000, asr_train_utterances=40, asr_epochs=3,
)


@dataclass(frozen=True)
class DemoPaths:
    """Folders and files of one demo run: ``work`` (corpus, runs, caches) and ``out`` (results/demo)."""

    work: Path
    out: Path
    configs: Path | None = None  # folder with demo_parent.yaml and demo_l2d.yaml; None: the packaged ones

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
    def study(self) -> StudyPaths:
        """The Learn2Diss cells (runs, checkpoints, feature caches in ``work``; rows in ``out/cells``)."""
        return StudyPaths(self.out, self.work)

    @property
    def stages(self) -> Path:
        return self.work / "stages"

    def config(self, name: str) -> Path:
        """The YAML file of demo config ``name``: in ``configs`` if given, else the packaged one."""
        if self.configs is None:
            return config_path(name)
        path = self.configs / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"demo config {path} not found; --configs DIR needs {name}.yaml (or leave "
                              "--configs out: the packaged configs)")
        return path

    def split(self, name: str) -> Path:
        return self.corpus / "LibriSpeech-style" / name
