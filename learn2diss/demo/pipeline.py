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

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from learn2diss.demo.floors import FLOORS, write_mfcc_features
from learn2diss.demo.plan import (
    EVAL_SPLIT,
    GRID,
    PARENT,
    SHIPPED_PARENT,
    SHIPPED_PARENT_HASH,
    DemoPaths,
    DemoSettings,
)
from learn2diss.errors import Learn2DissError
from learn2diss.eval.results import checkpoint_hash
from learn2diss.io import read_json, read_yaml, write_json
from learn2diss.study.cells import (
    Cell,
    CellTime,
    StudyInputs,
    evaluate_checkpoint,
    process_cpu_seconds,
    run_cells,
)
from learn2diss.study.evaluate import (
    FRAME,
    CorpusSplit,
    EvalSizes,
    SplitLabels,
    asr_utterances,
    score_frame_features,
)
from learn2diss.version import __version__, git_commit


class DemoError(Learn2DissError, RuntimeError):
    """A demo stage failed or the work folder belongs to other settings."""


def cli(*argv: object) -> None:
    """Run one ``learn2diss`` command in this process; a non-zero exit is a :class:`DemoError`."""
    from learn2diss.commands import run_command

    run_command(*argv, check=DemoError)


@dataclass(frozen=True)
class StageTime:
    """How long a stage took (from its marker when it was skipped). ``parallel``: it ran beside other stages of
    its group, so its wall time overlaps theirs and only the group's wall time counts in the total."""

    name: str
    title: str
    wall: float
    cpu: float
    skipped: bool
    parallel: bool = False


class StageRunner:
    """Runs stages in order, prints one line per stage with its time, and skips finished ones."""

    def __init__(self, paths: DemoPaths, total: int) -> None:
        self.paths, self.total = paths, total
        self.times: list[StageTime] = []

    def _marker(self, name: str) -> Path:
        return self.paths.stages / f"{name}.json"

    def _skipped(self, name: str, title: str, parallel: bool = False) -> StageTime | None:
        if not self._marker(name).is_file():
            return None
        saved = read_json(self._marker(name), "stage record")
        result = StageTime(name, title, saved["wall"], saved["cpu"], True, parallel)
        print(f"[demo {len(self.times) + 1}/{self.total}] {title}: done before ({saved['wall']:.0f} s), skipped",
              flush=True)
        self.times.append(result)
        return result

    def _finished(self, name: str, title: str, wall: float, cpu: float, parallel: bool = False) -> StageTime:
        write_json(self._marker(name), {"wall": wall, "cpu": cpu})
        result = StageTime(name, title, wall, cpu, False, parallel)
        self.times.append(result)
        print(f"[demo {len(self.times)}/{self.total}] {title}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        return result

    def __call__(self, name: str, title: str, fn: Callable[[], None]) -> StageTime:
        skipped = self._skipped(name, title)
        if skipped:
            return skipped
        print(f"[demo {len(self.times) + 1}/{self.total}] {title} ...", flush=True)
        wall, cpu = time.perf_counter(), process_cpu_seconds()
        fn()
        return self._finished(name, title, time.perf_counter() - wall, process_cpu_seconds() - cpu)

    def group(self, name: str, title: str, stages: list[tuple[str, str]],
              fn: Callable[[list[str], Callable[[str, CellTime], None]], None]) -> None:
        """Stages ``(name, title)`` that run side by side: ``fn(todo, done)`` runs the unfinished ones and calls
        ``done(name, time)`` as each ends. The group's own row (``name``, ``title``) holds its wall time and the
        stages' CPU time; each stage's row its own times, marked parallel."""
        titles = dict(stages)
        todo = [n for n, t in stages if not self._skipped(n, t, parallel=True)]
        if not todo:
            if not self._skipped(name, title):
                self.times.append(StageTime(name, title, 0.0, 0.0, True))
            return
        print(f"[demo] {title}: {len(todo)} to run ...", flush=True)
        start, cpu = time.perf_counter(), 0.0

        def done(stage: str, took: CellTime) -> None:
            nonlocal cpu
            cpu += took.cpu
            self._finished(stage, titles[stage], took.wall, took.cpu, parallel=True)

        fn(todo, done)
        self._finished(name, title, time.perf_counter() - start, cpu)


def build_corpus(paths: DemoPaths, settings: DemoSettings, jobs: int) -> None:
    """The demo corpus (`learn2diss data synth`) and the manifest of its train split."""
    cli("data", "synth", "--out", paths.corpus, "--speakers", settings.speakers, "--utts", settings.utterances,
        "--shared", settings.shared, "--test-speakers", settings.test_speakers, "--val-speakers", settings.val_speakers,
        "--jobs", jobs)
    cli("data", "manifest", "--root", paths.corpus / "LibriSpeech-style", "--subsets", "train", "--out", paths.manifest)


def _sets(overrides: tuple[str, ...]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


def shipped_parent_hash() -> str:
    """The tensors' hash of the shipped parent; a :class:`DemoError` when the file is missing or not the one
    ``learn2diss demo --train-parent`` made for this release."""
    if not (SHIPPED_PARENT / "model.safetensors").is_file():
        raise DemoError(f"the shipped demo parent {SHIPPED_PARENT} is missing; rebuild it with "
                        "`learn2diss demo --train-parent` (docs/demo.md) or reinstall the package")
    digest = checkpoint_hash(SHIPPED_PARENT)
    if digest != SHIPPED_PARENT_HASH:
        raise DemoError(f"the shipped demo parent {SHIPPED_PARENT} has hash {digest}, expected "
                        f"{SHIPPED_PARENT_HASH}: reinstall the package, or run `learn2diss demo --train-parent`")
    return digest


def save_half(checkpoint: Path, out: Path, provenance: dict) -> Path:
    """A copy of ``checkpoint`` with its weights stored in float16 (loading restores float32), as shipped;
    ``provenance`` goes into its config.yaml."""
    from learn2diss.upstream.checkpoints import load_model, save_model

    return save_model(load_model(checkpoint).half(), out,
                      {"stored_as": "float16 (load_model restores float32)", **provenance})


def parent_provenance(paths: DemoPaths, settings: DemoSettings, seconds: dict[str, float]) -> dict:
    """How the trained parent was made: command, config, steps, seed, corpus, commit and time."""
    config = read_yaml(paths.run("parent") / "config.yaml", "run config")
    corpus = read_json(paths.corpus / "corpus.json", "corpus summary")
    return {"command": "learn2diss demo --train-parent", "config": "demo_parent",
            "overrides": list(settings.parent_overrides), "steps": config["joint"]["steps"],
            "seed": config["train"]["seed"], "corpus": {"fingerprint": corpus["fingerprint"],
                                                        "speakers": settings.speakers,
                                                        "utterances": settings.utterances, "split": "train"},
            "git_commit": git_commit(), **{k: round(v) for k, v in seconds.items()}}


def pretrain_parent(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """The demo's parent at ``WORK/checkpoints/demo-parent``: the shipped one, or with ``train_parent`` HuBERT
    iteration 1 from random weights (config demo_parent) on the corpus's train split, exported, and a float16
    copy of it (``WORK/checkpoints/demo-parent-fp16``, the form that ships)."""
    import shutil

    if not settings.train_parent:
        shipped_parent_hash()
        shutil.rmtree(paths.checkpoint(PARENT), ignore_errors=True)
        shutil.copytree(SHIPPED_PARENT, paths.checkpoint(PARENT), ignore=shutil.ignore_patterns("__pycache__"))
        return
    run = paths.run("parent")
    wall, cpu = time.perf_counter(), process_cpu_seconds()
    cli("pretrain", "--config", paths.config("demo_parent"), "--random-parent", "--data", paths.manifest,
        "--out", run, "--resume", "--device", device, *_sets(settings.parent_overrides))
    cli("export", run, "--out", paths.checkpoint(PARENT))
    seconds = {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": process_cpu_seconds() - cpu}
    half = save_half(paths.checkpoint(PARENT), paths.checkpoint(f"{PARENT}-fp16"),
                     parent_provenance(paths, settings, seconds))
    print(f"demo parent trained; its float16 copy {half} has hash {checkpoint_hash(half)} (to ship it: copy its "
          f"files to {SHIPPED_PARENT} and set SHIPPED_PARENT_HASH, docs/demo.md)", flush=True)


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
    return EvalSizes(settings.purity_clusters, settings.probe_max_frames, settings.probe_test_fraction,
                     settings.asr_train_utterances, settings.asr_epochs, variance=False)


def train_and_evaluate(paths: DemoPaths, settings: DemoSettings, device: str, todo: list[Cell], jobs: int,
                       done: Callable[[Cell, CellTime], None]) -> None:
    """The cells ``todo``, ``jobs`` at a time: the joint stage (eq. 10) from a copy of the shared preparation,
    export, fast evaluations on the test speakers (their features are kept for the phone recognition and the
    figures)."""
    inputs = StudyInputs(paths.config("demo_l2d"), paths.manifest, paths.run("l2d_shared"), paths.corpus,
                         settings.l2d_overrides, device)
    run_cells(todo, inputs, paths.study, (EVAL_SPLIT,), _sizes(settings), GRID.x, jobs, keep_features=True,
              done=lambda cell, record, took: done(cell, took))


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


def evaluate_floors(paths: DemoPaths, settings: DemoSettings) -> None:
    """The MFCC floors (:mod:`learn2diss.demo.floors`) on the test speakers, scored like the models' frame
    encoder, as records like a cell's (``OUT/floors/<floor>.json``); their features are kept for the PER."""
    from learn2diss.eval.features import find_audio, load_features
    from learn2diss.upstream.checkpoints import read_model_config
    from learn2diss.upstream.config import SAMPLE_RATE

    parent = read_model_config(paths.checkpoint(PARENT)).parent
    shift = parent.stride / SAMPLE_RATE
    split = CorpusSplit(paths.corpus, EVAL_SPLIT)
    audio = find_audio(split.audio)
    sizes = _sizes(settings)
    train_audio = find_audio(paths.split("train"), asr_utterances(paths.corpus, sizes.asr_train_utterances))
    for floor in FLOORS:
        folder = paths.study.features(floor) / EVAL_SPLIT / "frame_last"
        asr_train = paths.study.features(floor) / "asr-train" / "frame_last"
        write_mfcc_features(floor, audio, parent.conv_layers, folder)
        write_mfcc_features(floor, train_audio, parent.conv_layers, asr_train)
        utts = sorted(audio)
        labels = SplitLabels.read(split, {u: len(a) for u, a in load_features(folder, utts).items()}, shift, sizes, 0)
        rows = [{"split": EVAL_SPLIT, "eval": m.eval, "condition": m.condition, "metric": m.metric, "value": m.value,
                 "features": floor, "details": m.details}
                for m in score_frame_features(folder, split, labels, shift, sizes, spec=FRAME, asr_train=asr_train)]
        write_json(paths.out / "floors" / f"{floor}.json", {
            "setting": floor, "seed": 0, "x": None, "overrides": [], "checkpoint": "", "checkpoint_hash": "",
            "git_commit": git_commit(), "config": "", "shared": "", "corpus": str(paths.corpus), "rows": rows})


__all__ = ["DemoError", "StageRunner", "StageTime", "cli", "build_corpus", "shipped_parent_hash", "save_half",
           "parent_provenance", "pretrain_parent", "prepare_l2d", "cells", "train_and_evaluate", "evaluate_parent",
           "evaluate_floors"]
