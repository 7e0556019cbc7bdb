"""The eight SUPERB tasks of paper Table 2 and how each one maps onto s3prl.

A task names its s3prl downstream folder (``-d``), its config (``learn2diss/configs/superb/<name>.yaml``, s3prl's
schema, read through :mod:`learn2diss.schema` like every config: :class:`SuperbTaskConfig`), the upstream feature
key it reads by default, the dataset folder it expects under a data
root, the metric lines s3prl prints, and the prediction files of the public-set submission.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learn2diss.errors import InputError
from learn2diss.schema import load_config_file, to_dict
from learn2diss.upstream.expert import FRAME_TASKS, UTTERANCE_TASKS


@dataclass(frozen=True)
class Metric:
    """One number s3prl prints as ``<split> <key>: <value>`` (ASV: ``sv-voxceleb1/<split>-EER: <value>``)."""

    key: str  # as printed by s3prl
    name: str  # column in results/superb.csv and Table 2
    scale: float  # s3prl's value x scale = the percentage of Table 2
    higher_better: bool

    def pattern(self, split: str) -> str:
        if self.key == "EER":
            return rf"sv-voxceleb1/{split}-EER: (\S+)"
        return rf"^{split} {self.key}: (\S+)$"


@dataclass(frozen=True)
class Task:
    """A SUPERB task as run by s3prl's legacy runner."""

    name: str  # our name, also the -d value of run_downstream.py
    title: str  # column group of Table 2
    downstream: str  # s3prl's -d
    dataset: str  # folder name under a data root (prepare.py checks its layout; docs/superb.md lists them)
    metrics: tuple[Metric, ...]  # the first one selects the learning rate and the checkpoint
    dev_split: str | None  # None: the protocol picks checkpoints on the test trials (ASV)
    test_split: str
    predictions: dict[str, str]  # file in the run folder -> member of predict.zip ({fold} for ER)
    folds: tuple[str, ...] = ()

    @property
    def feature_key(self) -> str:
        """The upstream key read by default: frame layers for semantic, utterance layers for the rest."""
        return self.name

    @property
    def level(self) -> str:
        return "frame" if self.name in FRAME_TASKS else "utterance"

    @property
    def best_checkpoint(self) -> str:
        return f"{self.dev_split}-best.ckpt"

    def config(self) -> dict:
        """The task config shipped with the package, as the plain mapping s3prl reads (a fresh copy)."""
        return to_dict(load_config_file(SuperbTaskConfig, self.name, "superb"))


@dataclass(frozen=True)
class SuperbTaskConfig:
    """A task's s3prl downstream config (its legacy runner's YAML): the sections s3prl reads, each in s3prl's own
    schema. The data paths under ``downstream_expert`` are null in the packaged files: ``run_downstream.py`` sets
    them from ``--data-root`` (:func:`learn2diss.downstream_runs.prepare.prepare`)."""

    runner: dict[str, Any]
    optimizer: dict[str, Any]
    specaug: dict[str, Any] | None  # SpecAugment of the features (null: none)
    downstream_expert: dict[str, Any]


_ACC = Metric("acc", "acc", 100.0, True)

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("pr", "PR", "ctc", "LibriSpeech", (Metric("per", "per", 100.0, False),), "dev", "test",
             {"test-hyp.ark": "pr_public/predict.ark"}),
        Task("asr", "ASR", "asr", "LibriSpeech", (Metric("wer", "wer", 1.0, False),), "dev-clean", "test-clean",
             {"test-clean-noLM-hyp.ark": "asr_public/predict.ark"}),
        Task("ks", "KS", "speech_commands", "speech_commands_v0.01", (_ACC,), "dev", "test",
             {"test_predict.txt": "ks_public/predict.txt"}),
        Task("ic", "IC", "fluent_commands", "fluent_speech_commands_dataset", (_ACC,), "dev", "test",
             {"test_predict.csv": "ic_public/predict.csv"}),
        Task("sf", "SF", "ctc", "SNIPS",
             (Metric("slot_type_f1", "f1", 100.0, True), Metric("slot_value_cer", "cer", 100.0, False)),
             "dev", "test", {"test-hyp.ark": "sf_public/predict.ark"}),
        Task("sid", "SID", "voxceleb1", "VoxCeleb1", (_ACC,), "dev", "test",
             {"test_predict.txt": "sid_public/predict.txt"}),
        Task("asv", "ASV", "sv_voxceleb1", "VoxCeleb1", (Metric("EER", "eer", 100.0, False),), None, "test",
             {"test_predict.txt": "sv_public/predict.txt"}),
        Task("er", "ER", "emotion", "IEMOCAP_full_release", (_ACC,), "dev", "test",
             {"test_{fold}_predict.txt": "er_{fold}_public/predict.txt"},
             folds=("fold1", "fold2", "fold3", "fold4", "fold5")),
    )
}
assert set(TASKS) == set(FRAME_TASKS) | set(UTTERANCE_TASKS)


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive); ValueError listing the tasks otherwise."""
    task = TASKS.get(name.lower())
    if task is None:
        raise InputError(f"unknown SUPERB task {name!r}; choose from {', '.join(TASKS)}")
    return task


def parse_tasks(text: str) -> list[Task]:
    """``"asv,sid"`` -> [ASV, SID]; ``"all"`` -> the eight tasks of Table 2 in its column order."""
    if text.strip().lower() == "all":
        return list(TASKS.values())
    return [get_task(name.strip()) for name in text.split(",") if name.strip()]


def dataset_dir(task: Task, data_root: str | Path) -> Path:
    """``data_root/<dataset>`` when it exists, else ``data_root`` itself (the dataset folder was given)."""
    root = Path(data_root)
    nested = root / task.dataset
    return nested if nested.is_dir() else root
