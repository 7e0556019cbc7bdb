"""The demo's stages, each one or more ordinary ``learn2diss`` commands, timed and resumable.

A finished stage writes ``WORK/stages/<name>.json`` (its wall and CPU seconds) and is skipped on the
next run; an interrupted one is redone, and the commands it calls resume their own work (the corpus
builder keeps finished chunks, pretraining continues from its last checkpoint with ``--resume``,
feature extraction and CTC fine-tuning skip what exists).

The two Learn2Diss runs share their preparation: the stages that do not depend on lambda
(frame-targets, utt-simclr, utt-targets) run once in ``runs/l2d_shared``, which is then copied to
``runs/l2d_no_mi`` and ``runs/l2d_mi``; only their joint stages differ (``joint.club.weight``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from learn2diss.demo.plan import DATASET, L2D_MI, MODELS, PARENT, DemoPaths, DemoSettings
from learn2diss.errors import Learn2DissError


class DemoError(Learn2DissError, RuntimeError):
    """A demo stage failed or the work folder belongs to other settings."""


def cli(*argv: object) -> None:
    """Run one ``learn2diss`` command in this process; a non-zero exit is a :class:`DemoError`."""
    from learn2diss.cli import main

    args = [str(a) for a in argv]
    code = main(args)
    if code:
        raise DemoError(f"`learn2diss {' '.join(args)}` exited with {code}")


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


def write_json(path: Path, data: dict) -> None:
    """JSON written atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


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
        "--shared", settings.shared, "--test-speakers", settings.test_speakers, "--jobs", jobs)
    cli("data", "manifest", "--root", paths.corpus / "LibriSpeech-style", "--subsets", "train", "--out", paths.manifest)


def _sets(overrides: tuple[str, ...]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


def pretrain_parent(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """HuBERT iteration 1 from random weights (configs/demo_parent.yaml), exported as our checkpoint."""
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


def train_l2d(paths: DemoPaths, settings: DemoSettings, device: str, model: str) -> None:
    """The joint stage (eq. 10) of one Learn2Diss run, from a copy of the shared preparation, then export."""
    config, name = ("demo_l2d", "l2d_mi") if model == L2D_MI else ("demo_l2d_no_mi", "l2d_no_mi")
    run = paths.run(name)
    if not run.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=run.parent))
        shutil.copytree(paths.run("l2d_shared"), tmp, dirs_exist_ok=True)
        os.replace(tmp, run)
    cli("pretrain", "joint", "--config", paths.config(config), "--data", paths.manifest, "--out", run, "--resume",
        "--device", device, *_sets(settings.l2d_overrides))
    cli("export", run, "--out", paths.checkpoint(model))


def build_language_model(paths: DemoPaths, settings: DemoSettings) -> None:
    """The n-gram of the training transcripts (interpolated Witten-Bell, ARPA) and its word list."""
    from learn2diss.eval.ctc.data import read_transcribed_folder
    from learn2diss.eval.ctc.ngram import write_arpa

    texts = [u.text for u in read_transcribed_folder(paths.split("train"))]
    write_arpa(paths.lm / "train.arpa", texts, settings.lm_order)
    words = sorted({w for t in texts for w in t.split()})
    (paths.lm / "words.txt").write_text("".join(f"{w}\n" for w in words))


def _model_args(paths: DemoPaths, model: str, variant: str, device: str) -> list[object]:
    args: list[object] = ["--ckpt", paths.checkpoint(model), "--model-name", model, "--results", paths.out,
                          "--work-dir", paths.eval_work, "--device", device]
    return [*args, "--variant", variant] if variant else args


def _corpus_args(paths: DemoPaths) -> list[object]:
    return ["--audio", paths.split("test"), "--alignments", paths.corpus / "alignments" / "test.tsv",
            "--speakers", paths.corpus / "splits" / "test.tsv", "--dataset", DATASET]


def evaluate_purity(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """Phone purity / PNMI of frame:last, speaker purity of z^L, on the unseen test speakers."""
    for model, variant in MODELS:
        cli("eval", "purity", *_model_args(paths, model, variant, device), *_corpus_args(paths),
            "--clusters", settings.purity_clusters, "--speaker-clusters", settings.test_speakers)


def evaluate_probes(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """Linear speaker-ID and phone probes of both encoders (Table 5 style)."""
    for model, variant in MODELS:
        cli("eval", "probes", *_model_args(paths, model, variant, device), *_corpus_args(paths),
            "--max-frames", settings.probe_max_frames, "--test-fraction", settings.probe_test_fraction)


def evaluate_abx(paths: DemoPaths, device: str) -> None:
    """ABX within and across speaker of frame:last on the test items (unseen speakers)."""
    for model, variant in MODELS:
        cli("eval", "abx", *_model_args(paths, model, variant, device), "--item", paths.corpus / "abx" / "test.item",
            "--audio", paths.split("test"), "--dataset", DATASET)


def evaluate_ctc(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """A short CTC fine-tune on the train split, decoded on the test split with the training-transcript n-gram."""
    for model, variant in MODELS:
        cli("eval", "ctc", *_model_args(paths, model, variant, device), "--config", "ctc_demo",
            *[a for item in settings.ctc_overrides for a in ("--set", item)], "--train", paths.split("train"),
            "--eval", paths.split("test"), "--lm", paths.lm / "train.arpa", "--words", paths.lm / "words.txt",
            "--condition", "demo")


__all__ = ["DemoError", "StageRunner", "StageTime", "cli", "build_corpus", "pretrain_parent", "prepare_l2d",
           "train_l2d", "build_language_model", "evaluate_purity", "evaluate_probes", "evaluate_abx",
           "evaluate_ctc", "write_json"]
