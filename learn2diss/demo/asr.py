"""``learn2diss demo --asr``: speech recognition by CTC fine-tuning (Tables 4 and 7 at demo scale).

For the parent and the first seed of the Learn2Diss run with MI, the stage runs the ordinary commands: a
4-gram and word list of the training transcripts (``learn2diss data lm``), then ``learn2diss eval ctc`` with
the packaged ``ctc_demo`` recipe on the training split, scored on the test speakers: WER of best-path decoding
(no LM) and of the 4-gram + lexicon beam search, and the share of frames whose best label is blank (an
all-blank model scores 100 % WER). It is a separate stage behind ``--asr`` because the two fine-tunes take
about as long as the rest of the demo. Records: ``OUT/ctc/ctc.csv`` (the eval command's rows) and its
hypotheses; the section it adds to ``summary.md`` is :func:`asr_section`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from learn2diss.demo.plan import EVAL_SPLIT, MI, PARENT, QUICK, DemoPaths, DemoSettings
from learn2diss.demo.report import SETTING_LABELS
from learn2diss.eval.tables import markdown_table

CONFIG = "ctc_demo"
CONDITION = "demo"
# --quick: 6 updates (the head alone for 2), the plumbing only
QUICK_SETS = ("finetune.max_updates=6", "finetune.freeze_updates=2", "finetune.optimizer.warmup_steps=1",
              "finetune.optimizer.hold_steps=2", "finetune.optimizer.decay_steps=3", "train.checkpoint_every=6")


def asr_models(paths: DemoPaths, settings: DemoSettings) -> dict[str, Path]:
    """``{model name: checkpoint}``: the parent, and the Learn2Diss run with MI of the first seed."""
    mi = f"{MI}-seed{settings.seeds[0]}"
    return {PARENT: paths.checkpoint(PARENT), mi: paths.study.checkpoint(mi)}


def results(paths: DemoPaths) -> Path:
    """The results folder of the stage (``ctc.csv``, hypotheses)."""
    return paths.out / "ctc"


def run_asr(paths: DemoPaths, settings: DemoSettings, device: str) -> None:
    """The 4-gram of the training transcripts, then CTC fine-tuning and decoding of each model (resumable)."""
    from learn2diss.demo.pipeline import cli

    lm = paths.work / "lm"
    if not (lm / "4-gram.arpa").is_file():
        cli("data", "lm", "--transcripts", paths.split("train"), "--out", lm)
    sets = [arg for item in (QUICK_SETS if settings == QUICK else ()) for arg in ("--set", item)]
    for name, checkpoint in asr_models(paths, settings).items():
        cli("eval", "ctc", "--checkpoint", checkpoint, "--config", CONFIG, "--train", paths.split("train"),
            "--eval", paths.split(EVAL_SPLIT), "--lm", lm / "4-gram.arpa", "--words", lm / "words.txt",
            "--condition", CONDITION, "--model-name", name, "--results", results(paths), "--work-dir", paths.work,
            "--device", device, *sets)


def asr_section(paths: DemoPaths, settings: DemoSettings) -> str:
    """The summary's section: WER without and with the LM and the blank share of each model."""
    path = results(paths) / "ctc.csv"
    if not path.is_file():
        return ""
    with open(path, newline="") as handle:
        rows = {(r["model"], r["metric"]): float(r["value"]) for r in csv.DictReader(handle)
                if r["dataset"] == EVAL_SPLIT and r["condition"] == CONDITION}
    body = []
    for name in asr_models(paths, settings):
        setting = PARENT if name == PARENT else MI
        cells = [rows.get((name, m)) for m in ("wer_viterbi", "wer", "blank_rate")]
        body.append([f"{SETTING_LABELS[setting]} ({name})",
                     *("–" if v is None else f"{v:.1f}" for v in cells)])
    table = markdown_table(["model", "WER, best path (no LM)", "WER, 4-gram + lexicon", "blank frames"], body)
    return "\n".join([
        "## Speech recognition: CTC fine-tuning on letters (`--asr`)", "", table,
        f"`learn2diss eval ctc --config {CONFIG}` (f frozen; the letter head alone, then g too) on the training "
        "speakers, scored on the unseen test speakers (%); the 4-gram and its word list are those of the training "
        "transcripts (`learn2diss data lm`), so test words never seen in training cannot be decoded with the LM. "
        "Blank frames: the share of frames whose best label is blank (100 %: the all-blank plateau).", ""])
