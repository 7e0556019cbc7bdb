"""The demo's report: the Table 5 directions as paired differences with 95 % intervals, every metric per model
beside the MFCC floors, time.

Everything is read back from the records the stages wrote (``OUT/cells/<setting>/seed<S>.json`` of the
Learn2Diss runs, ``OUT/parent.json``, ``OUT/floors/<floor>.json``), so the report shows exactly what was
measured. ``summary.md`` holds

* the Table 5 directions: each quantity for lambda = 0 and lambda > 0 (mean ± half-width of the 95 % t
  interval over the seeds), the difference lambda > 0 minus lambda = 0 of the runs with the same seed and the
  paired 95 % t interval of its mean, the paper's direction and what the run shows: "yes" or "no" when the
  interval excludes 0, "not resolved" when it contains 0 (no tolerance, no tuning);
* one row per model (the MFCC floors first) with every metric, including the phone error rate of the linear
  CTC head;
* the wall and CPU seconds of every stage.

``rows.csv`` holds every number with its provenance, ``summary.csv`` the means and intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from learn2diss.demo.floors import FLOORS
from learn2diss.demo.plan import GRID, MI, NO_MI, PARENT
from learn2diss.eval.tables import format_interval, markdown_table
from learn2diss.io import read_json, write_text
from learn2diss.study.summary import LABELS, paired_difference, raw_rows, summarise, t_interval

PER = "asr/linear-ctc/per"  # the phone error rate of the linear CTC head (learn2diss.eval.phone_recognition)
METRICS: tuple[str, ...] = (
    "probes/frame/speaker_id_acc", "probes/frame/speaker_frame_acc", "verification/frame/eer",
    "probes/utterance/speaker_id_acc", "verification/utterance/eer", "probes/frame/phone_acc",
    "probes/utterance/phone_acc", "abx/within/abx_error", "abx/across/abx_error", PER, "purity/frame:last/pnmi",
    "purity/utt:embedding/speaker_purity",
)
SETTING_LABELS = {"mfcc-20": "MFCC-20 (floor)", "mfcc-39": "MFCC-39: 13 + Δ + ΔΔ (parent's targets)",
                  PARENT: "parent (HuBERT it. 1)", NO_MI: "L2D, λ = 0 (no MI)", MI: "L2D, λ > 0 (MI)"}

# Table 5 of the paper (and the ABX of Table 3), read as directions of lambda > 0 minus lambda = 0; the speaker
# measures are the ones chosen on the validation speakers (docs/demo.md, "Which measures").
DIRECTIONS: tuple[tuple[str, str, str], ...] = (
    ("verification/frame/eer", "higher with MI (less speaker)", ">"),
    ("verification/utterance/eer", "not higher with MI", "<="),
    ("probes/utterance/phone_acc", "lower with MI", "<"),
    (PER, "lower with MI", "<"),
    ("abx/across/abx_error", "no worse with MI", "<="),
)


def direction_holds(delta: float, sign: str) -> bool:
    """Whether ``delta`` (lambda > 0 minus lambda = 0) has the expected sign."""
    return {"<": delta < 0, "<=": delta <= 0, ">": delta > 0, ">=": delta >= 0}[sign]


def verdict(delta: float, low: float, high: float, sign: str) -> str:
    """``yes``/``no`` when the 95 % interval of the difference excludes 0, else ``not resolved``."""
    if math.isnan(low) or low <= 0 <= high:
        return "not resolved"
    return "yes" if direction_holds(delta, sign) else "no"


def _mean_ci(values: Sequence[float]) -> str:
    return format_interval(*t_interval(values), digits=1) if values else "–"


def values(rows: pd.DataFrame, setting: str, metric: str) -> list[float]:
    """The per-seed values of ``metric`` for ``setting`` (test speakers)."""
    return rows[(rows["setting"] == setting) & (rows["metric"] == metric)]["value"].tolist()


def by_seed(rows: pd.DataFrame, setting: str, metric: str) -> dict[int, float]:
    """``{seed: value}`` of ``metric`` for ``setting``."""
    sel = rows[(rows["setting"] == setting) & (rows["metric"] == metric)]
    return dict(zip(sel["seed"].astype(int), sel["value"], strict=True))


def directions_table(rows: pd.DataFrame) -> tuple[str, list[str]]:
    """The Table 5 directions as paired differences (same seed) with their t intervals, and the verdict of each."""
    body, verdicts = [], []
    for metric, expected, sign in DIRECTIONS:
        no_mi, mi = by_seed(rows, NO_MI, metric), by_seed(rows, MI, metric)
        delta, low, high, n = paired_difference(mi, no_mi)
        if not n:
            body.append([LABELS[metric], _mean_ci(list(no_mi.values())), _mean_ci(list(mi.values())), "–", "–",
                         expected, "not measured"])
            verdicts.append("not measured")
            continue
        shown = verdict(delta, low, high, sign)
        verdicts.append(shown)
        interval = f"[{low:+.1f}, {high:+.1f}]" if not math.isnan(low) else "–"
        body.append([LABELS[metric], _mean_ci(list(no_mi.values())), _mean_ci(list(mi.values())),
                     f"{delta:+.1f}", interval, expected, shown])
    header = ["quantity (%)", "λ = 0", "λ > 0", "Δ (same seed)", "95 % interval of Δ", "paper (Table 5)", "seen here"]
    return markdown_table(header, body), verdicts


def metrics_table(rows: pd.DataFrame) -> str:
    """One row per model (parent, then each lambda over its seeds): mean ± half-width of the 95 % interval."""
    body = []
    for setting in (*FLOORS, PARENT, *(s.name for s in GRID.settings)):
        n = rows.loc[rows["setting"] == setting, "seed"].nunique()
        if not n:
            continue
        body.append([SETTING_LABELS[setting], str(n), *(_mean_ci(values(rows, setting, m)) for m in METRICS)])
    return markdown_table(["model", "seeds", *(LABELS[m] for m in METRICS)], body)


def per_note(rows: pd.DataFrame) -> str:
    """A line under the metrics table when a PER is above 100 %: what such a number is."""
    per = rows.loc[rows["metric"] == PER, "value"]
    if per.empty or per.max() <= 100:
        return ""
    return ("PER above 100 %: the head emits more phones than the references hold (insertions count as errors), "
            "as an untrained or barely trained head does; it is no measure of the features. An all-blank head "
            "scores 100 %.\n")


def timing_table(times: Sequence) -> str:
    """Wall and CPU seconds of each stage (``times``: :class:`~learn2diss.demo.pipeline.StageTime`). Stages that
    ran side by side are indented under their group; the total counts the group's wall time, not theirs."""
    body = [[("&nbsp;&nbsp;" if t.parallel else "") + t.title + (" (cached)" if t.skipped else ""),
             f"{t.wall:.0f}", f"{t.cpu:.0f}"] for t in times]
    wall = sum(t.wall for t in times if not t.parallel)
    cpu = sum(t.cpu for t in times if not t.parallel)
    body.append(["**total**", f"**{wall:.0f}**", f"**{cpu:.0f}**"])
    return markdown_table(["stage", "wall (s)", "CPU (s)"], body)


def read_records(out: Path, cell_files: Sequence[Path]) -> list[dict]:
    """The floors', the parent's and the cells' records."""
    floors = [out / "floors" / f"{floor}.json" for floor in FLOORS]
    return [read_json(path, "demo record") for path in [*(f for f in floors if f.is_file()), out / "parent.json",
                                                      *cell_files]]


def write_report(out: Path, records: Sequence[dict], times: Sequence, context: str, figures: Sequence[Path]) -> str:
    """Write ``out/rows.csv``, ``out/summary.csv``, ``out/timings.md`` and ``out/summary.md``; returns the summary."""
    rows = raw_rows(records)
    write_text(out / "rows.csv", rows.to_csv(index=False))
    write_text(out / "summary.csv", summarise(rows).to_csv(index=False))
    timing = timing_table(times)
    write_text(out / "timings.md", "# Demo stages: wall and CPU time\n\n" + timing)
    directions, verdicts = directions_table(rows)
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("yes", "no", "not resolved") if v in verdicts)
    summary = "\n".join([
        "# Learn2Diss demo: summary", "", context, "",
        f"## Table 5 directions: λ > 0 minus λ = 0 ({counts})", "", directions,
        "λ = 0 and λ > 0: mean ± half-width of the 95 % Student t interval over the seeds. Δ: the mean over seeds "
        "of λ > 0 minus λ = 0 run with the same seed (same initialisation, batch order and masks), with the paired "
        "95 % t interval. \"not resolved\": the interval contains 0, so this run cannot tell the direction. "
        "Speaker EER: speaker verification with centred cosine scoring of every pair of test utterances (mean-pooled "
        "`frame:last` for the frame encoder, z^L for the utterance encoder); phone accuracy: linear probe; PER: a "
        "linear CTC head on frozen `frame:last` (SUPERB's phone recognition set-up); ABX: ZeroSpeech 2021 triphone "
        "ABX of `frame:last`; all on the unseen test speakers. ↑/↓: higher/lower is better for a disentangled "
        "model.", "",
        "## All metrics (%, unseen test speakers)", "", metrics_table(rows), per_note(rows),
        "The MFCC rows are the floors: the same measures of the frame encoder's columns on MFCC features at the "
        "model's frame rate (the utterance-encoder columns do not apply).", "",
        "## Time per stage", "", timing,
        "## Figures", "", *(f"- [{p.name}]({p.relative_to(out)})" for p in figures), "",
        "Every number with its provenance (setting, seed, overrides, checkpoint and weight hash, git commit): "
        "`rows.csv`; means and intervals: `summary.csv`.", "",
    ])
    write_text(out / "summary.md", summary)
    return summary
