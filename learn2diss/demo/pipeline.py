"""The demo's stages, each one or more ordinary ``learn2diss`` commands or study cells, timed and resumable.

A finished stage writes ``WORK/stages/<name>.json`` (its wall and CPU seconds) and is skipped on the
next run; an interrupted one is redone, and the work it calls resumes (the corpus builder keeps finished
chunks, pretraining continues from its last checkpoint with ``--resume``, feature extraction skips what
exists, a study cell whose rows are written is not run again).

The Learn2Diss runs share their preparation: the stages that do not depend on lambda or the seed
(frame-targets, utt-simclr, utt-targets) run once in ``runs/l2d_shared``; each (lambda, seed) is then a
cell of :mod:`learn2diss.study`: a copy of that folder, its joint stage, the export and the fast
evaluations on the test speakers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from learn2diss.data.synth.phones import SILENCE
from learn2diss.demo.phone_recognition import HeadSettings, phone_error_rate
from learn2diss.demo.plan import EVAL_SPLIT, GRID, PARENT, DemoPaths, DemoSettings
from learn2diss.errors import Learn2DissError
from learn2diss.eval.results import checkpoint_hash
from learn2diss.io import write_json
from learn2diss.study.cells import Cell, StudyInputs, evaluate_checkpoint, run_cell
from learn2diss.study.evaluate import FRAME, EvalSizes
from learn2diss.version import __version__, git_commit


class DemoError(Learn2DissError, RuntimeError):
    """A demo stage failed or the work folder belongs to other settings."""


def cli(*argv: object) -> None:
    """Run one ``learn2diss`` command in this process; a non-zero exit is a :class:`DemoError`."""
    from learn2diss.commands import run_command

    run_command(*argv, check=DemoError)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class StageTime:
    """How long a stage took (from its marker when it was skipped)."""

    name: str
    title: str
    wall: float
    cpu: float
    skipped: bool


class StageRunner:
    """Runs stages in order, prints one line per stage with its time, and skips finished ones."""

    def __init__(self, paths: DemoPaths, total: int) -> None:
        self.paths, self.total = paths, total
        self.times: list[StageTime] = []

    def __call__(self, name: str, title: str, fn: Callable[[], None]) -> StageTime:
        marker = self.paths.stages / f"{name}.json"
        index = len(self.times) + 1
        if marker.is_file():
            saved = json.loads(marker.read_text())
            result = StageTime(name, title, saved["wall"], saved["cpu"], True)
            print(f"[demo {index}/{self.total}] {title}: done before ({saved['wall']:.0f} s), skipped", flush=True)
        else:
            print(f"[demo {index}/{self.total}] {title} ...", flush=True)
            wall, cpu = time.perf_counter(), cpu_seconds()
            fn()
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            write_json(marker, {"wall": wall, "cpu": cpu})
            result = StageTime(name, title, wall, cpu, False)
            print(f"[demo {index}/{self.total}] {title}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        self.times.append(result)
        return result


def build_corpus(paths: DemoPaths, settings: DemoSettings, jobs: int) -> None:
    """The demo corpus (`learn2diss data synth`) and the manifest of its train split."""
    cli("data", "synth", "--out", paths.corpus, "--speakers", settings.speakers, "--utts", settings.utterances,
        "--shared", settings.shared, "--test-speakers", settings.test_speakers, "--val-speakers", settings.val_speakers,
        "--jobs", jobs)
    cli("data", "manifest", "--root", paths.corpus / "LibriSpeech-style", "--subsets", "train", "--out", paths.manifest)


def _sets(overrides: tuple[str, ...]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


def pretrain_parent(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """HuBERT iteration 1 from random weights (config demo_parent), exported as our checkpoint."""
    run = paths.run("parent")
    cli("pretrain", "--config", paths.config("demo_parent"), "--random-parent", "--data", paths.manifest,
        "--out", run, "--resume", "--device", device, *_sets(settings.parent_overrides))
    cli("export", run, "--out", paths.checkpoint(PARENT))


def prepare_l2d(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """The lambda-independent stages of Learn2Diss from the demo parent, once for both runs."""
    for stage in ("frame-targets", "utt-simclr", "utt-targets"):
        cli("pretrain", stage, "--config", paths.config("demo_l2d"), "--parent", paths.checkpoint(PARENT),
            "--data", paths.manifest, "--out", paths.run("l2d_shared"), "--resume", "--device", device,
            *_sets(settings.l2d_overrides))


def cells(settings: DemoSettings) -> list[Cell]:
    """The Learn2Diss runs: each lambda of :data:`GRID` with each seed."""
    return [Cell(setting, seed) for setting in GRID.settings for seed in settings.seeds]


def _sizes(settings: DemoSettings) -> EvalSizes:
    return EvalSizes(settings.purity_clusters, settings.probe_max_frames, settings.probe_test_fraction)


def train_and_evaluate(paths: DemoPaths, settings: DemoSettings, device: str, cell: Cell) -> None:
    """One cell: the joint stage (eq. 10) from a copy of the shared preparation, export, fast evaluations on the
    test speakers (their features are kept for the phone recognition and the figures)."""
    inputs = StudyInputs(paths.config("demo_l2d"), paths.manifest, paths.run("l2d_shared"), paths.corpus,
                         settings.l2d_overrides, device)
    run_cell(cell, inputs, paths.study, (EVAL_SPLIT,), _sizes(settings), GRID.x, keep_features=True)


def evaluate_parent(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """The fast evaluations of the parent on the test speakers, as a record like a cell's (``OUT/parent.json``)."""
    checkpoint = paths.checkpoint(PARENT)
    rows = evaluate_checkpoint(checkpoint, paths.corpus, (EVAL_SPLIT,), _sizes(settings),
                               paths.study.features(PARENT), device)
    write_json(paths.out / "parent.json", {
        "setting": PARENT, "seed": 0, "x": None, "overrides": list(settings.parent_overrides),
        "checkpoint": str(checkpoint), "checkpoint_hash": checkpoint_hash(checkpoint),
        "git_commit": git_commit() or "unknown", "version": __version__,
        "config": str(paths.config("demo_parent")), "shared": "", "corpus": str(paths.corpus), "rows": rows})


def model_names(settings: DemoSettings) -> list[str]:
    """Every evaluated model: the parent, then each cell."""
    return [PARENT, *(c.name for c in cells(settings))]


def evaluate_phone_recognition(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """PER of a linear CTC head on each model's frozen ``frame:last`` (SUPERB's PR set-up), in ``OUT/asr.json``.

    The head trains on every k-th training utterance (``asr_train_utterances`` of them) and is scored on the
    test speakers, whose features the fast evaluations cached.
    """
    from learn2diss.eval.alignments import read_alignments
    from learn2diss.eval.features import FeatureSpec, extract_features, find_audio, load_features
    from learn2diss.upstream.checkpoints import load_model

    path = paths.out / "asr.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    train_al = read_alignments(paths.corpus / "alignments" / "train.tsv")
    train_utts = sorted(train_al)
    train_utts = train_utts[:: max(1, len(train_utts) // settings.asr_train_utterances)][: settings.asr_train_utterances]
    test_al = read_alignments(paths.corpus / "alignments" / f"{EVAL_SPLIT}.tsv")
    test_utts = sorted(test_al)
    phones = {u: [p for p in a.phones if p != SILENCE] for al in (train_al, test_al) for u, a in al.items()}
    spec = FeatureSpec.parse(FRAME)
    head = HeadSettings(epochs=settings.asr_epochs)
    for name in model_names(settings):
        if name in done:
            continue
        folder = paths.study.features(name)
        train_folder = folder / "asr-train" / "frame_last"
        checkpoint = paths.checkpoint(PARENT) if name == PARENT else paths.study.checkpoint(name)
        extract_features(load_model(checkpoint), find_audio(paths.split("train"), train_utts), [spec],
                         {FRAME: train_folder}, device=device, progress=False)
        per, details = phone_error_rate(load_features(train_folder, train_utts), phones,
                                        load_features(folder / EVAL_SPLIT / "frame_last", test_utts), phones, head)
        done[name] = {"per": per, "details": details, "checkpoint": str(checkpoint)}
        write_json(path, done)


__all__ = ["DemoError", "StageRunner", "StageTime", "cli", "build_corpus", "pretrain_parent", "prepare_l2d",
           "cells", "train_and_evaluate", "evaluate_parent", "evaluate_phone_recognition", "model_names"]
